"""Response and request schemas of the API: the public shape of portraits, menus, courses, cohorts, events.

The engine returns its own records (dataclasses or mappings); these models read them by attribute and keep only
the documented fields, so nothing the engine carries internally can reach a client.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
    model_validator,
)

from api.events import EventType
from data.schema import FORMAT

CourseId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# "Holds a character that str.strip() keeps": the whitespace set written out (\uXXXX reads the same in
# JSON Schema, Python and Rust regexes), so the schema refuses exactly the texts the server would strip to "".
NOT_BLANK = "[^" + "".join(f"\\u{i:04x}" for i in range(0x10000) if chr(i).isspace()) + "]"
# the contract values of data.schema (a subscript with a tuple is the Literal of its members)
Format = Literal[FORMAT.values]  # type: ignore[name-defined]
CohortBy = Literal[
    "province", "city", "county", "school", "stage", "subject", "school_type", "title", "career_stage"
]


def _plain(value: Any) -> Any:
    """Map pandas / numpy missing values and arrays to plain Python before validation."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class Record(BaseModel):
    """Base of every output record: read by attribute, pandas/numpy values normalised."""

    model_config = ConfigDict(from_attributes=True)

    @field_validator("*", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return _plain(value)


class Problem(BaseModel):
    """An error (RFC 9457); `detail` is written for people, in Chinese."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Forbidden",
                    "status": 403,
                    "detail": "无权查看该教师的数据。",
                }
            ]
        }
    )


# --- portraits -------------------------------------------------------------------------------------------


class CompetencyEstimate(Record):
    competency: str = Field(description="能力点编码（taxonomy code）")
    name: str | None = Field(None, description="能力点名称")
    domain: str | None = Field(None, description="所属维度")
    estimate: float = Field(description="能力估计（0–100）")
    std_error: float = Field(description="标准误（同一量表）；95% 区间为 estimate ± 1.96·std_error")
    source: str = Field(description="items / scores / fused / prior")
    is_prior: bool = Field(False, description="无测评数据，按同类教师推断")
    peer_mean: float | None = Field(None, description="同学段同学科教师平均")
    gap: float | None = Field(None, description="距目标水平的差距（≥ 0）")


class TrainingEntry(Record):
    record_id: str | None = None
    course_id: str | None = None
    title: str | None = Field(None, description="课程名称或项目名称")
    start_date: date | None = None
    end_date: date | None = None
    hours: float | None = None
    format: str | None = None
    status: str = Field(description="enrolled / completed / dropped / no_show")
    score: float | None = None

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _to_date(cls, value: Any) -> Any:
        value = _plain(value)
        return value.date() if isinstance(value, datetime) else value


class Portrait(Record):
    """A teacher's portrait (数字画像)."""

    teacher_id: str
    stage: str | None = None
    subject: str | None = None
    province: str | None = None
    city: str | None = None
    county: str | None = None
    school_id: str | None = None
    school_type: str | None = None
    title: str | None = None
    years_teaching: int | None = None
    roles: list[str] = Field(default_factory=list)
    career_stage: str | None = Field(None, description="novice / developing / backbone / expert")
    assessed: bool = Field(False, description="是否有测评数据")
    hours_required: float | None = Field(None, description="本周期应修学时")
    hours_done: float | None = Field(
        None, validation_alias=AliasChoices("hours_done", "hours_done_cycle"), description="本周期已修学时"
    )
    hours_owed: float | None = Field(None, description="尚欠学时")
    it_hours_owed: float | None = Field(None, description="信息技术应用能力尚欠学时")
    missing_mandatory: list[str] = Field(default_factory=list, description="尚未完成的必修专题")
    top_gaps: list[str] = Field(default_factory=list, description="差距最大的能力点编码")
    need_statement: str | None = Field(None, description="需求陈述（中文）")
    competencies: list[CompetencyEstimate] = Field(default_factory=list)
    history: list[TrainingEntry] = Field(default_factory=list, description="培训经历，按时间先后")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "teacher_id": "T000123",
                    "stage": "primary",
                    "subject": "数学",
                    "province": "江西省",
                    "city": "九江市",
                    "county": "修水县",
                    "school_id": "S0042",
                    "school_type": "rural",
                    "title": "second",
                    "years_teaching": 6,
                    "roles": ["head_teacher"],
                    "career_stage": "developing",
                    "assessed": True,
                    "hours_required": 360,
                    "hours_done": 212,
                    "hours_owed": 148,
                    "it_hours_owed": 18,
                    "missing_mandatory": ["师德师风"],
                    "top_gaps": ["IT-A3"],
                    "need_statement": "在「数据支持的学情分析」上低于同学段教师平均，建议优先提升。",
                    "competencies": [
                        {
                            "competency": "IT-A3",
                            "name": "数据支持的学情分析",
                            "domain": "信息技术应用",
                            "estimate": 42.0,
                            "std_error": 6.5,
                            "source": "items",
                            "is_prior": False,
                            "peer_mean": 60.0,
                            "gap": 28.0,
                        }
                    ],
                    "history": [
                        {
                            "course_id": "C0101",
                            "title": "新时代师德师风建设",
                            "start_date": "2023-03-01",
                            "end_date": "2023-03-20",
                            "hours": 12,
                            "format": "online",
                            "status": "completed",
                            "score": 88,
                        }
                    ],
                }
            ]
        }
    )


