"""The input data contract (数据契约) of DESIGN.md as code: tables, columns, Chinese aliases, enums, ranges, keys.

Ingestion validates against it and documentation is read from it; change the contract here, nowhere else.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["str", "int", "float", "bool", "date", "list"]

# List cells may separate their elements with any of these (half-width, full-width semicolon, 顿号).
LIST_SEPARATORS = (";", "；", "、")
LIST_SPLIT_PATTERN = "[" + "".join(map(re.escape, LIST_SEPARATORS)) + "]"

# Spellings of "no value" that exports write into empty cells; "none" is absent on purpose: it is a title.
NULL_TOKENS = frozenset({"", "nan", "null", "na", "n/a", "#n/a", "<na>", "nat"})


def normalise_token(text: str) -> str:
    """Fold width, case and surrounding blanks so that `ＰＲＩＭＡＲＹ `, `primary` and `Primary` compare equal."""
    return unicodedata.normalize("NFKC", text).strip().lower()


@dataclass(frozen=True)
class EnumSpec:
    """Allowed values of a column: the English contract values and the spellings accepted for each."""

    name: str
    values: tuple[str, ...]
    # value -> accepted spellings; the first one is its Chinese label (`label`), the only place it is declared
    aliases: Mapping[str, tuple[str, ...]]

    def lookup(self) -> dict[str, str]:
        """Normalised spelling -> contract value."""
        table = {normalise_token(v): v for v in self.values}
        for value, spellings in self.aliases.items():
            table.update({normalise_token(s): value for s in spellings})
        return table

    def label(self, value: object) -> str:
        """The Chinese label of a contract value — its first accepted spelling, the one word every page,
        reason, workbook and CLI line uses for it — or the value itself when it has none."""
        spellings = self.aliases.get(str(value))
        return spellings[0] if spellings else str(value)

    def label_map(self) -> dict[str, str]:
        """Contract value -> Chinese label, for every value."""
        return {v: self.label(v) for v in self.values}

    def labels(self) -> str:
        """What a clerk may write, e.g. ``幼儿园/小学/初中/高中``."""
        return "/".join(self.label(v) for v in self.values)


STAGE = EnumSpec(
    "stage",
    ("kindergarten", "primary", "junior", "senior"),
    {
        "kindergarten": ("幼儿园", "学前", "学前教育", "幼教"),
        "primary": ("小学",),
        "junior": ("初中", "初级中学"),
        "senior": ("高中", "高级中学", "普通高中"),
    },
)
SCHOOL_TYPE = EnumSpec(
    "school_type",
    ("rural", "town", "urban"),
    {"rural": ("乡村", "农村"), "town": ("镇区", "乡镇", "镇"), "urban": ("城区", "城市")},
)
TITLE = EnumSpec(
    "title",
    ("none", "third", "second", "first", "senior", "full_senior"),
    {
        "none": ("未定级", "无", "无职称", "未评级", "未定职级"),
        "third": ("三级", "三级教师", "中小学三级教师", "幼儿园三级教师"),
        "second": ("二级", "二级教师", "中小学二级教师", "幼儿园二级教师"),
        "first": ("一级", "一级教师", "中小学一级教师", "幼儿园一级教师"),
        "senior": ("高级", "高级教师", "中小学高级教师", "幼儿园高级教师"),
        "full_senior": ("正高级", "正高级教师", "中小学正高级教师"),
    },
)
ROLE = EnumSpec(
    "role",
    ("head_teacher", "principal", "party_secretary", "trainer", "researcher"),
    {
        "head_teacher": ("班主任",),
        "principal": ("校长", "园长"),
        "party_secretary": ("党组织书记", "党支部书记", "书记"),
        "trainer": ("培训者", "培训师"),
        "researcher": ("教研员",),
    },
)
FORMAT = EnumSpec(
    "format",
    ("online", "offline", "blended", "workshop", "shadowing", "school_based"),
    {
        "online": ("线上", "网络", "在线", "网络研修"),
        "offline": ("线下集中", "线下", "集中", "面授", "集中面授"),
        # the labels are the format names of the policy documents (seeds 003/004: 混合式培训, 跟岗研修, 校本研修)
        "blended": ("混合式", "混合", "线上线下混合"),
        "workshop": ("工作坊",),
        "shadowing": ("跟岗研修", "跟岗", "影子培训"),
        "school_based": ("校本研修", "校本"),
    },
)
STATUS = EnumSpec(
    "status",
    ("enrolled", "completed", "dropped", "no_show"),
    {
        "enrolled": ("在训", "在学", "进行中"),
        "completed": ("结业", "已结业", "完成", "已完成"),
        "dropped": ("退出", "中途退出", "退训"),
        "no_show": ("未参训", "缺训", "未参加"),
    },
)
SOURCE = EnumSpec(
    "source",
    ("test", "self", "observation"),
    {"test": ("测评", "测试", "考试"), "self": ("自评",), "observation": ("观察", "课堂观察")},
)
LEVEL = EnumSpec(
    "level",
    ("1", "2", "3"),
    {"1": ("入门", "初级", "基础"), "2": ("进阶", "中级"), "3": ("高级", "高阶")},
)
EVENT_TYPE = EnumSpec(
    "event_type",
    ("shown", "clicked", "enrolled", "completed", "dismissed", "rated"),
    {
        "shown": ("展示",),
        "clicked": ("点击",),
        "enrolled": ("报名", "选课"),
        "completed": ("完成",),
        "dismissed": ("忽略", "不感兴趣"),
        "rated": ("评分", "评价"),
    },
)

TRUE_TOKENS = frozenset({"是", "true", "1", "1.0", "y", "yes", "t", "对"})
FALSE_TOKENS = frozenset({"否", "false", "0", "0.0", "n", "no", "f", "错"})


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    ``label`` is the Chinese name used in reject reasons; ``aliases`` are the other accepted header spellings.
    For ``list`` columns, ``enum`` / ``taxonomy`` apply to each element. ``references`` names the table whose
    key the value must match; ``taxonomy`` means the values are competency codes of the taxonomy in force.
    """

    name: str
    kind: ColumnKind
    label: str
    aliases: tuple[str, ...] = ()
    required: bool = False
    enum: EnumSpec | None = None
    min_value: float | None = None
    max_value: float | None = None
    min_exclusive: bool = False
    default: object = None
    references: str | None = None
    taxonomy: bool = False

    def range_text(self) -> str:
        """The allowed range in words, e.g. ``应在 0–100 之间``."""
        lo, hi = _fmt(self.min_value), _fmt(self.max_value)
        if self.min_value is not None and self.max_value is not None:
            return f"应在 {lo}–{hi} 之间"
        if self.min_value is not None:
            return f"应 {'>' if self.min_exclusive else '≥'} {lo}"
        return f"应 ≤ {hi}"


