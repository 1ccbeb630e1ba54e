"""Project routes (精准选人 · 编班): a training project's roster, classes and their portraits, and the XLSX export,
for trainers within their area; plus the trainer page that shows them.

Routes reach selection through the engine (`EngineProtocol.projects` / `.selection`), which loads it with its
bundle and keeps each project's selection for that bundle; what a caller may see of it is decided in
`recommender.selection.scope`: a trainer sees the roster of their own teachers only, and a class portrait only
when every member of the class is theirs — the cohort rule of `api.auth.can_see_cohort`.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.auth import Principal, Role
from api.deps import EngineProtocol, get_engine, get_principal, get_settings
from api.errors import ApiError
from api.export import XLSX_MEDIA_TYPE
from api.routes.common import problems
from api.routes.teachers import authorise_teacher
from api.schemas.projects import ProjectSummary, SelectionView, TeacherStatus
from api.settings import ServiceSettings
from recommender.selection import Selection, SelectionError, selection_workbook
from recommender.selection.scope import OutsideScope, standing

router = APIRouter(prefix="/projects", tags=["培训项目"])
page_router = APIRouter(include_in_schema=False)
TEMPLATES_DIR = FilePath(__file__).resolve().parent.parent / "templates"
TEMPLATES = Jinja2Templates(directory=TEMPLATES_DIR)

ProjectId = Annotated[str, Path(min_length=1, max_length=64, description="项目编号，如 JX2022-006")]
TeacherId = Annotated[str, Path(min_length=1, max_length=64, description="教师编号")]
MixCounties = Annotated[bool, Query(description="各班混合不同县区（默认需求相近者同班）")]
TEACHERS_REFUSED = "教师账号不能查看培训项目选人结果。"
OUTSIDE = "该培训项目不在您的管理范围内。"


# ------------------------------------------------------------------------------------------------- access


def _scope(principal: Principal) -> tuple[str, str] | None:
    """The caller's area (None: an admin, who sees everything); teachers see no selection."""
    if principal.role is Role.TEACHER:
        raise ApiError(403, TEACHERS_REFUSED)
    return principal.scope


def visible_selection(
    engine: EngineProtocol, principal: Principal, project_id: str, mix: bool, settings: ServiceSettings
) -> Selection:
    """The selection as the caller may see it: 404 for an unknown project, 403 when it lies outside the
    caller's area, 422 when the project cannot be selected for."""
    try:
        selection = engine.selection(project_id, mix, _scope(principal), settings.min_cohort_size)
    except OutsideScope:
        raise ApiError(403, OUTSIDE) from None
    except SelectionError as exc:
        raise ApiError(422, str(exc)) from None
    if selection is None:
        raise ApiError(404, "未找到该培训项目。")
    return selection


# ------------------------------------------------------------------------------------------------- routes


@router.get("", response_model=list[ProjectSummary], responses=problems(401, 403, 503))
def list_projects(
    principal: Principal = Depends(get_principal), engine: EngineProtocol = Depends(get_engine)
) -> list[ProjectSummary]:
    """本管理范围内可选人的培训项目（全省项目，及范围涉及本地区县区的项目）。"""
    return [ProjectSummary.of(p) for p in engine.projects(_scope(principal))]


def caller_selection(
    project_id: ProjectId,
    mix_counties: MixCounties = False,
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
    settings: ServiceSettings = Depends(get_settings),
) -> Selection:
    """The selection of the path's project as the caller may see it (the dependency of the selection routes)."""
    return visible_selection(engine, principal, project_id, mix_counties, settings)


@router.get(
    "/{project_id}/selection", response_model=SelectionView, responses=problems(401, 403, 404, 422, 503)
)
def get_selection(
    selection: Selection = Depends(caller_selection), principal: Principal = Depends(get_principal)
) -> SelectionView:
    """精准选人与编班：入选名单及理由、各班人数与班级画像、不符合条件的人数、经费测算。"""
    return SelectionView.of(selection, principal.scope_text)


@router.get(
    "/{project_id}/selection/export",
    response_class=Response,
    responses=problems(
        401,
        403,
        404,
        422,
        503,
        ok={"content": {XLSX_MEDIA_TYPE: {}}, "description": "名单与分班 Excel 工作簿"},
    ),
)
def export_selection(project_id: ProjectId, selection: Selection = Depends(caller_selection)) -> Response:
    """把名单、分班与班级画像导出为 Excel（.xlsx），内容与页面所示一致。"""
    filename = quote(f"选人结果_{project_id}.xlsx")
    return Response(
        selection_workbook(selection),
        media_type=XLSX_MEDIA_TYPE,
        headers={
            "Content-Disposition": f"attachment; filename=\"selection.xlsx\"; filename*=UTF-8''{filename}"
        },
    )


def _visible_teacher(
    teacher_id: TeacherId,
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
) -> str:
    """The path's teacher, or 403 — the same words whether the teacher exists or lies outside the caller's
    area — before anything of the project is looked at."""
    _scope(principal)
    authorise_teacher(principal, teacher_id, engine)
    return teacher_id


@router.get(
    "/{project_id}/teachers/{teacher_id}",
    response_model=TeacherStatus,
    responses=problems(401, 403, 404, 422, 503),
)
def teacher_status(
    project_id: ProjectId,  # read by caller_selection; declared first, as the path names it
    teacher_id: str = Depends(_visible_teacher),
    selection: Selection = Depends(caller_selection),
) -> TeacherStatus:
    """某位教师在该项目中的情况：入选（名次与班级）、符合条件未入选，或不符合条件的原因。"""
    found = standing(selection, teacher_id)
    if found is None:
        raise ApiError(404, "未找到该教师。")
    return TeacherStatus.of(found)


@page_router.get("/trainer/projects", response_class=HTMLResponse, name="projects")
def projects_page(request: Request) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "projects.html", {"title": "培训项目选人与编班"})


@page_router.get("/trainer/projects.js", name="projects_script")
def projects_script() -> Response:
    # the page's script lives beside its template, served as it is (the CSP admits same-origin scripts only)
    body = (TEMPLATES_DIR / "projects.js.html").read_text(encoding="utf-8")
    return Response(body, media_type="text/javascript; charset=utf-8")