# --- menus -----------------------------------------------------------------------------------------------


class MenuItem(Record):
    course_id: str
    title: str
    hours: float
    format: str | None = None
    competencies: list[str] = Field(default_factory=list)
    mandatory_topic: str | None = None
    practical: bool | None = None
    reason: str = Field(description="推荐理由（中文）")


class Menu(Record):
    """A teacher's study menu (选学菜单) under the province's policy."""

    teacher_id: str
    items: list[MenuItem]
    hours_target: float | None = Field(None, description="本菜单目标学时")
    notes: list[str] = Field(default_factory=list, description="说明，例如无法满足的政策规则")
    model_version: str | None = Field(None, description="生成该菜单的模型版本")

    @computed_field(description="菜单总学时")  # type: ignore[prop-decorator]
    @property
    def hours_total(self) -> float:
        return float(sum(item.hours for item in self.items))

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "teacher_id": "T000123",
                    "hours_target": 50,
                    "hours_total": 52,
                    "notes": [],
                    "model_version": "20240901T020000Z-1a2b3c4d",
                    "items": [
                        {
                            "course_id": "C0417",
                            "title": "用数据分析学情：从作业到精准教学",
                            "hours": 16,
                            "format": "blended",
                            "competencies": ["IT-A3"],
                            "mandatory_topic": None,
                            "practical": True,
                            "reason": "针对您在「数据支持的学情分析」上的差距（估计 42 分，低于同学段教师平均 18 分）。",
                        }
                    ],
                }
            ]
        }
    )


class MenuConstraints(BaseModel):
    """A teacher's own constraints for re-planning the menu; absent fields keep the policy's defaults."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [{"hours": 40, "formats": ["online", "blended"], "exclude": ["C0417"]}]
        },
    )

    hours: float | None = Field(None, ge=1, le=500, description="希望的学时数")
    formats: tuple[Format, ...] | None = Field(None, min_length=1, description="接受的学习形式")
    exclude: tuple[CourseId, ...] = Field((), max_length=500, description="不想选的课程编号")


# --- courses ---------------------------------------------------------------------------------------------


class CourseHit(Record):
    course_id: str
    title: str
    score: float = Field(description="检索相关度")
    hours: float | None = None
    format: str | None = None
    competencies: list[str] = Field(default_factory=list)
    level: int | None = None


class SearchResult(BaseModel):
    query: str
    hits: list[CourseHit]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query": "用数据分析学情",
                    "hits": [
                        {
                            "course_id": "C0417",
                            "title": "用数据分析学情：从作业到精准教学",
                            "score": 0.71,
                            "hours": 16,
                            "format": "blended",
                            "competencies": ["IT-A3"],
                            "level": 2,
                        }
                    ],
                }
            ]
        }
    )


class Course(Record):
    course_id: str
    title: str
    description: str | None = None
    hours: float
    format: str | None = None
    competencies: list[str] = Field(default_factory=list)
    stages: list[str] = Field(default_factory=list, description="空表示所有学段")
    subjects: list[str] = Field(default_factory=list, description="空表示所有学科")
    level: int | None = None
    practical: bool | None = None
    mandatory_topic: str | None = None
    prerequisites: list[str] = Field(default_factory=list)
    provider: str | None = None
    cost_yuan: float | None = None
    active: bool = True

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "course_id": "C0417",
                    "title": "用数据分析学情：从作业到精准教学",
                    "description": "以作业与测验数据为线索，诊断学情并调整教学。",
                    "hours": 16,
                    "format": "blended",
                    "competencies": ["IT-A3"],
                    "stages": ["primary", "junior"],
                    "subjects": [],
                    "level": 2,
                    "practical": True,
                    "mandatory_topic": None,
                    "prerequisites": [],
                    "provider": "省教师发展中心",
                    "cost_yuan": 0,
                    "active": True,
                }
            ]
        }
    )


# --- cohorts ---------------------------------------------------------------------------------------------


class CohortSpan(Record):
    """The distinct areas the cohort's members belong to (what scope checks compare)."""

    province: list[str] = Field(default_factory=list)
    city: list[str] = Field(default_factory=list)
    county: list[str] = Field(default_factory=list)


class CohortCompetency(Record):
    competency: str
    name: str | None = Field(None, validation_alias=AliasChoices("name", "competency_name"))
    domain: str | None = None
    mean: float | None = None
    p10: float | None = None
    p25: float | None = None
    p50: float | None = None
    p75: float | None = None
    p90: float | None = None
    share_below_target: float | None = Field(
        None,
        validation_alias=AliasChoices("share_below_target", "share_below"),
        description="低于目标水平的比例（0–1）",
    )


class Heatmap(Record):
    """Mean estimate per sub-group (rows: counties or schools) × competency (columns)."""

    row_level: str = Field(description="行的分组层级，如 county / school")
    rows: list[str]
    row_sizes: list[int] = Field(description="每行的教师人数")
    columns: list[str] = Field(description="能力点编码")
    values: list[list[float | None]]

    @model_validator(mode="after")
    def _aligned(self) -> Heatmap:
        if len(self.rows) != len(self.row_sizes) or len(self.rows) != len(self.values):
            raise ValueError("heatmap rows, row_sizes and values differ in length")
        if any(len(row) != len(self.columns) for row in self.values):
            raise ValueError("heatmap value rows and columns differ in length")
        return self


class CommonGap(Record):
    competency: str
    name: str | None = None
    share: float = Field(description="该能力点位列前三差距的教师比例（0–1）")


class HoursProgress(Record):
    required_mean: float | None = None
    done_mean: float | None = Field(None, validation_alias=AliasChoices("done_mean", "mean_hours_done_cycle"))
    owed_mean: float | None = None
    share_behind: float | None = Field(
        None,
        validation_alias=AliasChoices("share_behind", "share_owing_hours"),
        description="学时进度落后（尚欠学时）的教师比例（0–1）",
    )


class BehindTeacher(Record):
    teacher_id: str
    school_id: str | None = None
    county: str | None = None
    hours_required: float | None = None
    hours_done: float | None = Field(None, validation_alias=AliasChoices("hours_done", "hours_done_cycle"))
    hours_owed: float | None = None
    missing_mandatory: list[str] = Field(default_factory=list)


class Cohort(Record):
    """A cohort portrait (群体画像)."""

    by: str
    value: str
    scope: str | None = Field(None, description="查看者的范围，如 county:修水县；管理员为空")
    n_teachers: int
    span: CohortSpan
    competencies: list[CohortCompetency] = Field(default_factory=list)
    heatmap: Heatmap | None = None
    hidden_rows: int = Field(0, description="因人数少于隐私下限而未显示的热力图行数")
    common_gaps: list[CommonGap] = Field(default_factory=list)
    hours: HoursProgress | None = None
    behind_on_hours: list[BehindTeacher] = Field(default_factory=list)
    completion_rate: float | None = None
    no_show_rate: float | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "by": "county",
                    "value": "修水县",
                    "scope": "county:修水县",
                    "n_teachers": 812,
                    "span": {"province": ["江西省"], "city": ["九江市"], "county": ["修水县"]},
                    "competencies": [
                        {
                            "competency": "IT-A3",
                            "name": "数据支持的学情分析",
                            "domain": "信息技术应用",
                            "mean": 55.2,
                            "p10": 38.0,
                            "p25": 46.1,
                            "p50": 55.0,
                            "p75": 64.3,
                            "p90": 71.8,
                            "share_below_target": 0.81,
                        }
                    ],
                    "heatmap": {
                        "row_level": "school",
                        "rows": ["S0042", "S0043"],
                        "row_sizes": [37, 52],
                        "columns": ["IT-A3"],
                        "values": [[51.0], [58.4]],
                    },
                    "hidden_rows": 1,
                    "common_gaps": [{"competency": "IT-A3", "name": "数据支持的学情分析", "share": 0.42}],
                    "hours": {"required_mean": 360, "done_mean": 241, "owed_mean": 119, "share_behind": 0.27},
                    "behind_on_hours": [
                        {
                            "teacher_id": "T000123",
                            "school_id": "S0042",
                            "county": "修水县",
                            "hours_required": 360,
                            "hours_done": 80,
                            "hours_owed": 280,
                            "missing_mandatory": ["师德师风"],
                        }
                    ],
                    "completion_rate": 0.88,
                    "no_show_rate": 0.04,
                }
            ]
        }
    )


# --- events, identity, health ----------------------------------------------------------------------------


class EventIn(BaseModel):
    """A feedback event posted by a page or a training platform; `event_id` is made by the client."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "3f0c9a6e2b1d4c58",
                    "teacher_id": "T000123",
                    "course_id": "C0417",
                    "type": "enrolled",
                    "value": None,
                    "ts": "2024-09-01T08:30:00+08:00",
                }
            ]
        },
    )

    event_id: str = Field(
        pattern=r"^[A-Za-z0-9_-]{8,64}$", description="客户端生成的唯一编号；重复提交只记一次"
    )
    teacher_id: str = Field(min_length=1, max_length=64)
    course_id: CourseId
    type: EventType
    value: float | None = Field(None, allow_inf_nan=False, description="评分事件（rated）的分值 1–5")
    ts: datetime | None = Field(None, description="事件发生时间；缺省为服务收到的时间")

    @field_validator("ts")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        # bounds keep the UTC conversion from overflowing on year 1 or 9999 timestamps
        if value is not None and not 2000 <= value.year <= 2100:
            raise ValueError("ts must lie between the years 2000 and 2100")
        return value

    @model_validator(mode="after")
    def _value_fits_type(self) -> EventIn:
        if self.type is EventType.RATED and (self.value is None or not 1 <= self.value <= 5):
            raise ValueError("a rated event needs a value between 1 and 5")
        return self

    def ts_utc(self, received_at: datetime) -> datetime:
        ts = self.ts or received_at
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)


class EventOut(Record):
    event_id: str
    teacher_id: str
    course_id: str
    type: EventType
    value: float | None = None
    ts: datetime
    stored: bool = Field(True, description="本次请求是否新写入（重复提交为 false）")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "3f0c9a6e2b1d4c58",
                    "teacher_id": "T000123",
                    "course_id": "C0417",
                    "type": "enrolled",
                    "value": None,
                    "ts": "2024-09-01T00:30:00Z",
                    "stored": True,
                }
            ]
        }
    )


class Me(BaseModel):
    role: Literal["teacher", "trainer", "admin"]
    teacher_id: str | None = None
    scope: str | None = Field(None, description="如 county:修水县")
    expires_at: datetime | None = Field(None, description="令牌到期时间（UTC）；页面到期即丢弃令牌")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"role": "trainer", "scope": "county:修水县", "expires_at": "2026-01-31T08:00:00+00:00"}
            ]
        }
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})


class Readiness(BaseModel):
    ready: bool
    model_version: str = Field(description="正在使用的模型版本（bundle）")
    loaded_at: datetime | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": True,
                    "model_version": "20240901T020000Z-1a2b3c4d",
                    "loaded_at": "2024-09-01T02:05:00Z",
                }
            ]
        }
    )