def _fmt(x: float | None) -> str:
    return "" if x is None else (f"{x:g}")


@dataclass(frozen=True)
class TableSpec:
    """One contract table: its columns, unique key and the file names it is recognised by."""

    name: str
    label: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    file_aliases: tuple[str, ...] = ()
    _by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    def column(self, name: str) -> Column:
        return self._by_name[name]

    def has_column(self, name: str) -> bool:
        return name in self._by_name

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def header_lookup(self) -> dict[str, str]:
        """Normalised header spelling -> contract column name."""
        table: dict[str, str] = {}
        for c in self.columns:
            for spelling in (c.name, c.label, *c.aliases):
                table.setdefault(normalise_header(spelling), c.name)
        return table

    def key_label(self) -> str:
        return "+".join(self.column(k).label for k in self.key)


def _c(name: str, kind: ColumnKind, label: str, *aliases: str, **kw: object) -> Column:
    return Column(name, kind, label, aliases, **kw)  # type: ignore[arg-type]


TEACHERS = TableSpec(
    "teachers",
    "教师表",
    (
        _c("teacher_id", "str", "教师编号", "教师ID", "教师代码", required=True),
        _c("stage", "str", "学段", "任教学段", required=True, enum=STAGE),
        _c("subject", "str", "任教学科", "学科", required=True),
        _c("province", "str", "省", "省份"),
        _c("city", "str", "市", "地市", "城市"),
        _c("county", "str", "县区", "区县", "县", "所在县区"),
        _c("school_id", "str", "学校编号", "学校代码", "学校ID"),
        _c("school_type", "str", "城乡类型", "城乡", "城乡分类", enum=SCHOOL_TYPE),
        _c("title", "str", "职称", "职称等级", "专业技术职务", enum=TITLE),
        _c("years_teaching", "int", "教龄", min_value=0),
        _c("roles", "list", "岗位", "角色", "职务", enum=ROLE),
        _c("birth_year", "int", "出生年份", "出生年", min_value=1900, max_value=2100),
        _c("gender", "str", "性别"),
    ),
    key=("teacher_id",),
    file_aliases=("teachers", "teacher", "教师", "教师表", "教师信息", "教师名单", "教师基本信息"),
)

