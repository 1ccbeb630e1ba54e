"""Response models of the project routes (精准选人 · 编班), each built from the domain's `Selection`, `Project`
and `Standing` of `recommender.selection`: the figures and sentences come from there, these only shape them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from recommender.selection import (
    CONTENT_SOURCE_ZH,
    Project,
    Selection,
    class_rows,
    roster_rows,
)
from recommender.selection.scope import Standing


def _float(x: Any) -> float | None:
    return None if x is None or x != x else float(x)


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

    @classmethod
    def of(cls, p: Project) -> ProjectSummary:
        return cls(
            project_id=p.project_id,
            name=p.name,
            format=p.format,
            format_label=p.format_label,
            days=p.days,
            online_hours=p.online_hours,
            quota=p.quota,
            class_size=p.class_size,
            scope=p.scope_text,
        )


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

    @classmethod
    def of(cls, selection: Selection, scope_text: str | None) -> SelectionView:
        """The page's view of ``selection`` (already restricted to the caller), ``scope_text`` naming the
        caller's area."""
        names = selection.competency_names
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
        return cls(
            project=ProjectSummary.of(selection.project),
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
            scope=scope_text,
            n_considered=selection.n_considered,
            n_eligible=selection.n_eligible,
            n_selected=len(selection.roster),
            n_classes=len(selection.classes),
            exclusions=[ExclusionCount.model_validate(r) for r in counts.to_dict("records")],
            allocations=[AllocationRow.model_validate(r) for r in selection.allocations.to_dict("records")],
            classes=class_views,
            roster=[
                RosterRow(**dict(zip(roster_fields, row, strict=True))) for row in roster_rows(selection)
            ],
            cost=CostView.model_validate(selection.cost, from_attributes=True),
            spread=_float(selection.spread),
            random_spread=_float(selection.random_spread),
            notes=list(selection.notes),
            model_version=selection.model_version,
        )


class TeacherStatus(BaseModel):
    project_id: str
    teacher_id: str
    status: str = Field(description="selected 入选 / eligible 符合条件未入选 / excluded 不符合条件")
    status_label: str
    rank: int | None
    class_label: str | None
    reason: str

    @classmethod
    def of(cls, standing: Standing) -> TeacherStatus:
        return cls.model_validate(standing, from_attributes=True)
