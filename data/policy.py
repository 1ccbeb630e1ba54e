"""Training policy (培训政策): the rules a province's plan puts on study menus, trainee selection and costs.

Every rule is data: a YAML file under data/reference/policies/ is validated by load_policy() into a frozen Policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, TypeVar

import yaml

from data.schema import FORMAT, STAGE

POLICY_DIR = Path(__file__).parent / "reference" / "policies"

FORMATS = FORMAT.values
STAGES = STAGE.values
# "unfinished" (未结业) is not a record status: it is a record still `enrolled` after its end date.
BAR_STATUSES = ("no_show", "dropped", "unfinished")

T = TypeVar("T")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class MandatoryTopic:
    """必修专题: a topic a menu must cover unless the teacher completed it within ``recency_months``.

    ``recency_months`` None means one completion ever is enough; empty ``stages`` means every stage; empty
    ``formats`` means a course of any format covers it (Henan 2021 asks for asynchronous online delivery).
    """

    topic: str
    recency_months: int | None
    stages: tuple[str, ...]
    formats: tuple[str, ...]

    def applies_to(self, stage: str) -> bool:
        return not self.stages or stage in self.stages


@dataclass(frozen=True)
class ProjectDuration:
    """培训时长 of one kind of project in the plan, as the plan states it (``note`` quotes the text)."""

    project: str
    days: float
    online_hours: float
    note: str


@dataclass(frozen=True)
class Policy:
    """培训政策: the rules one province or plan puts on menus, hours owed, the three-year bar and costs.

    Menu: ``menu_hours_target`` 学时, up to ``menu_hours_target + menu_hours_slack``; each applicable
    mandatory topic not completed recently; practical courses ≥ ``practical_share_min`` of the hours (0 = no
    rule); only ``allowed_formats``; total cost ≤ ``budget_yuan`` (None = no cap); at most
    ``max_courses_per_competency`` courses per competency (None = no cap); nothing already completed when
    ``exclude_completed``; only courses open to the teacher's stage and subject when ``require_open_to_teacher``.

    Hours owed: ``cycle_hours`` 学时 every ``cycle_years`` years, of which ``it_hours`` of 信息技术应用能力提升
    工程2.0 within ``it_years`` years.

    Three-year bar: a teacher whose record in a face-to-face project (``bar_formats``) has a status in
    ``bar_statuses`` may not join another for ``bar_years`` years (0 = no bar).

    Costs: ``offline_yuan_per_day`` per trainee per face-to-face day and ``online_yuan_per_hour`` per trainee
    per online 学时.

    Selection (精准选人): ``rural_priority_weight`` is added to the need score (0–1 scale) of a teacher at a
    rural school when trainees are ranked (重点向乡村学校倾斜); 0 switches the priority off. Classes hold
    ``class_size`` trainees (50人编班).
    """

    name: str
    title_zh: str
    source: str
    menu_hours_target: float
    menu_hours_slack: float
    mandatory_topics: tuple[MandatoryTopic, ...]
    practical_share_min: float
    allowed_formats: tuple[str, ...]
    budget_yuan: float | None
    max_courses_per_competency: int | None
    exclude_completed: bool
    require_open_to_teacher: bool
    cycle_hours: float
    cycle_years: int
    it_hours: float
    it_years: int
    bar_years: int
    bar_statuses: tuple[str, ...]
    bar_formats: tuple[str, ...]
    offline_yuan_per_day: float
    online_yuan_per_hour: float
    rural_priority_weight: float
    class_size: int
    durations: tuple[ProjectDuration, ...]

    @property
    def menu_hours_max(self) -> float:
        return self.menu_hours_target + self.menu_hours_slack

    def mandatory_topics_for(self, stage: str) -> tuple[MandatoryTopic, ...]:
        return tuple(t for t in self.mandatory_topics if t.applies_to(stage))

    def cost_per_trainee_yuan(self, days: float, online_hours: float) -> float:
        return days * self.offline_yuan_per_day + online_hours * self.online_yuan_per_hour


class _Invalid(Exception):
    """Raised by a value parser; ``path`` locates the value inside its key (``[2].topic``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def under(self, segment: str) -> _Invalid:
        return _Invalid(self.message, segment + self.path)


def _number(value: Any, minimum: float = 0.0, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"应为数字，实际为 {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"在 {minimum} 到 {maximum} 之间" if maximum is not None else f"不小于 {minimum}"
        raise _Invalid(f"应{bound}，实际为 {value!r}")
    return float(value)


def _positive(value: Any) -> float:
    number = _number(value)
    if number == 0:
        raise _Invalid("应大于 0，实际为 0")
    return number


def _share(value: Any) -> float:
    return _number(value, 0.0, 1.0)


def _count(value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _Invalid(f"应为不小于 {minimum} 的整数，实际为 {value!r}")
    return value


def _positive_count(value: Any) -> int:
    return _count(value, 1)


def _optional(parse: Callable[[Any], T]) -> Callable[[Any], T | None]:
    return lambda value: None if value is None else parse(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"应为非空文本，实际为 {value!r}")
    return value.strip()


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"应为 true 或 false，实际为 {value!r}")
    return value


def _choices(allowed: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _Invalid(f"应为列表（可选值：{', '.join(allowed)}），实际为 {value!r}")
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise _Invalid(f"含未知取值 {unknown}；可选值：{', '.join(allowed)}")
        return tuple(value)

    return parse


def _mapping(value: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"应为键值表，实际为 {value!r}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise _Invalid(
            f"含未知的键 {', '.join(map(str, unknown))}；可用的键：{', '.join(required + optional)}"
        )
    missing = [k for k in required if k not in value]
    if missing:
        raise _Invalid(f"缺少键 {', '.join(missing)}")
    return value


def _records(value: Any, parse_one: Callable[[Any], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"应为列表，实际为 {value!r}")
    parsed = []
    for i, item in enumerate(value):
        try:
            parsed.append(parse_one(item))
        except _Invalid as exc:
            raise exc.under(f"[{i + 1}]") from None
    return tuple(parsed)


def _field(fields: Mapping[str, Any], key: str, parse: Callable[[Any], T], default: Any = None) -> T:
    try:
        return parse(fields.get(key, default))
    except _Invalid as exc:
        raise exc.under(f".{key}") from None


def _mandatory_topic(value: Any) -> MandatoryTopic:
    fields = _mapping(value, ("topic", "recency_months"), ("stages", "formats"))
    return MandatoryTopic(
        topic=_field(fields, "topic", _text),
        recency_months=_field(fields, "recency_months", _optional(_positive_count)),
        stages=_field(fields, "stages", _choices(STAGES), []),
        formats=_field(fields, "formats", _choices(FORMATS), []),
    )


def _duration(value: Any) -> ProjectDuration:
    fields = _mapping(value, ("project", "days", "online_hours"), ("note",))
    return ProjectDuration(
        project=_field(fields, "project", _text),
        days=_field(fields, "days", _number),
        online_hours=_field(fields, "online_hours", _number),
        note=_field(fields, "note", lambda v: str(v).strip(), ""),
    )


# One parser per key; the YAML keys are the Policy field names.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "name": _text,
    "title_zh": _text,
    "source": _text,
    "menu_hours_target": _positive,
    "menu_hours_slack": _number,
    "mandatory_topics": lambda v: _records(v, _mandatory_topic),
    "practical_share_min": _share,
    "allowed_formats": _choices(FORMATS),
    "budget_yuan": _optional(_number),
    "max_courses_per_competency": _optional(_positive_count),
    "exclude_completed": _flag,
    "require_open_to_teacher": _flag,
    "cycle_hours": _number,
    "cycle_years": _positive_count,
    "it_hours": _number,
    "it_years": _positive_count,
    "bar_years": _count,
    "bar_statuses": _choices(BAR_STATUSES),
    "bar_formats": _choices(FORMATS),
    "offline_yuan_per_day": _number,
    "online_yuan_per_hour": _number,
    "rural_priority_weight": _number,
    "class_size": _positive_count,
    "durations": lambda v: _records(v, _duration),
}
_OPTIONAL_KEYS = {"durations": ()}


def available_policies() -> list[str]:
    """Names of the built-in policies (files under data/reference/policies/)."""
    return sorted(p.stem for p in POLICY_DIR.glob("*.yaml"))


def policy_path(name_or_path: str | Path) -> Path:
    """The file behind a built-in policy name, or the given path when it names a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise PolicyError(f"找不到政策文件 {candidate}")
        return candidate
    builtin = POLICY_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        raise PolicyError(f"没有名为 {name_or_path!r} 的内置政策；可用：{', '.join(available_policies())}")
    return builtin


def parse_policy(document: Any, source: str = "<policy>") -> Policy:
    """Validate a parsed YAML document into a Policy; errors name ``source`` and the offending key."""
    if not isinstance(document, dict):
        raise PolicyError(f"政策文件 {source} 的顶层应为键值表，实际为 {type(document).__name__}")
    unknown = sorted(set(map(str, document)) - set(_PARSERS))
    if unknown:
        hints = [
            f"{key}（是否应为 {close[0]}？）" if (close := get_close_matches(key, _PARSERS, 1)) else key
            for key in unknown
        ]
        raise PolicyError(f"政策文件 {source} 含未知的键 {', '.join(hints)}；可用的键：{', '.join(_PARSERS)}")
    values: dict[str, Any] = {}
    for key, parse in _PARSERS.items():
        if key not in document:
            if key in _OPTIONAL_KEYS:
                values[key] = _OPTIONAL_KEYS[key]
                continue
            raise PolicyError(f"政策文件 {source} 缺少键 {key}")
        try:
            values[key] = parse(document[key])
        except _Invalid as exc:
            raise PolicyError(f"政策文件 {source} 的键 {key}{exc.path}：{exc.message}") from None
    return Policy(**values)


def load_policy(name_or_path: str | Path) -> Policy:
    """Load a built-in policy by name (default, henan_2021, jiangxi_2022) or a policy YAML file by path."""
    path = policy_path(name_or_path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PolicyError(f"政策文件 {path} 不是有效的 UTF-8 YAML：{exc}") from None
    return parse_policy(document, str(path))