COURSES = TableSpec(
    "courses",
    "课程表",
    (
        _c("course_id", "str", "课程编号", "课程ID", "课程代码", required=True),
        _c("title", "str", "课程名称", "课程标题", "课程名", required=True),
        _c("description", "str", "课程简介", "简介", "课程描述"),
        _c("hours", "float", "学时", "学时数", required=True, min_value=0, min_exclusive=True),
        _c("format", "str", "形式", "培训形式", "授课形式", enum=FORMAT),
        _c("competencies", "list", "能力点", "能力代码", taxonomy=True),
        _c("stages", "list", "适用学段", enum=STAGE),
        _c("subjects", "list", "适用学科"),
        _c("level", "int", "层级", "难度", enum=LEVEL, min_value=1, max_value=3),
        _c("practical", "bool", "实践性", "是否实践"),
        _c("mandatory_topic", "str", "必修专题"),
        _c("prerequisites", "list", "先修课程"),
        _c("provider", "str", "提供方", "课程提供方", "机构"),
        _c("cost_yuan", "float", "费用", "价格", min_value=0),
        _c("active", "bool", "是否开放", "开放", default=True),
    ),
    key=("course_id",),
    file_aliases=("courses", "course", "课程", "课程表", "课程目录", "课程信息"),
)

TRAINING_RECORDS = TableSpec(
    "training_records",
    "培训记录表",
    (
        _c("record_id", "str", "记录编号", "记录ID", required=True),
        _c("teacher_id", "str", "教师编号", "教师ID", required=True, references="teachers"),
        _c("course_id", "str", "课程编号", "课程ID", references="courses"),
        _c("project_id", "str", "项目编号", "项目ID"),
        _c("project_name", "str", "项目名称"),
        _c("start_date", "date", "开始日期", "开始时间", required=True),
        _c("end_date", "date", "结束日期", "结束时间"),
        _c("hours", "float", "学时", "学时数", "获得学时", min_value=0),
        _c("format", "str", "形式", "培训形式", enum=FORMAT),
        _c("status", "str", "状态", "培训状态", "学习状态", required=True, enum=STATUS),
        _c("score", "float", "成绩", "考核成绩", min_value=0, max_value=100),
        _c("satisfaction", "float", "满意度", "满意度评分", min_value=1, max_value=5),
    ),
    key=("record_id",),
    file_aliases=("training_records", "records", "training", "培训记录", "参训记录", "学习记录"),
)

ITEMS = TableSpec(
    "items",
    "题目表",
    (
        _c("item_id", "str", "题目编号", "题目ID", "试题编号", required=True),
        _c("competencies", "list", "能力点", "能力代码", required=True, taxonomy=True),
        _c("max_score", "float", "满分", "分值", "满分值", min_value=0, min_exclusive=True, default=1.0),
    ),
    key=("item_id",),
    file_aliases=("items", "item_bank", "题目", "题库", "试题"),
)

RESPONSES = TableSpec(
    "responses",
    "作答表",
    (
        _c("teacher_id", "str", "教师编号", "教师ID", required=True, references="teachers"),
        _c("item_id", "str", "题目编号", "题目ID", "试题编号", "题号", required=True, references="items"),
        _c("score", "float", "得分", required=True, min_value=0),
        _c("taken_at", "date", "作答时间", "作答日期", "测评时间"),
    ),
    key=("teacher_id", "item_id", "taken_at"),
    file_aliases=("responses", "作答", "作答记录", "答题记录"),
)

COMPETENCY_SCORES = TableSpec(
    "competency_scores",
    "能力测评表",
    (
        _c("teacher_id", "str", "教师编号", "教师ID", required=True, references="teachers"),
        _c("competency", "str", "能力代码", "能力点", "能力编码", required=True, taxonomy=True),
        _c("score", "float", "得分", "分数", required=True, min_value=0, max_value=100),
        _c("taken_at", "date", "测评时间", "测评日期", "作答时间"),
        _c("source", "str", "来源", "测评来源", enum=SOURCE),
    ),
    key=("teacher_id", "competency", "taken_at", "source"),
    file_aliases=("competency_scores", "scores", "能力测评", "能力得分", "测评结果", "测评"),
)

PROJECTS = TableSpec(
    "projects",
    "培训项目表",
    (
        _c("project_id", "str", "项目编号", "项目ID", required=True),
        _c("name", "str", "项目名称", required=True),
        _c("target_stages", "list", "目标学段", "对象学段", enum=STAGE),
        _c("target_subjects", "list", "目标学科", "对象学科"),
        _c("target_roles", "list", "目标岗位", "对象岗位", enum=ROLE),
        _c("min_title", "str", "最低职称", enum=TITLE),
        _c("min_years", "int", "最低教龄", min_value=0),
        _c("scope_counties", "list", "覆盖县区", "范围县区"),
        _c("format", "str", "形式", "培训形式", enum=FORMAT),
        _c("days", "float", "天数", "集中天数", min_value=0),
        _c("online_hours", "float", "线上学时", min_value=0),
        _c("quota", "int", "名额", "计划人数", min_value=0),
        _c("class_size", "int", "班额", "每班人数", min_value=1, default=50),
    ),
    key=("project_id",),
    file_aliases=("projects", "project", "培训项目", "项目"),
)

