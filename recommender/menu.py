"""Study menu (选学菜单): the courses a teacher is offered, chosen from the ranked candidates under the province's
policy, naming the rule when it cannot be met. The menu keeping every rule is found by an exact branch and bound
(recommender.knapsack); relaxing a rule, or a search too long, goes to a mixed-integer programme
(scipy.optimize.milp / HiGHS).

Rules (codes, Chinese labels) are defined once in RULES; the programme and check_menu() both read their numbers
from MenuLimits, which combines the policy, the teacher and the teacher's own request in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp

from data.policy import FORMATS, MandatoryTopic, Policy
from recommender.explain import FORMAT_ZH
from recommender.knapsack import FEASIBILITY, Programme, SearchLimit, best_subset

# Candidates the programme sees: the best TOP_CANDIDATES in allowed formats, the best TOP_OTHER_FORMATS in
# other formats (only used when the formats rule has to be relaxed), every course covering a topic still owed,
# and the prerequisites of those. More candidates rarely change the menu but slow the branch and bound.
TOP_CANDIDATES: Final = 40
TOP_OTHER_FORMATS: Final = 10
# HiGHS settles these small programmes in milliseconds; the limit only guards against a pathological case,
# where the best menu found so far is used.
MILP_OPTIONS: Final = {"time_limit": 2.0, "mip_rel_gap": 1e-4}
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


# --------------------------------------------------------------------------------------------------------------
# Candidate blocks: one teacher's or many teachers' candidates as aligned arrays, rows grouped by teacher and
# in rank order within each, so a teacher is a slice and the per-teacher loop touches no DataFrame.


@dataclass(frozen=True)
class _Block:
    start: np.ndarray  # (T + 1,) first row of each teacher
    course_id: np.ndarray  # (N,) object
    utility: np.ndarray  # (N,) see utility()
    hours: np.ndarray
    fmt: np.ndarray  # position in FORMATS, -1 unknown
    practical: np.ndarray  # bool
    topic: np.ndarray  # object, "" when none
    cost: np.ndarray  # NaN read as 0
    done: np.ndarray  # bool: the teacher completed this course
    comp_ptr: np.ndarray  # (N + 1,) CSR over comp_code
    comp_row: np.ndarray  # (E,) row of each competency entry
    comp_code: np.ndarray  # (E,) int, position in a vocabulary
    comp_names: np.ndarray  # vocabulary, object
    pre_ptr: np.ndarray  # (N + 1,) CSR over the next three
    pre_row: np.ndarray  # (P,) row of the course that needs the prerequisite
    pre_at: np.ndarray  # (P,) row of the prerequisite among the same teacher's candidates, -1 absent
    pre_done: np.ndarray  # (P,) bool: the teacher completed the prerequisite


def utility(rank: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """What a course adds to a menu: its hours times the DCG weight 1 / log2(rank + 2) of its 0-based rank.

    Ranker scores are only comparable within one list (LambdaRank), so the rank is used, not the score. Each
    学时 of the menu is worth the weight of the course it is spent on, so the hours go to the best-ranked
    courses; weighting courses instead of hours would pack the window with short courses from deep in the
    list. Every utility is positive, so the menu fills its hours window; the window, not the utility, sets its
    size.
    """
    return np.asarray(hours, dtype=np.float64) / np.log2(np.asarray(rank, dtype=np.float64) + 2.0)


def _cell_list(cell: object) -> list[str]:
    """The elements of a list cell (list, tuple, array; anything else means none) as strings."""
    if isinstance(cell, list | tuple | np.ndarray):
        return [str(v) for v in cell if v is not None and str(v) != ""]
    return []


def _list_entries(cells: Sequence[object] | pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, value) for every element of a column of list cells.

    A block repeats each course's list cell, the same object, for every teacher it is a candidate of: each
    object is read once."""
    seen: dict[int, list[str]] = {}
    lists = []
    for cell in cells:
        found = seen.get(id(cell))
        if found is None:
            found = seen[id(cell)] = _cell_list(cell)
        lists.append(found)
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists]).astype(np.int64)
    return rows, np.array([v for x in lists for v in x], dtype=object)


def _ptr(rows: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)


def _bools(col: pd.Series) -> np.ndarray:
    """Truth of each cell, NA read as False."""
    if pd.api.types.is_bool_dtype(col.dtype) and not col.hasnans:
        return col.to_numpy(dtype=bool)
    values = col.to_numpy(dtype=object)
    return np.array([bool(v) if not pd.isna(v) else False for v in values], dtype=bool)


