"""Project routes (精准选人 · 编班): a training project's roster, classes and their portraits, and the XLSX export,
for trainers within their area; plus the trainer page that shows them.

The selection engine is loaded here from the workspace, once per bundle version, and each project's selection
is kept for the version it was computed on. A trainer sees the roster of their own teachers only, and a class
portrait only when every member of the class is theirs — the cohort rule of `api.auth.can_see_cohort`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from api.auth import Principal, Role, can_see_teacher
from api.deps import BUNDLE_POINTER, get_principal, get_settings
from api.errors import ApiError
from api.export import XLSX_MEDIA_TYPE
from api.routes.common import problems
from api.settings import ServiceSettings
from data.schema import FORMAT
from data.workspace import Workspace
from recommender.selection import (
    CONTENT_SOURCE_ZH,
    Project,
    Selection,
    SelectionContext,
    SelectionError,
    class_rows,
    roster_rows,
    select_trainees,
    selection_workbook,
    taxonomy_names,
    zh_label,
)

router = APIRouter(prefix="/projects", tags=["培训项目"])
page_router = APIRouter(include_in_schema=False)
TEMPLATES_DIR = FilePath(__file__).resolve().parent.parent / "templates"
TEMPLATES = Jinja2Templates(directory=TEMPLATES_DIR)

ProjectId = Annotated[str, Path(min_length=1, max_length=64, description="项目编号，如 JX2022-006")]
TeacherId = Annotated[str, Path(min_length=1, max_length=64, description="教师编号")]
MixCounties = Annotated[bool, Query(description="各班混合不同县区（默认需求相近者同班）")]
TEACHERS_REFUSED = "教师账号不能查看培训项目选人结果。"
OUTSIDE = "该培训项目不在您的管理范围内。"
KEPT_SELECTIONS = 32


# ------------------------------------------------------------------------------------------------- schemas


class ProjectSummary(BaseModel):
    project_id: str
    name: str
    format: str | None
    format_label: str
    days: float
    online_hours: float
    quota: int | None
    class_size: int
    scope: str = Field(description="项目范围：全省，或所列县区")


class CompetencyShare(BaseModel):
    competency: str
    name: str
    share: float = Field(description="在项目内容中的权重（0–1）")


class RosterRow(BaseModel):
    rank: int
    teacher_id: str
    county: str | None
    school_id: str | None
    school_type: str | None
    stage: str | None
    subject: str | None
    title: str | None
    years_teaching: int | None
    need: float | None = Field(description="需求得分（0–1）：项目内容对应能力点的加权差距 ÷ 目标水平")
    rural_bonus: float | None
    score: float | None
    class_label: str
    reason: str


class ClassCompetency(BaseModel):
    competency: str
    name: str
    n: int
    mean: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    share_below: float | None


class ClassRow(BaseModel):
    """One class as `recommender.selection.class_rows` lays it out, with its portrait when visible."""

    class_label: str
    n_teachers: int
    n_mine: int = Field(description="本管理范围内的学员人数")
    n_counties: int | None
    counties: str | None
    share_rural: float | None = Field(description="乡村教师比例（%）")
    mean_need: float | None
    common_gaps: str | None
    cost_yuan: float | None
    visible: bool = Field(description="班级画像是否可见（班内学员全部在本管理范围内）")
    portrait: list[ClassCompetency]


CLASS_FIELDS = (
    "class_label", "n_teachers", "n_mine", "n_counties", "counties", "share_rural", "mean_need",
    "common_gaps", "cost_yuan",
)  # fmt: skip


class ExclusionCount(BaseModel):
    rule: str
    label: str
    n_teachers: int


class AllocationRow(BaseModel):
    county: str
    allocated: int
    eligible: int
    selected: int
    unfilled: int


class CostView(BaseModel):
    days: float
    online_hours: float
    offline_yuan_per_trainee: float
    online_yuan_per_trainee: float
    per_trainee_yuan: float
    trainees: int
    total_yuan: float


class SelectionView(BaseModel):
    project: ProjectSummary
    content: list[CompetencyShare]
    content_source: str
    content_source_label: str
    asof: str
    policy: str
    rural_priority_weight: float
    mix_counties: bool
    scope: str | None
    n_considered: int
    n_eligible: int
    n_selected: int
    n_classes: int
    exclusions: list[ExclusionCount]
    allocations: list[AllocationRow]
    classes: list[ClassRow]
    roster: list[RosterRow]
    cost: CostView
    spread: float | None = Field(description="班内需求离散度：学员能力差距与本班平均的均方根距离（分）")
    random_spread: float | None = Field(description="同样人数随机分班的离散度（分），作对照")
    notes: list[str]
    model_version: str


class TeacherStatus(BaseModel):
    project_id: str
    teacher_id: str
    status: str = Field(description="selected 入选 / eligible 符合条件未入选 / excluded 不符合条件")
    status_label: str
    rank: int | None
    class_label: str | None
    reason: str


# ------------------------------------------------------------------------------------------------- engine

_lock = threading.Lock()
_contexts: dict[FilePath, SelectionContext] = {}
_selections: OrderedDict[tuple[FilePath, str, str, bool], Selection] = OrderedDict()


def _workspace(request: Request) -> FilePath:
    return FilePath(request.app.state.engine_holder.workspace)


def selection_context(request: Request) -> SelectionContext:
    """The selection engine of the workspace's current bundle, loaded on first use after each `tdr train`."""
    root = _workspace(request)
    try:
        pointer = (root / BUNDLE_POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ApiError(503, "尚未训练模型，请先运行 tdr train。", headers={"Retry-After": "5"}) from None
    with _lock:
        ctx = _contexts.get(root)
        if ctx is None or ctx.version != pointer:
            ctx = SelectionContext.load(Workspace(root))
            _contexts[root] = ctx
    return ctx


def _selection(root: FilePath, ctx: SelectionContext, project_id: str, mix: bool) -> Selection:
    key = (root, ctx.version, project_id, mix)
    with _lock:
        if key in _selections:
            _selections.move_to_end(key)
            return _selections[key]
    try:
        selection = select_trainees(ctx, project_id, mix_counties=mix)
    except SelectionError as exc:
        raise ApiError(422, str(exc)) from None
    with _lock:
        _selections[key] = selection
        while len(_selections) > KEPT_SELECTIONS:
            _selections.popitem(last=False)
    return selection


# ------------------------------------------------------------------------------------------------- access


def _area_counties(principal: Principal, ctx: SelectionContext) -> set[str] | None:
    """The counties a trainer looks after (None: an admin, who sees everything)."""
    if principal.role is Role.TEACHER:
        raise ApiError(403, TEACHERS_REFUSED)
    if principal.scope is None:
        return None
    kind, value = principal.scope
    teachers = ctx.teachers
    return set(teachers.loc[teachers[kind].astype(str) == value, "county"].dropna().astype(str))


def _project_counties(ctx: SelectionContext, scope_counties: tuple[str, ...]) -> set[str]:
    return set(scope_counties) or set(ctx.teachers["county"].dropna().astype(str))


def _known(ctx: SelectionContext, project_id: str) -> None:
    if not (ctx.projects["project_id"].astype(str) == project_id).any():
        raise ApiError(404, "未找到该培训项目。")


def visible_selection(
    request: Request,
    principal: Principal,
    ctx: SelectionContext,
    project_id: str,
    mix: bool,
    settings: ServiceSettings,
) -> Selection:
    """The selection as the caller may see it, or 403 when the project lies outside the caller's area;
    classes under the privacy floor show their size only."""
    area = _area_counties(principal, ctx)
    _known(ctx, project_id)
    project = ctx.project(project_id)
    if area is not None and not area & _project_counties(ctx, project.scope_counties):
        raise ApiError(403, OUTSIDE)
    selection = _selection(_workspace(request), ctx, project_id, mix)
    if principal.scope is not None:
        kind, value = principal.scope
        selection = selection.within(kind, value, ctx.teachers)
    small = selection.classes.loc[selection.classes["n_teachers"] < settings.min_cohort_size, "class_no"]
    return selection.hiding_classes(small)


def _summary(p: Project) -> ProjectSummary:
    return ProjectSummary(
        project_id=p.project_id,
        name=p.name,
        format=p.format,
        format_label=zh_label(FORMAT, p.format),
        days=p.days,
        online_hours=p.online_hours,
        quota=p.quota,
        class_size=p.class_size,
        scope=p.scope_text,
    )


def _float(x: Any) -> float | None:
    return None if x is None or x != x else float(x)


def _view(selection: Selection, ctx: SelectionContext, principal: Principal) -> SelectionView:
    names = taxonomy_names(ctx.art)
    p, cost = selection.project, selection.cost
    portraits = selection.class_portrait.competencies
    class_views = []
    for row, number, visible in zip(
        class_rows(selection), selection.classes["class_no"], selection.classes["visible"], strict=True
    ):
        shown = portraits[portraits["class_no"] == number]
        class_views.append(
            ClassRow(
                **dict(zip(CLASS_FIELDS, row, strict=True)),
                visible=bool(visible),
                portrait=[
                    ClassCompetency(
                        competency=c.competency,
                        name=names.get(c.competency, c.competency),
                        n=int(c.n),
                        mean=_float(c.mean),
                        p25=_float(c.p25),
                        p50=_float(c.p50),
                        p75=_float(c.p75),
                        share_below=_float(c.share_below),
                    )
                    for c in shown.itertuples()
                ],
            )
        )
    roster_fields = list(RosterRow.model_fields)
    counts = selection.exclusion_counts()
    return SelectionView(
        project=_summary(p),
        content=[
            CompetencyShare(competency=c, name=n, share=s)
            for c, n, s in zip(
                selection.content.codes, selection.content_names, selection.content.shares, strict=True
            )
        ],
        content_source=selection.content.source,
        content_source_label=CONTENT_SOURCE_ZH[selection.content.source],
        asof=selection.asof.strftime("%Y-%m-%d"),
        policy=selection.policy_name,
        rural_priority_weight=selection.rural_priority_weight,
        mix_counties=selection.mix_counties,
        scope=principal.scope_text,
        n_considered=selection.n_considered,
        n_eligible=selection.n_eligible,
        n_selected=len(selection.roster),
        n_classes=len(selection.classes),
        exclusions=[ExclusionCount.model_validate(r) for r in counts.to_dict("records")],
        allocations=[AllocationRow.model_validate(r) for r in selection.allocations.to_dict("records")],
        classes=class_views,
        roster=[RosterRow(**dict(zip(roster_fields, row, strict=True))) for row in roster_rows(selection)],
        cost=CostView(
            days=cost.days,
            online_hours=cost.online_hours,
            offline_yuan_per_trainee=cost.offline_yuan_per_trainee,
            online_yuan_per_trainee=cost.online_yuan_per_trainee,
            per_trainee_yuan=cost.per_trainee_yuan,
            trainees=cost.trainees,
            total_yuan=cost.total_yuan,
        ),
        spread=_float(selection.spread),
        random_spread=_float(selection.random_spread),
        notes=list(selection.notes),
        model_version=selection.model_version,
    )


# ------------------------------------------------------------------------------------------------- routes


@router.get("", response_model=list[ProjectSummary], responses=problems(401, 403, 503))
def list_projects(
    principal: Principal = Depends(get_principal), ctx: SelectionContext = Depends(selection_context)
) -> list[ProjectSummary]:
    """本管理范围内可选人的培训项目（全省项目，及范围涉及本地区县区的项目）。"""
    area = _area_counties(principal, ctx)
    return [
        _summary(p)
        for p in ctx.project_list()
        if area is None or area & _project_counties(ctx, p.scope_counties)
    ]


@router.get(
    "/{project_id}/selection", response_model=SelectionView, responses=problems(401, 403, 404, 422, 503)
)
def get_selection(
    request: Request,
    project_id: ProjectId,
    mix_counties: MixCounties = False,
    principal: Principal = Depends(get_principal),
    ctx: SelectionContext = Depends(selection_context),
    settings: ServiceSettings = Depends(get_settings),
) -> SelectionView:
    """精准选人与编班：入选名单及理由、各班人数与班级画像、不符合条件的人数、经费测算。"""
    selection = visible_selection(request, principal, ctx, project_id, mix_counties, settings)
    return _view(selection, ctx, principal)


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
def export_selection(
    request: Request,
    project_id: ProjectId,
    mix_counties: MixCounties = False,
    principal: Principal = Depends(get_principal),
    ctx: SelectionContext = Depends(selection_context),
    settings: ServiceSettings = Depends(get_settings),
) -> Response:
    """把名单、分班与班级画像导出为 Excel（.xlsx），内容与页面所示一致。"""
    selection = visible_selection(request, principal, ctx, project_id, mix_counties, settings)
    filename = quote(f"选人结果_{project_id}.xlsx")
    return Response(
        selection_workbook(selection, taxonomy_names(ctx.art)),
        media_type=XLSX_MEDIA_TYPE,
        headers={
            "Content-Disposition": f"attachment; filename=\"selection.xlsx\"; filename*=UTF-8''{filename}"
        },
    )


@router.get(
    "/{project_id}/teachers/{teacher_id}",
    response_model=TeacherStatus,
    responses=problems(401, 403, 404, 422, 503),
)
def teacher_status(
    request: Request,
    project_id: ProjectId,
    teacher_id: TeacherId,
    mix_counties: MixCounties = False,
    principal: Principal = Depends(get_principal),
    ctx: SelectionContext = Depends(selection_context),
    settings: ServiceSettings = Depends(get_settings),
) -> TeacherStatus:
    """某位教师在该项目中的情况：入选（名次与班级）、符合条件未入选，或不符合条件的原因。"""
    _area_counties(principal, ctx)
    rows = ctx.teachers[ctx.teachers["teacher_id"].astype(str) == teacher_id]
    place = {str(k): v for k, v in rows.iloc[0].items()} if len(rows) else {}
    if not can_see_teacher(principal, place):
        # the same words whether the teacher exists or lies outside the caller's area
        raise ApiError(403, "无权查看该教师的数据。")
    selection = visible_selection(request, principal, ctx, project_id, mix_counties, settings)
    hit = selection.roster[selection.roster["teacher_id"] == teacher_id]
    if len(hit):
        row = hit.iloc[0]
        return TeacherStatus(
            project_id=project_id,
            teacher_id=teacher_id,
            status="selected",
            status_label="入选",
            rank=int(row["rank"]),
            class_label=f"第 {int(row['class_no'])} 班",
            reason=str(row["reason"]),
        )
    ranked = selection.ranked[selection.ranked["teacher_id"] == teacher_id]
    if len(ranked):
        row = ranked.iloc[0]
        return TeacherStatus(
            project_id=project_id,
            teacher_id=teacher_id,
            status="eligible",
            status_label="符合条件，未入选",
            rank=int(row["rank"]),
            class_label=None,
            reason=f"需求得分 {row['need']:.2f}、综合得分 {row['score']:.2f}，排名第 {int(row['rank'])} 位，"
            "名额已满。",
        )
    excluded = selection.excluded[selection.excluded["teacher_id"] == teacher_id]
    if not len(excluded):
        raise ApiError(404, "未找到该教师。")
    return TeacherStatus(
        project_id=project_id,
        teacher_id=teacher_id,
        status="excluded",
        status_label="不符合条件",
        rank=None,
        class_label=None,
        reason=str(excluded.iloc[0]["reason"]),
    )


@page_router.get("/trainer/projects", response_class=HTMLResponse, name="projects")
def projects_page(request: Request) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "projects.html", {"title": "培训项目选人与编班"})


@page_router.get("/trainer/projects.js", name="projects_script")
def projects_script() -> Response:
    # the page's script lives beside its template, served as it is (the CSP admits same-origin scripts only)
    body = (TEMPLATES_DIR / "projects.js.html").read_text(encoding="utf-8")
    return Response(body, media_type="text/javascript; charset=utf-8")