EVENTS = TableSpec(
    "events",
    "反馈事件表",
    (
        _c("event_id", "str", "事件编号", required=True),
        _c("teacher_id", "str", "教师编号", required=True),
        _c("course_id", "str", "课程编号"),
        _c("type", "str", "类型", "事件类型", required=True, enum=EVENT_TYPE),
        _c("value", "str", "值"),
        _c("ts", "date", "时间"),
    ),
    # ids are the client's, unique within one teacher's events (the service's store keys them so)
    key=("teacher_id", "event_id"),
    file_aliases=("events", "事件", "反馈"),
)

TAXONOMY = TableSpec(
    "taxonomy",
    "能力框架",
    (
        _c("code", "str", "编码", "能力代码", "代码", required=True),
        _c("name", "str", "名称", "能力名称", required=True),
        _c("domain", "str", "领域", "所属领域"),
        _c("description", "str", "描述", "说明", "能力描述"),
        _c("environment", "str", "环境", "应用环境"),
        _c("dimension", "str", "维度", "能力维度"),
    ),
    key=("code",),
    file_aliases=("taxonomy", "competencies", "能力框架", "能力体系", "能力标准"),
)

# Validation order: a table is validated after every table it references.
TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TAXONOMY,
        TEACHERS,
        COURSES,
        ITEMS,
        TRAINING_RECORDS,
        RESPONSES,
        COMPETENCY_SCORES,
        PROJECTS,
        EVENTS,
    )
}

_HEADER_NOISE = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff*_\-]+")
_HEADER_UNIT = re.compile(
    r"[(\[【][^)\]】]*[)\]】]$"
)  # a trailing unit or note: 教龄(年), 费用（元）, 县（区）


def normalise_header(text: str) -> str:
    """Fold a header cell: width, case, blanks, BOM, zero-width characters, ``_``/``-``, a marker ``*`` and a
    trailing unit in brackets.

    ``Teacher ID``, ``teacher_id``, ``教师编号*`` and ``教龄（年）`` all become comparable this way.
    """
    folded = _HEADER_NOISE.sub("", unicodedata.normalize("NFKC", str(text)).lower())
    return _HEADER_UNIT.sub("", folded) or folded


def map_header(spec: TableSpec, headers: Iterable[str]) -> dict[str, str]:
    """Raw header -> contract column for the recognised ones; the first of two spellings of a column wins."""
    lookup = spec.header_lookup()
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for raw in headers:
        name = lookup.get(normalise_header(raw))
        if name is not None and name not in taken:
            mapping[raw] = name
            taken.add(name)
    return mapping


def table_for_stem(stem: str) -> str | None:
    """The table a file stem names (``教师``, ``teachers_2023``, ``河南省培训记录``); None when none or several fit.

    ASCII aliases must stand as a word (``_``, ``-``, ``.``, blank or digits around them); Chinese ones may
    sit anywhere in the stem. The longest matching alias decides, so ``教师培训记录`` is a training-records file.
    """
    key = unicodedata.normalize("NFKC", stem).strip().lower()
    hits: dict[str, int] = {}
    for spec in TABLES.values():
        for alias in spec.file_aliases:
            if alias == key:
                return spec.name
            if alias.isascii():
                found = re.search(rf"(^|[\W_\d]){re.escape(alias)}($|[\W_\d])", key) is not None
            else:
                found = alias in key
            if found:
                hits[spec.name] = max(hits.get(spec.name, 0), len(alias))
    if not hits:
        return None
    longest = max(hits.values())
    winners = [name for name, length in hits.items() if length == longest]
    return winners[0] if len(winners) == 1 else None


def table_for_header(headers: Iterable[str]) -> str | None:
    """The table whose required columns the header holds (the most recognised columns wins); None if none."""
    headers = list(headers)
    best: tuple[int, str] | None = None
    for spec in TABLES.values():
        mapped = set(map_header(spec, headers).values())
        if set(spec.required) <= mapped and (best is None or len(mapped) > best[0]):
            best = (len(mapped), spec.name)
    return None if best is None else best[1]


def identify_table(stem: str, headers: Iterable[str]) -> str | None:
    """The table a file holds: by its name when the name says, else by its header."""
    return table_for_stem(stem) or table_for_header(headers)
