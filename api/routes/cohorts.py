"""Cohort routes: the portrait of a county, school, stage, subject … within the caller's scope, and its XLSX export.

Privacy rules live here once: teachers see no cohorts, trainers only inside their area, and no group smaller
than the privacy floor is shown — neither a whole cohort nor a heatmap row.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import StreamingResponse

from api.auth import Principal, Role, can_see_cohort
from api.deps import EngineProtocol, get_engine, get_principal, get_settings
from api.errors import ApiError
from api.export import XLSX_MEDIA_TYPE, cohort_workbook, xlsx_response
from api.routes.common import problems
from api.schemas import Cohort, CohortBy, Heatmap
from api.settings import ServiceSettings

router = APIRouter(prefix="/cohorts", tags=["群体"])

CohortValue = Annotated[str, Path(min_length=1, max_length=100, description="分组取值，如 修水县")]
FORBIDDEN = "无权查看该群体，或该群体不在您的管理范围内。"


def _without_small_rows(heatmap: Heatmap, floor: int) -> tuple[Heatmap, int]:
    keep = [i for i, n in enumerate(heatmap.row_sizes) if n >= floor]
    shown = heatmap.model_copy(
        update={
            "rows": [heatmap.rows[i] for i in keep],
            "row_sizes": [heatmap.row_sizes[i] for i in keep],
            "values": [heatmap.values[i] for i in keep],
        }
    )
    return shown, len(heatmap.rows) - len(keep)


def visible_cohort(
    by: str, value: str, principal: Principal, engine: EngineProtocol, settings: ServiceSettings
) -> Cohort:
    """The cohort as the caller may see it, or a 403/404 that reveals nothing about who is in it."""
    if principal.role is Role.TEACHER:
        raise ApiError(403, "教师账号不能查看群体画像。")
    raw = engine.cohort(by, value, principal.scope)
    cohort = None if raw is None else Cohort.model_validate(raw)
    if cohort is None or cohort.n_teachers == 0:
        # to a trainer, "not in your area" and "does not exist" must look the same
        raise ApiError(404, "未找到该群体。") if principal.role is Role.ADMIN else ApiError(403, FORBIDDEN)
    if not can_see_cohort(principal, by, value, cohort.span.model_dump()):
        raise ApiError(403, FORBIDDEN)
    if cohort.n_teachers < settings.min_cohort_size:
        raise ApiError(403, f"该群体人数少于 {settings.min_cohort_size} 人，为保护隐私不予显示。")
    update: dict[str, object] = {"scope": principal.scope_text}
    if cohort.heatmap is not None:
        # the engine may have hidden rows already; the floor here may be stricter than the engine's
        update["heatmap"], removed = _without_small_rows(cohort.heatmap, settings.min_cohort_size)
        update["hidden_rows"] = cohort.hidden_rows + removed
    return cohort.model_copy(update=update)


@router.get("/{by}/{value}", response_model=Cohort, responses=problems(401, 403, 404, 422, 503))
def get_cohort(
    by: CohortBy,
    value: CohortValue,
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
    settings: ServiceSettings = Depends(get_settings),
) -> Cohort:
    """群体画像：各能力点分布、分组热力图、常见差距、学时进度与落后教师。"""
    return visible_cohort(by, value, principal, engine, settings)


@router.get(
    "/{by}/{value}/export",
    response_class=StreamingResponse,
    responses=problems(
        401, 403, 404, 422, 503, ok={"content": {XLSX_MEDIA_TYPE: {}}, "description": "群体画像 Excel 工作簿"}
    ),
)
def export_cohort(
    by: CohortBy,
    value: CohortValue,
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
    settings: ServiceSettings = Depends(get_settings),
) -> StreamingResponse:
    """把群体画像导出为 Excel（.xlsx）。"""
    cohort = visible_cohort(by, value, principal, engine, settings)
    return xlsx_response(cohort_workbook(cohort), "cohort.xlsx", f"群体画像_{by}_{value}.xlsx")
