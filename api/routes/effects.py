"""训后成效 routes: what each course and project changed (trainers, within their scope; XLSX export), and a
teacher's own growth (我的成长) with the courses that moved it.

The domain builds both records (`recommender.effects`, through the engine); the rules of who may see what are
the cohort's and the portrait's: teachers see no unit table, trainers only their area's teachers' data.
"""

from __future__ import annotations

from datetime import datetime
from typing import IO

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from openpyxl import Workbook

from api.auth import Principal, Role
from api.deps import EngineProtocol, get_engine, get_principal
from api.errors import ApiError
from api.export import XLSX_MEDIA_TYPE, spooled, xlsx_response
from api.routes.common import problems
from api.routes.teachers import TeacherId, authorise_teacher
from api.schemas.effects import EffectsReport, Growth
from recommender.workbook import append_sheet

router = APIRouter(tags=["训后成效"])
NOT_MEASURED = "尚未计算训后成效：请先运行 tdr effects。"
_KIND_ZH = {"course": "课程", "project": "培训项目"}


def visible_effects(principal: Principal, engine: EngineProtocol) -> EffectsReport:
    if principal.role is Role.TEACHER:
        raise ApiError(403, "教师账号不能查看训后成效汇总。")
    raw = engine.effects(principal.scope)
    if raw is None:
        raise ApiError(404, NOT_MEASURED)
    return EffectsReport.model_validate(raw)


@router.get("/effects", response_model=EffectsReport, responses=problems(401, 403, 404, 503))
def get_effects(
    principal: Principal = Depends(get_principal), engine: EngineProtocol = Depends(get_engine)
) -> EffectsReport:
    """训后成效：各课程、各培训项目对其所教能力点的提升（90% 区间），以及结业率、满意度（仅限管理范围）。"""
    return visible_effects(principal, engine)


def effects_workbook(report: EffectsReport) -> IO[bytes]:
    """The report as a one-sheet workbook in a temporary file, positioned at its start."""
    wb = Workbook(write_only=True)
    pct = int(round(100 * report.level))
    append_sheet(
        wb,
        "训后成效",
        [
            "类型",
            "编号",
            "名称",
            "能力点编码",
            "能力点",
            "提升（分）",
            f"{pct}% 区间下限",
            f"{pct}% 区间上限",
            "参训且两次测评人数",
            "对照人数",
            "结业率（%）",
            "平均满意度",
            "说明",
        ],  # fmt: skip
        (
            (
                _KIND_ZH[r.kind],
                r.unit_id,
                r.title,
                r.competency,
                r.competency_name,
                r.effect,
                r.ci_low,
                r.ci_high,
                r.n_treated,
                r.n_comparison,
                None if r.completion_rate is None else round(100 * r.completion_rate, 1),
                r.satisfaction,
                None if r.known else "证据不足",
            )  # fmt: skip
            for r in report.rows
        ),
    )
    append_sheet(
        wb,
        "说明",
        ["项目", "值"],
        [
            ("查看范围", report.scope or "全部"),
            ("前后两次测评的教师数", report.n_teachers_measured),
            (
                "方法",
                "参训者前后变化对照同期未参训教师（按前测、学段、学科调整，校正测量误差与回归均值），小样本向同能力点均值收缩",
            ),
            ("导出时间", datetime.now().strftime("%Y-%m-%d %H:%M")),
        ],
    )
    return spooled(wb)


@router.get(
    "/effects/export",
    response_class=StreamingResponse,
    responses=problems(
        401, 403, 404, 503, ok={"content": {XLSX_MEDIA_TYPE: {}}, "description": "训后成效 Excel"}
    ),
)
def export_effects(
    principal: Principal = Depends(get_principal), engine: EngineProtocol = Depends(get_engine)
) -> StreamingResponse:
    """把训后成效导出为 Excel（.xlsx）。"""
    return xlsx_response(
        effects_workbook(visible_effects(principal, engine)), "effects.xlsx", "训后成效.xlsx"
    )


@router.get(
    "/teachers/{teacher_id}/growth", response_model=Growth, responses=problems(401, 403, 404, 422, 503)
)
def get_growth(
    teacher_id: TeacherId,
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
) -> Growth:
    """我的成长：每次测评时的能力估计，以及两次测评之间完成的课程提升了哪些能力点。"""
    authorise_teacher(principal, teacher_id, engine)
    raw = engine.growth(teacher_id)
    if raw is None:
        raise ApiError(404, "未找到该教师。")
    return Growth.model_validate(raw)
