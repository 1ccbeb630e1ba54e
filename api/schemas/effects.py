"""Response models of the 训后成效 routes: what each course and project changed (`recommender.effects`'s
`effects_report`) and a teacher's growth (`teacher_growth`)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import ConfigDict, Field

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "scope": "county:修水县",
                    "n_teachers_measured": 412,
                    "level": 0.9,
                    "rows": [
                        {
                            "kind": "course",
                            "unit_id": "C0417",
                            "title": "大单元教学设计与实施",
                            "competency": "DES2",
                            "competency_name": "大单元整体教学设计",
                            "effect": 4.2,
                            "ci_low": 1.9,
                            "ci_high": 6.5,
                            "n_treated": 58,
                            "n_comparison": 301,
                            "known": True,
                            "method": "adjusted",
                            "n_records": 64,
                            "completion_rate": 0.91,
                            "satisfaction": 4.3,
                        }
                    ],
                }
            ]
        }
    )


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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dates": ["2022-03-15", "2024-10-20"],
                    "points": [
                        {
                            "date": "2022-03-15",
                            "competency": "DES2",
                            "name": "大单元整体教学设计",
                            "domain": "教学设计与实施",
                            "estimate": 52.0,
                            "std_error": 6.1,
                        },
                        {
                            "date": "2024-10-20",
                            "competency": "DES2",
                            "name": "大单元整体教学设计",
                            "domain": "教学设计与实施",
                            "estimate": 60.5,
                            "std_error": 5.8,
                        },
                    ],
                    "courses": [
                        {
                            "course_id": "C0417",
                            "title": "大单元教学设计与实施",
                            "date": "2023-06-30",
                            "competencies": [
                                {
                                    "competency": "DES2",
                                    "name": "大单元整体教学设计",
                                    "change": 8.5,
                                    "effect": 4.2,
                                    "ci_low": 1.9,
                                    "ci_high": 6.5,
                                    "known": True,
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )
