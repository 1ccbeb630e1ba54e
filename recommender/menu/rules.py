"""The menu's rules: their codes and Chinese labels (RULES), what the teacher asks (MenuRequest), the numbers every
rule uses for one teacher (MenuLimits, from the policy, the teacher and the request), the menu itself (Menu), and
the two predicates the programme, the sentences and check_menu share (format_allowed, covers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd

from data.policy import FORMATS, MandatoryTopic, Policy
from recommender.explain import FORMAT_ZH

# Slack in hours / yuan / courses when a menu is checked: the solver's tolerances, far below any real breach.
TOLERANCE: Final = 1e-4

Status = Literal["ok", "relaxed", "empty"]


@dataclass(frozen=True)
class Rule:
    """One menu rule: a stable code (logs, API, tests) and its Chinese label, filled from MenuLimits."""

    code: str
    label_zh: str
    relaxable: bool


# Relaxable rules in the order they are relaxed, one at a time, when the whole set cannot be met: the first
# whose relaxation admits a menu wins. Relaxing a rule breaches it as little as possible, then maximises
# utility: mandatory_topic loses the fewest topics; practical_share the least practical hours short; hours
# takes as many hours as fit (the maximum is never relaxed); budget the least overrun; formats the fewest hours
# in other formats; per_competency the fewest courses over the cap. Mandatory topics go first because a topic
# with no course in the catalogue is the commonest cause; a shorter menu is preferred to one that breaks the
# budget, the formats or the cap.
RULES: Final = (
    Rule("mandatory_topic", "必修专题：{topic}", True),
    Rule("practical_share", "实践性课程学时不少于 {practical_pct}%", True),
    Rule("hours", "学时要求：{hours_min:g}–{hours_max:g} 学时", True),
    Rule("budget", "费用上限：{budget_yuan:g} 元", True),
    Rule("formats", "培训形式：限于{formats_zh}", True),
    Rule("per_competency", "同一能力点最多 {max_per_competency} 门课程", True),
    Rule("completed", "不重复已完成的课程", False),
    Rule("excluded", "不含教师排除的课程", False),
    Rule("prerequisites", "先修课程已完成或排在本课程之前", False),
    Rule("candidates", "只含候选课程且不重复", False),
)
RULE_BY_CODE: Final = {rule.code: rule for rule in RULES}
RELAXATION_ORDER: Final = tuple(rule.code for rule in RULES if rule.relaxable)
RELAXED_SUFFIX_ZH: Final = "。已仅放宽此项规则，其余规则均满足。"
NO_CANDIDATES_ZH: Final = (
    "无法生成选学菜单：没有可选的候选课程（已完成、已被排除、先修课程未满足或学时超过上限的课程不可选）。"
)
NO_RELAXATION_ZH: Final = (
    "无法生成选学菜单：即使放宽任何一项规则，候选课程仍无法满足其余规则；请补充候选课程或调整政策。"
)


@dataclass(frozen=True)
class TeacherMenuContext:
    """What the menu needs to know about the teacher; ``missing_mandatory`` comes from the policy's recency
    windows upstream (features.history)."""

    teacher_id: str
    stage: str
    missing_mandatory: tuple[str, ...] = ()
    completed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MenuRequest:
    """The teacher's own constraints when re-planning: a different hours target (the policy's slack stays),
    a subset of the allowed formats, courses to leave out, a personal budget."""

    hours_target: float | None = None
    formats: tuple[str, ...] | None = None
    exclude: frozenset[str] = frozenset()
    budget_yuan: float | None = None

    def __post_init__(self) -> None:
        if self.hours_target is not None and not self.hours_target > 0:
            raise ValueError(f"hours_target must be > 0, got {self.hours_target!r}")
        if self.budget_yuan is not None and not self.budget_yuan >= 0:
            raise ValueError(f"budget_yuan must be >= 0, got {self.budget_yuan!r}")
        if self.formats is not None:
            unknown = sorted(set(self.formats) - set(FORMATS))
            if unknown or not self.formats:
                raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {self.formats!r}")


@dataclass(frozen=True)
class MenuLimits:
    """The numbers every rule uses for one teacher: policy, teacher and request combined."""

    hours_min: float
    hours_max: float
    practical_share: float
    topics: tuple[MandatoryTopic, ...]
    formats: tuple[str, ...]
    budget_yuan: float | None
    max_per_competency: int | None
    exclude_completed: bool
    exclude: frozenset[str]

    def label(self, code: str, topic: str = "") -> str:
        """The rule's Chinese label with this teacher's numbers, e.g. 学时要求：50–60 学时."""
        return RULE_BY_CODE[code].label_zh.format(
            topic=topic,
            practical_pct=f"{self.practical_share * 100:g}",
            hours_min=self.hours_min,
            hours_max=self.hours_max,
            budget_yuan=self.budget_yuan if self.budget_yuan is not None else float("inf"),
            formats_zh="、".join(FORMAT_ZH[f] for f in self.formats) or "（无）",
            max_per_competency=self.max_per_competency,
        )


def menu_limits(
    teacher: TeacherMenuContext, policy: Policy, request: MenuRequest | None = None
) -> MenuLimits:
    """Combine the policy, the teacher and the request into the numbers of every rule."""
    request = request or MenuRequest()
    owed = set(teacher.missing_mandatory)
    budgets = [b for b in (policy.budget_yuan, request.budget_yuan) if b is not None]
    target = request.hours_target if request.hours_target is not None else policy.menu_hours_target
    formats = tuple(f for f in policy.allowed_formats if request.formats is None or f in request.formats)
    return MenuLimits(
        hours_min=float(target),
        hours_max=float(target + policy.menu_hours_slack),
        practical_share=float(policy.practical_share_min),
        topics=tuple(t for t in policy.mandatory_topics_for(teacher.stage) if t.topic in owed),
        formats=formats,
        budget_yuan=min(budgets) if budgets else None,
        max_per_competency=policy.max_courses_per_competency,
        exclude_completed=policy.exclude_completed,
        exclude=frozenset(request.exclude),
    )


@dataclass(frozen=True)
class Menu:
    """选学菜单 of one teacher. ``items`` are in rank order except that a prerequisite comes before the course
    that needs it; ``hours`` is aligned with ``items``. ``status`` is ok (every rule met), relaxed (the rule
    ``relaxed_rule`` could not be met and only it was relaxed) or empty (no course could be offered)."""

    teacher_id: str
    items: tuple[str, ...]
    hours: tuple[float, ...]
    total_hours: float
    practical_hours: float
    cost_yuan: float
    status: Status
    relaxed_rule: str | None = None
    message: str | None = None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "teacher_id": pd.Series([self.teacher_id] * len(self.items), dtype=object),
                "course_id": pd.Series(self.items, dtype=object),
                "hours": pd.Series(self.hours, dtype=np.float64),
            }
        )


def format_allowed(fmt: np.ndarray, formats: Sequence[str]) -> np.ndarray:
    # An unknown format breaks no rule only when every format is allowed.
    if set(FORMATS) <= set(formats):
        return np.ones(len(fmt), dtype=bool)
    return np.isin(fmt, [FORMATS.index(f) for f in formats])


def covers(topic: MandatoryTopic, topics: np.ndarray, fmt: np.ndarray) -> np.ndarray:
    hit = topics == topic.topic
    return hit & format_allowed(fmt, topic.formats) if topic.formats else hit