def _find(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Position of each query in ``keys`` (unique int64), -1 when absent."""
    order = np.argsort(keys, kind="stable")
    at = np.searchsorted(keys[order], queries)
    at = np.minimum(at, len(keys) - 1)
    hit = (keys[order][at] == queries) if len(keys) else np.zeros(len(queries), dtype=bool)
    return np.where(hit, order[at] if len(keys) else -1, -1)


def _block(
    cands: pd.DataFrame,
    teacher_pos: np.ndarray,
    n_teachers: int,
    completed_pos: np.ndarray,
    completed_ids: np.ndarray,
) -> _Block:
    """Arrays for the candidates of ``n_teachers`` teachers; ``teacher_pos`` gives each row's teacher and
    (``completed_pos``, ``completed_ids``) the courses each teacher completed."""
    score = cands["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    # rank by score, ties by course_id, so the menu does not depend on the order rows arrive in
    tie = pd.factorize(cands["course_id"].astype(str).to_numpy(dtype=object), sort=True)[0]
    order = np.lexsort((tie, np.nan_to_num(-score, nan=np.inf), teacher_pos))
    tpos = np.asarray(teacher_pos, dtype=np.int64)[order]
    ids = cands["course_id"].to_numpy(dtype=object)[order].astype(str).astype(object)
    comp_rows, comp_values = _list_entries(cands["competencies"].to_numpy(dtype=object)[order])
    pre_rows, pre_ids = _list_entries(cands["prerequisites"].to_numpy(dtype=object)[order])
    # (teacher, course) pairs as one int64 key over a shared code for every course id in sight
    codes, uniques = pd.factorize(np.concatenate([ids, pre_ids, np.asarray(completed_ids, dtype=object)]))
    width = max(len(uniques), 1)
    key = tpos * width + codes[: len(ids)]
    pre_key = tpos[pre_rows] * width + codes[len(ids) : len(ids) + len(pre_ids)]
    done_key = np.asarray(completed_pos, dtype=np.int64) * width + codes[len(ids) + len(pre_ids) :]
    # a course listed twice for a teacher keeps its better-ranked row
    first = np.zeros(len(ids), dtype=bool)
    first[np.unique(key, return_index=True)[1]] = True
    row_at = np.cumsum(first) - 1
    keep_comp, keep_pre = first[comp_rows], first[pre_rows]
    comp_rows, comp_values = row_at[comp_rows[keep_comp]], comp_values[keep_comp]
    pre_rows, pre_key = row_at[pre_rows[keep_pre]], pre_key[keep_pre]
    tpos, ids, key, order = tpos[first], ids[first], key[first], order[first]
    start = np.searchsorted(tpos, np.arange(n_teachers + 1)).astype(np.int64)
    comp_code, comp_names = pd.factorize(comp_values)
    topic = cands["mandatory_topic"].to_numpy(dtype=object)[order]
    hours = cands["hours"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    return _Block(
        start=start,
        course_id=ids,
        utility=utility(np.arange(len(ids)) - start[tpos], hours),
        hours=hours,
        fmt=pd.Index(FORMATS)
        .get_indexer(pd.Index(cands["format"].to_numpy(dtype=object)[order]))
        .astype(np.int64),
        practical=_bools(cands["practical"])[order],
        topic=np.where(pd.isna(topic), "", topic).astype(str).astype(object),
        cost=np.nan_to_num(cands["cost_yuan"].to_numpy(dtype=np.float64, na_value=np.nan)[order], nan=0.0),
        done=np.isin(key, done_key),
        comp_ptr=_ptr(comp_rows, len(ids)),
        comp_row=comp_rows,
        comp_code=np.asarray(comp_code, dtype=np.int64),
        comp_names=np.asarray(comp_names, dtype=object),
        pre_ptr=_ptr(pre_rows, len(ids)),
        pre_row=pre_rows,
        pre_at=_find(key, pre_key),
        pre_done=np.isin(pre_key, done_key),
    )


@dataclass(frozen=True)
class _Slice:
    """One teacher's candidates (local positions 0..n-1) with what every rule needs."""

    ids: np.ndarray
    utility: np.ndarray
    hours: np.ndarray
    fmt: np.ndarray
    practical: np.ndarray
    topic: np.ndarray
    cost: np.ndarray
    comp_of: np.ndarray  # (E,) local row of each competency entry
    comp_code: np.ndarray  # (E,)
    comp_names: np.ndarray  # vocabulary of comp_code
    dep: np.ndarray  # (P,) local row of a course with a prerequisite not yet completed
    pre: np.ndarray  # (P,) local row of that prerequisite, -1 when not among the candidates
    usable: np.ndarray  # not completed (when the policy says so), not excluded, fits the hours, and every
    # unmet prerequisite is itself usable (no cycles)


def _usable(eligible: np.ndarray, dep: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """Least fixed point: a course is usable when eligible and each unmet prerequisite is a usable candidate.

    Starting from nothing, rather than removing what is blocked, leaves prerequisite cycles out: no course on a
    cycle can come after all its prerequisites.
    """
    ok = np.zeros(len(eligible), dtype=bool)
    while True:
        bad = (pre < 0) | ~ok[np.maximum(pre, 0)]
        new = eligible.copy()
        new[dep[bad]] = False
        if np.array_equal(new, ok):
            return ok
        ok = new


def _slice(block: _Block, t: int, limits: MenuLimits) -> _Slice:
    s, e = int(block.start[t]), int(block.start[t + 1])
    ids = block.course_id[s:e]
    eligible = np.ones(e - s, dtype=bool)
    if limits.exclude_completed:
        eligible &= ~block.done[s:e]
    if limits.exclude:
        eligible &= ~np.isin(ids, list(limits.exclude))
    cs, ce = block.comp_ptr[s], block.comp_ptr[e]
    ps, pe = block.pre_ptr[s], block.pre_ptr[e]
    owed = ~block.pre_done[ps:pe]
    pre_rows = block.pre_row[ps:pe][owed] - s
    pre_at = block.pre_at[ps:pe][owed]
    pre = np.where(pre_at >= 0, pre_at - s, -1)
    return _Slice(
        ids=ids,
        utility=block.utility[s:e],
        hours=block.hours[s:e],
        fmt=block.fmt[s:e],
        practical=block.practical[s:e],
        topic=block.topic[s:e],
        cost=block.cost[s:e],
        comp_of=block.comp_row[cs:ce] - s,
        comp_code=block.comp_code[cs:ce],
        comp_names=block.comp_names,
        dep=pre_rows,
        pre=pre,
        # a course longer than the most hours a menu may hold can never be chosen (that bound is never relaxed)
        usable=_usable(eligible & (block.hours[s:e] <= limits.hours_max + TOLERANCE), pre_rows, pre),
    )


def _format_allowed(fmt: np.ndarray, formats: Sequence[str]) -> np.ndarray:
    # An unknown format breaks no rule only when every format is allowed.
    if set(FORMATS) <= set(formats):
        return np.ones(len(fmt), dtype=bool)
    return np.isin(fmt, [FORMATS.index(f) for f in formats])


def _covers(topic: MandatoryTopic, topics: np.ndarray, fmt: np.ndarray) -> np.ndarray:
    hit = topics == topic.topic
    return hit & _format_allowed(fmt, topic.formats) if topic.formats else hit


# --------------------------------------------------------------------------------------------------------------
# The programme: rows lb <= A x <= ub per rule; relaxing a rule adds one slack per row on the side the rule may
# miss, first minimises the total slack, then maximises utility with the slack held at that minimum.


@dataclass(frozen=True)
class _Rows:
    code: str
    a: np.ndarray  # (k, n)
    lb: np.ndarray
    ub: np.ndarray
    slack_sign: float  # +1 the lower bound may be missed when relaxed, -1 the upper bound, 0 never


def _rows(sl: _Slice, keep: np.ndarray, limits: MenuLimits) -> list[_Rows]:
    n = int(keep.sum())
    h = sl.hours[keep]
    inf = np.inf
    rows = [
        _Rows("hours", h[None, :], np.array([limits.hours_min]), np.array([inf]), 1.0),
        _Rows("hours", h[None, :], np.array([-inf]), np.array([limits.hours_max]), 0.0),
    ]
    if limits.practical_share > 0:
        a = ((sl.practical[keep] - limits.practical_share) * h)[None, :]
        rows.append(_Rows("practical_share", a, np.zeros(1), np.array([inf]), 1.0))
    if limits.topics:
        a = np.stack([_covers(t, sl.topic[keep], sl.fmt[keep]) for t in limits.topics]).astype(np.float64)
        # a topic no kept course covers is lost whatever else is chosen: its row could only make the
        # programme infeasible (see _plan)
        a = a[a.any(axis=1)]
        if len(a):
            rows.append(_Rows("mandatory_topic", a, np.ones(len(a)), np.full(len(a), inf), 1.0))
    if limits.budget_yuan is not None:
        rows.append(
            _Rows("budget", sl.cost[keep][None, :], np.array([-inf]), np.array([limits.budget_yuan]), -1.0)
        )
    other = ~_format_allowed(sl.fmt[keep], limits.formats)
    if other.any():
        rows.append(_Rows("formats", (h * other)[None, :], np.array([-inf]), np.zeros(1), -1.0))
    local = np.full(len(sl.ids), -1)
    local[keep] = np.arange(n)
    if limits.max_per_competency is not None and len(sl.comp_code):
        inside = keep[sl.comp_of]
        codes, inverse = np.unique(sl.comp_code[inside], return_inverse=True)
        incidence = np.zeros((len(codes), n))
        incidence[inverse, local[sl.comp_of[inside]]] = 1.0
        # only competencies with more candidates than the cap can bind
        crowded = incidence[incidence.sum(axis=1) > limits.max_per_competency]
        if len(crowded):
            cap = np.full(len(crowded), float(limits.max_per_competency))
            rows.append(_Rows("per_competency", crowded, np.full(len(crowded), -inf), cap, -1.0))
    edge = keep[sl.dep]
    if edge.any():
        a = np.zeros((int(edge.sum()), n))
        k = np.arange(len(a))
        a[k, local[sl.pre[edge]]] += 1.0
        a[k, local[sl.dep[edge]]] -= 1.0
        rows.append(_Rows("prerequisites", a, np.zeros(len(a)), np.full(len(a), inf), 0.0))
    return rows


def _milp(c: np.ndarray, n_binary: int, a: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> Any:
    integrality = np.zeros(len(c))
    integrality[:n_binary] = 1
    upper = np.full(len(c), np.inf)
    upper[:n_binary] = 1.0
    return milp(
        c,
        integrality=integrality,
        bounds=Bounds(np.zeros(len(c)), upper),
        constraints=LinearConstraint(a, lb, ub),
        options=dict(MILP_OPTIONS),  # milp empties the dict it is given
    )


def _solve(rows: list[_Rows], utility: np.ndarray, relax: str | None) -> np.ndarray | None:
    """The chosen subset (bool over the kept candidates), or None when the rules (less ``relax``) exclude
    every menu."""
    n = len(utility)
    elastic = [r.code == relax and r.slack_sign != 0 for r in rows]
    n_slack = sum(len(r.a) for r, el in zip(rows, elastic, strict=True) if el)
    a = np.zeros((sum(len(r.a) for r in rows), n + n_slack))
    at, slack_at = 0, n
    for r, el in zip(rows, elastic, strict=True):
        a[at : at + len(r.a), :n] = r.a
        if el:
            a[at : at + len(r.a), slack_at : slack_at + len(r.a)] = r.slack_sign * np.eye(len(r.a))
            slack_at += len(r.a)
        at += len(r.a)
    lb = np.concatenate([r.lb for r in rows])
    ub = np.concatenate([r.ub for r in rows])
    if n_slack:
        least = _milp(np.r_[np.zeros(n), np.ones(n_slack)], n, a, lb, ub)
        if least.x is None:
            return None
        # hold the breach at its minimum, then choose the most useful menu within it
        a = np.vstack([a, np.r_[np.zeros(n), np.ones(n_slack)]])
        lb = np.r_[lb, -np.inf]
        ub = np.r_[ub, least.fun + TOLERANCE]
    best = _milp(np.r_[-utility, np.zeros(n_slack)], n, a, lb, ub)
    x = best.x if best.x is not None else (least.x if n_slack else None)
    return None if x is None else np.asarray(x[:n]) > 0.5


def _keep(sl: _Slice, limits: MenuLimits) -> np.ndarray:
    """The candidates the programme sees (see TOP_CANDIDATES)."""
    allowed = sl.usable & _format_allowed(sl.fmt, limits.formats)
    other = sl.usable & ~allowed
    keep = (allowed & (np.cumsum(allowed) <= TOP_CANDIDATES)) | (
        other & (np.cumsum(other) <= TOP_OTHER_FORMATS)
    )
    for topic in limits.topics:
        keep |= sl.usable & _covers(topic, sl.topic, sl.fmt)
    while True:
        # a kept course brings its unmet prerequisites (usable by construction)
        needed = sl.pre[keep[sl.dep]]
        if keep[needed].all():
            return keep
        keep[needed] = True


# --------------------------------------------------------------------------------------------------------------
# Menus and messages


def _ordered(sl: _Slice, chosen: np.ndarray) -> list[int]:
    """Chosen local rows in rank order, each preceded by its chosen prerequisites."""
    if not chosen[sl.dep].any():  # no chosen course waits for another: rank order
        return np.flatnonzero(chosen).tolist()
    placed: list[int] = []
    seen: set[int] = set()

    def place(i: int) -> None:
        seen.add(i)
        for p in sl.pre[sl.dep == i]:
            if p >= 0 and chosen[p] and p not in seen:
                place(int(p))
        placed.append(i)

    for i in np.flatnonzero(chosen):
        if int(i) not in seen:
            place(int(i))
    return placed


def _topic_reason(sl: _Slice, topic: MandatoryTopic, limits: MenuLimits) -> str:
    named = sl.topic == topic.topic
    covering = _covers(topic, sl.topic, sl.fmt)
    if not named.any():
        return "候选课程中没有该专题的课程"
    if not covering.any():
        return f"候选课程中没有该专题的{'、'.join(FORMAT_ZH[f] for f in topic.formats)}课程"
    if not (covering & sl.usable).any():
        return "该专题的候选课程均不可选（已完成、已被排除、先修课程未满足或学时超过上限）"
    if not (covering & sl.usable & _format_allowed(sl.fmt, limits.formats)).any():
        return f"该专题的候选课程均不在允许的培训形式（{'、'.join(FORMAT_ZH[f] for f in limits.formats)}）内"
    return "该专题的课程与学时、实践比例、费用等其他规则无法同时满足"


def _why(code: str, sl: _Slice, chosen: np.ndarray, limits: MenuLimits) -> str:
    """The Chinese sentence for a relaxed rule, from the relaxed menu's own numbers."""
    h = float(sl.hours[chosen].sum())
    if code == "mandatory_topic":
        # topics lost for the same reason share one clause: 「必修专题：四史、心理健康」
        lost: dict[str, list[str]] = {}
        for t in limits.topics:
            if not (chosen & _covers(t, sl.topic, sl.fmt)).any():
                lost.setdefault(_topic_reason(sl, t, limits), []).append(t.topic)
        return "；".join(
            f"无法满足「{limits.label(code, '、'.join(names))}」："
            + (why if len(names) == 1 else why.replace("该专题", "这些专题"))
            for why, names in lost.items()
        )
    label = f"无法满足「{limits.label(code)}」："
    if code == "practical_share":
        share = float(sl.hours[chosen & sl.practical].sum()) / h if h > 0 else 0.0
        return label + f"可选的实践性课程学时不足，菜单中实践性课程占 {share:.0%}"
    if code == "hours":
        return label + (f"可选课程在其余规则下最多凑足 {h:g} 学时" if h > 0 else "没有可放入菜单的候选课程")
    if code == "budget":
        return label + f"满足其余规则的菜单至少需 {float(sl.cost[chosen].sum()):g} 元"
    if code == "formats":
        other = float(sl.hours[chosen & ~_format_allowed(sl.fmt, limits.formats)].sum())
        return label + f"允许形式的课程不足，菜单含 {other:g} 学时其他形式的课程"
    codes, counts = np.unique(sl.comp_code[chosen[sl.comp_of]], return_counts=True)
    # by name: codes are numbered per block, and a teacher's message must not depend on the others in it
    crowded = "、".join(
        f"「{name}」{k} 门"
        for name, k in sorted(
            (str(sl.comp_names[c]), int(k))
            for c, k in zip(codes, counts, strict=True)
            if k > (limits.max_per_competency or 0)
        )
    )
    return label + f"可选课程集中在少数能力点，菜单中{crowded}"


def _menu(
    teacher_id: str, sl: _Slice, chosen: np.ndarray, status: Status, code: str | None, message: str | None
) -> Menu:
    order = _ordered(sl, chosen)
    return Menu(
        teacher_id=teacher_id,
        items=tuple(str(sl.ids[i]) for i in order),
        hours=tuple(float(sl.hours[i]) for i in order),
        total_hours=float(sl.hours[chosen].sum()),
        practical_hours=float(sl.hours[chosen & sl.practical].sum()),
        cost_yuan=float(sl.cost[chosen].sum()),
        status="empty" if not order else status,
        relaxed_rule=code,
        message=message,
    )


def _programme(sl: _Slice, keep: np.ndarray, limits: MenuLimits) -> Programme:
    """The kept candidates' programme with every rule hard, for the branch and bound. A topic no kept course
    covers is left out, as in _rows."""
    h = sl.hours[keep]
    n = len(h)
    # a course in a format not allowed breaks the formats rule by its hours: it may not be taken
    other = ~_format_allowed(sl.fmt[keep], limits.formats) & (h > FEASIBILITY)
    covers = np.zeros(n, dtype=np.int64)
    need = 0
    for bit, topic in enumerate(limits.topics):
        hit = _covers(topic, sl.topic[keep], sl.fmt[keep])
        if hit.any():
            covers[hit] |= 1 << bit
            need |= 1 << bit
    local = np.full(len(sl.ids), -1)
    local[keep] = np.arange(n)
    # per kept course, in order: the capped competencies it uses, then the kept courses it needs
    cap_rows, cap_idx = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if limits.max_per_competency is not None and len(sl.comp_code):
        inside = keep[sl.comp_of]
        rows, codes = local[sl.comp_of[inside]], sl.comp_code[inside]
        # only competencies with more candidates than the cap can bind
        counts = np.bincount(codes)
        crowded = np.flatnonzero(counts > limits.max_per_competency)
        slot = np.full(len(counts), -1)
        slot[crowded] = np.arange(len(crowded))
        binds = slot[codes] >= 0
        cap_rows, cap_idx = rows[binds], slot[codes[binds]]
    by_course = np.argsort(cap_rows, kind="stable")
    edge = keep[sl.dep]
    pre_rows, pre_idx = local[sl.dep[edge]], local[sl.pre[edge]]
    by_row = np.argsort(pre_rows, kind="stable")
    return Programme(
        utility=sl.utility[keep],
        hours=h,
        hours_min=limits.hours_min,
        hours_max=limits.hours_max,
        gain=(sl.practical[keep] - limits.practical_share) * h if limits.practical_share > 0 else np.zeros(n),
        covers=covers,
        need=need,
        cost=sl.cost[keep],
        budget=limits.budget_yuan if limits.budget_yuan is not None else np.inf,
        cap_ptr=_ptr(cap_rows, n),
        cap_idx=cap_idx[by_course],
        cap=limits.max_per_competency if limits.max_per_competency is not None else n,
        pre_ptr=_ptr(pre_rows, n),
        pre_idx=pre_idx[by_row],
        allowed=~other,
    )


def _exact(sl: _Slice, keep: np.ndarray, limits: MenuLimits) -> np.ndarray | None:
    """The best menu over the kept candidates with every rule hard (bool over them), or None when none: by
    branch and bound, or by the MILP when the search is too long."""
    try:
        return best_subset(_programme(sl, keep, limits))
    except SearchLimit:
        return _solve(_rows(sl, keep, limits), sl.utility[keep], None)


def _plan(teacher_id: str, sl: _Slice, limits: MenuLimits) -> Menu:
    keep = _keep(sl, limits)
    idx = np.flatnonzero(keep)
    none = np.zeros(len(sl.ids), dtype=bool)
    if not len(idx):
        # An empty menu breaks the hours window, and the mandatory rule when a topic is owed: relaxing the
        # hours alone is enough only when no topic is owed.
        if not limits.topics:
            return _menu(teacher_id, sl, none, "empty", "hours", _why("hours", sl, none, limits) + "。")
        return _menu(teacher_id, sl, none, "empty", None, NO_CANDIDATES_ZH)
    # Owing a topic that no kept course covers rules out every menu unless the mandatory rule is relaxed; the
    # coverable topics then first stay hard (the fewest topics lost), else become elastic.
    hopeless = any(not (keep & _covers(t, sl.topic, sl.fmt)).any() for t in limits.topics)
    picked = _exact(sl, keep, limits)
    if picked is not None:
        chosen = none.copy()
        chosen[idx[picked]] = True
        if not hopeless:
            return _menu(teacher_id, sl, chosen, "ok", None, None)
        message = _why("mandatory_topic", sl, chosen, limits) + RELAXED_SUFFIX_ZH
        return _menu(teacher_id, sl, chosen, "relaxed", "mandatory_topic", message)
    rows = _rows(sl, keep, limits)
    for relax in RELAXATION_ORDER:
        if hopeless and relax != "mandatory_topic":
            continue
        if not any(r.code == relax and r.slack_sign != 0 for r in rows):
            continue  # a rule with nothing to relax cannot help
        picked = _solve(rows, sl.utility[keep], relax)
        if picked is None:
            continue
        chosen = none.copy()
        chosen[idx[picked]] = True
        message = _why(relax, sl, chosen, limits) + RELAXED_SUFFIX_ZH
        return _menu(teacher_id, sl, chosen, "relaxed", relax, message)
    return _menu(teacher_id, sl, none, "empty", None, NO_RELAXATION_ZH)


# --------------------------------------------------------------------------------------------------------------
# Public entry points


def plan_menu(
    cands: pd.DataFrame, teacher: TeacherMenuContext, policy: Policy, request: MenuRequest | None = None
) -> Menu:
    """The best menu for one teacher from their ranked candidates (columns course_id, score, hours, format,
    practical, mandatory_topic, competencies, prerequisites, cost_yuan), or the best that relaxes one rule."""
    limits = menu_limits(teacher, policy, request)
    done = np.array(sorted(teacher.completed), dtype=object)
    block = _block(cands, np.zeros(len(cands), dtype=np.int64), 1, np.zeros(len(done), np.int64), done)
    return _plan(teacher.teacher_id, _slice(block, 0, limits), limits)


def plan_menus(
    cands_long: pd.DataFrame, teachers: pd.DataFrame, policy: Policy
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Menus for a block of teachers.

    ``cands_long``: plan_menu's columns plus teacher_id. ``teachers``: teacher_id, stage, missing_mandatory
    (list of topics owed) and optionally completed (list of course_ids; needed for a completed prerequisite to
    count). Returns (menus: teacher_id, course_id, hours, position) and (statuses: teacher_id, status,
    relaxed_rule, message, total_hours, practical_hours, cost_yuan, n_courses), one status row per teacher.
    """
    tid = teachers["teacher_id"].astype(str).to_numpy(dtype=object)
    if pd.Index(tid).has_duplicates:
        raise ValueError("plan_menus: teachers lists a teacher_id more than once")
    pos = pd.Index(tid).get_indexer(cands_long["teacher_id"].astype(str))
    known = pos >= 0
    none: list[object] = [None] * len(tid)
    done_pos, done_ids = _list_entries(teachers.get("completed", none))
    block = _block(cands_long[known], pos[known], len(tid), done_pos, done_ids)
    owed = teachers["missing_mandatory"].to_numpy(dtype=object) if "missing_mandatory" in teachers else none
    stages = teachers["stage"].astype(str).to_numpy(dtype=object)
    limit_cache: dict[tuple[str, tuple[str, ...]], MenuLimits] = {}
    menus: list[Menu] = []
    for t, (teacher_id, stage, topics) in enumerate(zip(tid, stages, owed, strict=True)):
        key = (stage, tuple(_cell_list(topics)))
        if key not in limit_cache:
            limit_cache[key] = menu_limits(TeacherMenuContext(teacher_id, stage, key[1]), policy)
        limits = limit_cache[key]
        menus.append(_plan(teacher_id, _slice(block, t, limits), limits))
    return _frames(menus)


def _frames(menus: list[Menu]) -> tuple[pd.DataFrame, pd.DataFrame]:
    sizes = np.array([len(m.items) for m in menus], dtype=np.int64)
    long = pd.DataFrame(
        {
            "teacher_id": pd.Series(np.repeat([m.teacher_id for m in menus], sizes), dtype=object),
            "course_id": pd.Series([c for m in menus for c in m.items], dtype=object),
            "hours": pd.Series([h for m in menus for h in m.hours], dtype=np.float64),
            "position": pd.Series(
                np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1, dtype=np.int64
            ),
        }
    )
    statuses = pd.DataFrame(
        {
            "teacher_id": pd.Series([m.teacher_id for m in menus], dtype=object),
            "status": pd.Series([m.status for m in menus], dtype=object),
            "relaxed_rule": pd.Series([m.relaxed_rule for m in menus], dtype=object),
            "message": pd.Series([m.message for m in menus], dtype=object),
            "total_hours": pd.Series([m.total_hours for m in menus], dtype=np.float64),
            "practical_hours": pd.Series([m.practical_hours for m in menus], dtype=np.float64),
            "cost_yuan": pd.Series([m.cost_yuan for m in menus], dtype=np.float64),
            "n_courses": pd.Series(sizes, dtype=np.int64),
        }
    )
    return long, statuses


def check_menu(
    menu: Menu,
    cands: pd.DataFrame,
    teacher: TeacherMenuContext,
    policy: Policy,
    request: MenuRequest | None = None,
) -> list[str]:
    """Every rule the menu breaks, as "code: 说明" (empty when it keeps them all). Checked directly on the
    courses, independently of the programme; a relaxed menu is held to every rule but the one it relaxes."""
    limits = menu_limits(teacher, policy, request)
    items = list(menu.items)
    ids = cands["course_id"].astype(str)
    courses = cands.assign(course_id=ids).drop_duplicates("course_id").set_index("course_id")
    found = [c for c in items if c in courses.index]
    chosen = courses.loc[found]
    hours = chosen["hours"].to_numpy(dtype=np.float64)
    practical = chosen["practical"].astype(object).fillna(False).to_numpy(dtype=bool)
    cost = np.nan_to_num(chosen["cost_yuan"].to_numpy(dtype=np.float64), nan=0.0)
    fmt = pd.Categorical(chosen["format"], categories=list(FORMATS)).codes.astype(np.int64)
    topics = chosen["mandatory_topic"].astype(object).where(chosen["mandatory_topic"].notna(), "").to_numpy()
    total = float(hours.sum())
    problems: list[tuple[str, str, str]] = []  # code, topic (mandatory rule only), what is wrong

    if len(found) < len(items) or len(set(items)) < len(items):
        problems.append(("candidates", "", "菜单含重复课程或不在候选中的课程"))
    sums = (menu.total_hours, menu.practical_hours, menu.cost_yuan, *menu.hours)
    actual = (total, float(hours[practical].sum()), float(cost.sum()), *hours)
    if len(sums) != len(actual) or not np.allclose(sums, actual, atol=TOLERANCE):
        problems.append(("candidates", "", "菜单的学时或费用合计与课程不符"))
    if limits.exclude_completed and set(items) & teacher.completed:
        problems.append(("completed", "", f"含已完成的课程 {sorted(set(items) & teacher.completed)}"))
    if set(items) & limits.exclude:
        problems.append(("excluded", "", f"含教师排除的课程 {sorted(set(items) & limits.exclude)}"))
    for course, cell in zip(found, chosen["prerequisites"], strict=True):
        before = set(items[: items.index(course)]) | teacher.completed
        missing = [p for p in _cell_list(cell) if p not in before]
        if missing:
            problems.append(("prerequisites", "", f"课程 {course} 的先修课程 {missing} 未完成也未排在其前"))
    if not limits.hours_min - TOLERANCE <= total <= limits.hours_max + TOLERANCE:
        problems.append(("hours", "", f"菜单共 {total:g} 学时"))
    practical_hours = float(hours[practical].sum())
    if limits.practical_share > 0 and practical_hours < limits.practical_share * total - TOLERANCE:
        problems.append(("practical_share", "", f"实践性课程 {practical_hours:g} / {total:g} 学时"))
    for topic in limits.topics:
        if not _covers(topic, topics, fmt).any():
            problems.append(("mandatory_topic", topic.topic, "菜单中没有该专题的课程"))
    if limits.budget_yuan is not None and float(cost.sum()) > limits.budget_yuan + TOLERANCE:
        problems.append(("budget", "", f"菜单费用 {float(cost.sum()):g} 元"))
    allowed = _format_allowed(fmt, limits.formats)
    if not allowed.all():
        problems.append(("formats", "", f"含其他形式的课程 {list(chosen.index[~allowed])}"))
    if limits.max_per_competency is not None:
        counts = pd.Series([c for cell in chosen["competencies"] for c in _cell_list(cell)]).value_counts()
        crowded = counts[counts > limits.max_per_competency]
        if len(crowded):
            problems.append(("per_competency", "", f"能力点课程数 {crowded.to_dict()}"))
    return [
        f"{code}: 违反「{limits.label(code, topic)}」，{why}"
        for code, topic, why in problems
        if code != menu.relaxed_rule
    ]
