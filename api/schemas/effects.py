"""Response models of the 训后成效 routes: what each course and project changed (`recommender.effects`'s
`effects_report`) and a teacher's growth (`teacher_growth`)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from api.schemas import Record


class UnitEffect(Record):
    """One course's or project's measured change on one competency, beside its completion and satisfaction."""

    kind: Literal["course", "project"] = Field(description="course 课程 / project 培训项目")
    unit_id: str = Field(description="课程编号或项目编号")
    title: str | None = Field(None, description="课程名称或项目名称")
    competency: str | None = Field(None, description="能力点编码；无人前后两次测评时为空")
    competency_name: str | None = None
    effect: float | None = Field(None, description="对该能力点的提升（0–100 分）；证据不足时为空")
    ci_low: float | None = Field(None, description="90% 区间下限")
    ci_high: float | None = Field(None, description="90% 区间上限")
    n_treated: int = Field(0, description="前后两次测评之间完成该课程/项目的教师数")
    n_comparison: int = Field(0, description="前后两次测评之间未参加任何同类课程的对照教师数")
    known: bool = Field(False, description="是否有足够证据给出数值")
    method: str | None = Field(None, description="估计方法；unknown 表示证据不足")
    n_records: int = Field(0, description="已结束的参训记录数（结业、退出、未参训）")
    completion_rate: float | None = Field(None, description="结业率（0–1）")
    satisfaction: float | None = Field(None, description="平均满意度（1–5）")


class EffectsReport(Record):
    """训后成效: what each course and project changed, within the caller's scope."""

    scope: str | None = Field(None, description="查看者的范围；管理员为空")
    n_teachers_measured: int = Field(description="范围内前后两次测评的教师数")
    level: float = Field(0.9, description="区间的置信水平")
    rows: list[UnitEffect] = Field(default_factory=list)


class GrowthPoint(Record):
    date: date
    competency: str
    name: str | None = None
    domain: str | None = None
    estimate: float = Field(description="该次测评时的能力估计（0–100）")
    std_error: float


class CourseMove(Record):
    competency: str
    name: str | None = None
    change: float | None = Field(None, description="本人在该能力点上首末两次测评之差")
    effect: float | None = Field(None, description="该课程在全省的平均提升；证据不足时为空")
    ci_low: float | None = None
    ci_high: float | None = None
    known: bool = False


class CompletedCourse(Record):
    course_id: str
    title: str | None = None
    date: date
    competencies: list[CourseMove] = Field(default_factory=list)


class Growth(Record):
    """我的成长: a teacher's competencies at each assessment date, and what the courses between them moved."""

    dates: list[date] = Field(default_factory=list)
    points: list[GrowthPoint] = Field(default_factory=list)
    courses: list[CompletedCourse] = Field(default_factory=list)
