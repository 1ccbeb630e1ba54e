"""Study menu (选学菜单): the courses a teacher is offered, chosen from the ranked candidates under the province's
policy, naming the rule when it cannot be met. The menu keeping every rule is found by an exact branch and bound
(recommender.knapsack); relaxing a rule, or a search too long, goes to a mixed-integer programme
(scipy.optimize.milp / HiGHS). A block's teachers are planned together, in compiled steps over the whole block
and one branch and bound call; only a teacher whose menu needs a relaxation or the MILP is settled in Python on
its own (one teacher, plan_menu, is a block of one).

Rules (codes, Chinese labels) are defined once in RULES; the programme and check_menu() both read their numbers
from MenuLimits, which combines the policy, the teacher and the teacher's own request in one place.

Where each rule lives — to change a rule, change every face in its row (tests/recommender/test_menu_rules.py
fails when a relaxable rule lacks its MILP row, its explanation or its check):

rule (RULES)     policy field (data/policy.py)   MenuLimits          MILP row (_rows)            branch and bound
                                                                                             (_programmes → Programmes)
mandatory_topic  mandatory_topics                topics              ≥ 1 course per owed topic   covers, need
practical_share  practical_share_min             practical_share     Σ (practical − share)·h ≥ 0 gain (the same sum)
hours            menu_hours_target, _slack       hours_min, _max     min ≤ Σ h (max never relaxed) hours_min, hours_max
budget           budget_yuan (and the request's) budget_yuan         Σ cost ≤ budget             cost, budget
formats          allowed_formats (∩ request's)   formats             Σ h in other formats ≤ 0    allowed (_row_rules)
per_competency   max_courses_per_competency      max_per_competency  ≤ cap per crowded comp.     cap_ptr, cap_idx
prerequisites    —                               —                   prerequisite ≥ dependant    pre_ptr, pre_idx
completed        exclude_completed               exclude_completed   (left out of the candidates: _row_rules)
excluded         — (the request's exclude)       exclude             (left out of the candidates: _row_rules)

Every relaxable rule's sentence is built by _why (mandatory topics: _topic_reason) and checked by check_menu;
the relaxation order is the order of RULES.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from numba import njit
from scipy.optimize import Bounds, LinearConstraint, milp

from data.policy import FORMATS, MandatoryTopic, Policy
from recommender.explain import FORMAT_ZH
from recommender.knapsack import CUT_SHORT, FEASIBILITY, FOUND, NO_MENU, NODE_LIMIT, Programmes, best_subsets

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
    topic_code: np.ndarray  # (N,) position of topic in topic_names
    topic_names: np.ndarray  # vocabulary of topic, object
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


def _all_str(values: np.ndarray) -> bool:
    """Whether every element of an object array is a str (not a subclass)."""
    return set(map(type, values)) <= {str}


def _distinct(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For an object array: each element's code among the distinct objects (by identity, not equality), and the
    first position of each distinct object."""
    codes, uniques = pd.factorize(np.fromiter(map(id, cells), dtype=np.uint64, count=len(cells)))
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(cells) - 1, -1, -1)
    return np.asarray(codes, dtype=np.int64), first


def _flat_cells(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The elements of list cells end to end, read as _cell_list reads them (object array of str), and how many
    each cell has. A one-dimensional object array is read in one pass with the others; any other cell alone."""
    parts = [
        c
        if isinstance(c, np.ndarray) and c.ndim == 1 and c.dtype == object
        else np.array(_cell_list(c), dtype=object)
        for c in cells
    ]
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=object)
    if _all_str(flat):
        valid = np.asarray(flat != "", dtype=bool)
    else:
        text = np.empty(len(flat), dtype=object)
        text[:] = [None if v is None else str(v) for v in flat]
        valid = np.array([v is not None and v != "" for v in text], dtype=bool)
        flat = text
    ends = np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)))
    kept = np.concatenate([[0], np.cumsum(valid)]).astype(np.int64)
    lengths = kept[ends] - kept[np.concatenate([[0], ends[:-1]]).astype(np.int64)]
    return flat[valid], lengths


def _list_entries(cells: Sequence[object] | pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, value) for every element of a column of list cells, in row order.

    A block repeats each course's list cell, the same object, for every teacher it is a candidate of: each
    object is read once, and its elements are spread over the rows that hold it by index arithmetic."""
    objs = np.fromiter(cells, dtype=object, count=len(cells))
    codes, first = _distinct(objs)
    values, lengths = _flat_cells(objs[first])
    counts = lengths[codes]
    rows = np.repeat(np.arange(len(objs), dtype=np.int64), counts)
    # entry k of row r is element (k - first entry of r) of r's cell, which starts at starts[codes[r]]
    starts = np.cumsum(lengths) - lengths
    at = np.repeat(starts[codes] - (np.cumsum(counts) - counts), counts) + np.arange(len(rows))
    return rows, values[at]


def _ptr(rows: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)


def _bools(col: pd.Series) -> np.ndarray:
    """Truth of each cell, NA read as False."""
    if pd.api.types.is_bool_dtype(col.dtype) and not col.hasnans:
        return col.to_numpy(dtype=bool)
    values = col.to_numpy(dtype=object)
    return np.array([bool(v) if not pd.isna(v) else False for v in values], dtype=bool)


def _find(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Position of each query in ``keys`` (int64; with repeats, one of the positions), -1 when absent."""
    order = np.argsort(keys, kind="stable")
    at = np.searchsorted(keys[order], queries)
    at = np.minimum(at, len(keys) - 1)
    hit = (keys[order][at] == queries) if len(keys) else np.zeros(len(queries), dtype=bool)
    return np.asarray(np.where(hit, order[at] if len(keys) else -1, -1), dtype=np.int64)


def _strings(values: np.ndarray) -> np.ndarray:
    """An object array's elements as str objects."""
    return values if _all_str(values) else values.astype(str).astype(object)


def _in_rank_order(tpos: np.ndarray, neg_score: np.ndarray, ids: np.ndarray) -> bool:
    """Whether rows already run by teacher, then ``neg_score``, then course id (str)."""
    same = tpos[1:] == tpos[:-1]
    level = same & (neg_score[1:] == neg_score[:-1])
    ahead = (tpos[1:] > tpos[:-1]) | (same & (neg_score[1:] > neg_score[:-1]))
    if not (ahead | level).all():
        return False
    tied = np.flatnonzero(level)
    return bool(np.asarray(ids[tied + 1] >= ids[tied], dtype=bool).all())


def _rank_order(cands: pd.DataFrame, tpos: np.ndarray, score: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rows by teacher, then score (highest first, NaN last), then course_id (``ids``, str), so the menu does not
    depend on the order rows arrive in. Rows that already come so (the batch's ranked pool) stay as they are."""
    neg_score = np.nan_to_num(-score, nan=np.inf)
    if _in_rank_order(tpos, neg_score, ids):
        return np.arange(len(tpos))
    tie = pd.factorize(cands["course_id"].astype(str).to_numpy(dtype=object), sort=True)[0]
    return np.lexsort((tie, neg_score, tpos))


def _codes(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Position of each value in ``names``, -1 when absent or NA."""
    codes, uniques = pd.factorize(values)
    at = pd.Index(list(names)).get_indexer(pd.Index(np.asarray(uniques, dtype=object)))
    return np.append(at, -1).astype(np.int64)[codes]


def _topics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's topic as a code into a vocabulary of str topics, NA read as ""."""
    codes, uniques = pd.factorize(values)
    text = np.empty(len(uniques) + 1, dtype=object)
    text[:] = [*(str(u) for u in uniques), ""]
    names_code, names = pd.factorize(text)
    return np.asarray(names_code, dtype=np.int64)[codes], np.asarray(names, dtype=object)


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
    tpos = np.asarray(teacher_pos, dtype=np.int64)
    ids = _strings(cands["course_id"].to_numpy(dtype=object))
    order = _rank_order(cands, tpos, score, ids)
    tpos, ids = tpos[order], ids[order]
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
    topic_code, topic_names = _topics(cands["mandatory_topic"].to_numpy(dtype=object)[order])
    hours = cands["hours"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    return _Block(
        start=start,
        course_id=ids,
        utility=utility(np.arange(len(ids)) - start[tpos], hours),
        hours=hours,
        fmt=_codes(cands["format"].to_numpy(dtype=object)[order], FORMATS),
        practical=_bools(cands["practical"])[order],
        topic=topic_names[topic_code],
        topic_code=topic_code,
        topic_names=topic_names,
        cost=np.nan_to_num(cands["cost_yuan"].to_numpy(dtype=np.float64, na_value=np.nan)[order], nan=0.0),
        done=_find(done_key, key) >= 0,
        comp_ptr=_ptr(comp_rows, len(ids)),
        comp_row=comp_rows,
        comp_code=np.asarray(comp_code, dtype=np.int64),
        comp_names=np.asarray(comp_names, dtype=object),
        pre_ptr=_ptr(pre_rows, len(ids)),
        pre_row=pre_rows,
        pre_at=_find(key, pre_key),
        pre_done=_find(done_key, pre_key) >= 0,
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
    usable: np.ndarray  # see _usable_rows


def _slice(block: _Block, t: int, usable: np.ndarray) -> _Slice:
    """Teacher t's candidates, ``usable`` over them."""
    s, e = int(block.start[t]), int(block.start[t + 1])
    cs, ce = block.comp_ptr[s], block.comp_ptr[e]
    ps, pe = block.pre_ptr[s], block.pre_ptr[e]
    owed = ~block.pre_done[ps:pe]
    pre_at = block.pre_at[ps:pe][owed]
    return _Slice(
        ids=block.course_id[s:e],
        utility=block.utility[s:e],
        hours=block.hours[s:e],
        fmt=block.fmt[s:e],
        practical=block.practical[s:e],
        topic=block.topic[s:e],
        cost=block.cost[s:e],
        comp_of=block.comp_row[cs:ce] - s,
        comp_code=block.comp_code[cs:ce],
        comp_names=block.comp_names,
        dep=block.pre_row[ps:pe][owed] - s,
        pre=np.where(pre_at >= 0, pre_at - s, -1),
        usable=usable,
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


# --------------------------------------------------------------------------------------------------------------
# Compiled steps over a whole block: which candidates each teacher may use and the programme sees, the side
# rules of the branch and bound, and the menus' order and sums. One call each per block; one teacher
# (plan_menu) is a block of one.


@njit(cache=True)
def _usable_rows(
    eligible: np.ndarray,
    s: int,
    e: int,
    pre_ptr: np.ndarray,
    pre_at: np.ndarray,
    pre_done: np.ndarray,
    usable: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Rows s..e-1 of ``usable``: the least fixed point where a row is usable when eligible and each unmet
    prerequisite is a usable candidate.

    Starting from nothing, rather than removing what is blocked, leaves prerequisite cycles out: no course on a
    cycle can come after all its prerequisites.
    """
    usable[s:e] = False
    while True:
        for r in range(s, e):
            scratch[r] = eligible[r]
            for k in range(pre_ptr[r], pre_ptr[r + 1]):
                if not pre_done[k] and (pre_at[k] < 0 or not usable[pre_at[k]]):
                    scratch[r] = False
        same = True
        for r in range(s, e):
            same = same and scratch[r] == usable[r]
        if same:
            return
        usable[s:e] = scratch[s:e]


@njit(cache=True)
def _keep_rows(
    usable: np.ndarray,
    fmt_ok: np.ndarray,
    covers: np.ndarray,
    s: int,
    e: int,
    pre_ptr: np.ndarray,
    pre_at: np.ndarray,
    pre_done: np.ndarray,
    top: int,
    top_other: int,
    keep: np.ndarray,
) -> None:
    """Rows s..e-1 of ``keep``: the candidates the programme sees (see TOP_CANDIDATES)."""
    allowed, other = 0, 0
    for r in range(s, e):
        keep[r] = False
        if usable[r]:
            if fmt_ok[r]:
                allowed += 1
                keep[r] = allowed <= top
            else:
                other += 1
                keep[r] = other <= top_other
            keep[r] = keep[r] or covers[r] != 0
    grown = True
    while grown:
        # a kept course brings its unmet prerequisites (usable by construction)
        grown = False
        for r in range(s, e):
            if keep[r]:
                for k in range(pre_ptr[r], pre_ptr[r + 1]):
                    if not pre_done[k] and pre_at[k] >= 0 and not keep[pre_at[k]]:
                        keep[pre_at[k]] = True
                        grown = True


@njit(cache=True)
def _candidates(
    start: np.ndarray,
    eligible: np.ndarray,
    fmt_ok: np.ndarray,
    covers: np.ndarray,
    pre_ptr: np.ndarray,
    pre_at: np.ndarray,
    pre_done: np.ndarray,
    top: int,
    top_other: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Usable and kept rows of every teacher of a block (see _usable_rows, _keep_rows)."""
    usable = np.zeros(len(eligible), dtype=np.bool_)
    keep = np.zeros(len(eligible), dtype=np.bool_)
    scratch = np.zeros(len(eligible), dtype=np.bool_)
    for t in range(len(start) - 1):
        s, e = start[t], start[t + 1]
        _usable_rows(eligible, s, e, pre_ptr, pre_at, pre_done, usable, scratch)
        _keep_rows(usable, fmt_ok, covers, s, e, pre_ptr, pre_at, pre_done, top, top_other, keep)
    return usable, keep


@njit(cache=True)
def _side_rules(
    start: np.ndarray,
    keep: np.ndarray,
    comp_ptr: np.ndarray,
    comp_code: np.ndarray,
    n_codes: int,
    pre_ptr: np.ndarray,
    pre_at: np.ndarray,
    pre_done: np.ndarray,
    cap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kept rows' capped competencies and kept prerequisites, as CSR over the kept rows (Programmes'
    cap_ptr, cap_idx, pre_ptr, pre_idx). A competency is capped for a teacher when ``cap[t]`` >= 0 and more of
    the teacher's kept courses use it than the cap; its index counts the teacher's capped competencies in code
    order. A prerequisite's index is its position among the teacher's kept rows."""
    n_items = int(keep.sum())
    cap_ptr = np.zeros(n_items + 1, dtype=np.int64)
    pre_item_ptr = np.zeros(n_items + 1, dtype=np.int64)
    cap_idx = np.empty(len(comp_code), dtype=np.int64)
    pre_idx = np.empty(len(pre_at), dtype=np.int64)
    count = np.zeros(n_codes, dtype=np.int64)
    slot = np.full(n_codes, -1, dtype=np.int64)
    local = np.full(len(keep), -1, dtype=np.int64)
    item, n_cap, n_pre = 0, 0, 0
    for t in range(len(start) - 1):
        s, e = start[t], start[t + 1]
        first = item
        for r in range(s, e):
            if keep[r]:
                local[r] = item - first
                item += 1
        capped = cap[t] >= 0 and comp_ptr[e] > comp_ptr[s]
        if capped:
            for r in range(s, e):
                if keep[r]:
                    for k in range(comp_ptr[r], comp_ptr[r + 1]):
                        count[comp_code[k]] += 1
            crowded = np.unique(comp_code[comp_ptr[s] : comp_ptr[e]])
            n_slots = 0
            for c in crowded:
                if count[c] > cap[t]:
                    slot[c] = n_slots
                    n_slots += 1
        for r in range(s, e):
            if not keep[r]:
                continue
            if capped:
                for k in range(comp_ptr[r], comp_ptr[r + 1]):
                    if slot[comp_code[k]] >= 0:
                        cap_idx[n_cap] = slot[comp_code[k]]
                        n_cap += 1
            for k in range(pre_ptr[r], pre_ptr[r + 1]):
                if not pre_done[k]:
                    pre_idx[n_pre] = local[pre_at[k]]
                    n_pre += 1
            cap_ptr[first + local[r] + 1] = n_cap
            pre_item_ptr[first + local[r] + 1] = n_pre
        if capped:
            for k in range(comp_ptr[s], comp_ptr[e]):
                count[comp_code[k]] = 0
                slot[comp_code[k]] = -1
    return cap_ptr, cap_idx[:n_cap], pre_item_ptr, pre_idx[:n_pre]


@njit(cache=True)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """Sum of a[lo:lo + n], n <= 128, as numpy's pairwise sum adds a block: eight running sums."""
    if n < 8:
        res = -0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r = a[lo : lo + 8].copy()
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += a[lo + i + j]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _np_sum(a: np.ndarray) -> float:
    """``a.sum()`` for a float64 array, bit for bit: numpy halves an array (at a multiple of eight) until the
    halves have at most 128 elements, sums those by _block_sum and adds the halves back up. Without recursion,
    which numba's cache does not load safely: a stack of segments, n = -1 standing for "add the last two
    sums"."""
    seg_lo = np.empty(256, dtype=np.int64)
    seg_n = np.empty(256, dtype=np.int64)
    sums = np.empty(128)
    seg_lo[0], seg_n[0] = 0, len(a)
    tasks, done = 1, 0
    while tasks:
        tasks -= 1
        lo, n = seg_lo[tasks], seg_n[tasks]
        if n == -1:
            done -= 1
            sums[done - 1] += sums[done]
        elif n <= 128:
            sums[done] = _block_sum(a, lo, n)
            done += 1
        else:
            half = n // 2 - (n // 2) % 8
            seg_lo[tasks : tasks + 3] = (0, lo + half, lo)
            seg_n[tasks : tasks + 3] = (-1, n - half, half)
            tasks += 3
    return 0.0 + sums[0]


@njit(cache=True)
def _place(
    chosen: np.ndarray,
    s: int,
    e: int,
    pre_ptr: np.ndarray,
    pre_at: np.ndarray,
    pre_done: np.ndarray,
    seen: np.ndarray,
    stack: np.ndarray,
    cursor: np.ndarray,
    out: np.ndarray,
    at: int,
) -> int:
    """Teacher rows s..e-1 that are chosen, written to out[at:] in rank order, each preceded by its chosen
    prerequisites (depth first); returns the next free position of ``out``."""
    for i in range(s, e):
        if not chosen[i] or seen[i]:
            continue
        seen[i] = True
        depth, stack[0], cursor[0] = 0, i, pre_ptr[i]
        while depth >= 0:
            row, pushed = stack[depth], False
            while cursor[depth] < pre_ptr[row + 1] and not pushed:
                k = cursor[depth]
                cursor[depth] += 1
                p = pre_at[k]
                if not pre_done[k] and p >= 0 and chosen[p] and not seen[p]:
                    seen[p] = True
                    depth += 1
                    stack[depth], cursor[depth] = p, pre_ptr[p]
                    pushed = True
            if not pushed:
                out[at] = row
                at += 1
                depth -= 1
    seen[s:e] = False
    return at


@njit(cache=True)
def _menus_of(
    start: np.ndarray,
    chosen: np.ndarray,
    hours: np.ndarray,
    practical: np.ndarray,
    cost: np.ndarray,
    pre_ptr: np.ndarray,
    pre_at: np.ndarray,
    pre_done: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every teacher's chosen rows in menu order (see _place) as CSR (ptr, rows), and per teacher the total
    hours, practical hours and cost, each summed in rank order as numpy sums."""
    n_teachers = len(start) - 1
    ptr = np.zeros(n_teachers + 1, dtype=np.int64)
    rows = np.empty(int(chosen.sum()), dtype=np.int64)
    totals = np.zeros((n_teachers, 3))
    seen = np.zeros(len(chosen), dtype=np.bool_)
    stack = np.empty(len(chosen), dtype=np.int64)
    cursor = np.empty(len(chosen), dtype=np.int64)
    for t in range(n_teachers):
        s, e = start[t], start[t + 1]
        ptr[t + 1] = _place(chosen, s, e, pre_ptr, pre_at, pre_done, seen, stack, cursor, rows, ptr[t])
        mine = chosen[s:e]
        totals[t, 0] = _np_sum(hours[s:e][mine])
        totals[t, 1] = _np_sum(hours[s:e][mine & practical[s:e]])
        totals[t, 2] = _np_sum(cost[s:e][mine])
    return ptr, rows, totals


# --------------------------------------------------------------------------------------------------------------
# A block's programmes and menus

# The outcome of a teacher with no candidate the programme may see, besides knapsack's FOUND, NO_MENU and
# CUT_SHORT: no programme, no search.
NO_CANDIDATES: Final = -1


@dataclass(frozen=True)
class _Plans:
    """The menus of a block's teachers: the chosen rows (block positions) in menu order as CSR (``ptr``,
    ``rows``); per teacher its status, relaxed rule, message and (total hours, practical hours, cost)."""

    ptr: np.ndarray
    rows: np.ndarray
    status: np.ndarray
    relaxed_rule: np.ndarray
    message: np.ndarray
    totals: np.ndarray


@dataclass(frozen=True)
class _Limits:
    """MenuLimits of a block's teachers as arrays: entry g for ``limits[g]`` (see _plan)."""

    hours_min: np.ndarray
    hours_max: np.ndarray
    practical_share: np.ndarray
    budget: np.ndarray  # inf when none
    cap: np.ndarray  # int, -1 when none
    exclude_completed: np.ndarray
    topics: np.ndarray  # a bit per topic owed


def _limit_arrays(limits: Sequence[MenuLimits]) -> _Limits:
    """The limits' numbers as arrays, one entry per MenuLimits."""
    return _Limits(
        hours_min=np.array([lim.hours_min for lim in limits], dtype=np.float64),
        hours_max=np.array([lim.hours_max for lim in limits], dtype=np.float64),
        practical_share=np.array([lim.practical_share for lim in limits], dtype=np.float64),
        budget=np.array([np.inf if lim.budget_yuan is None else lim.budget_yuan for lim in limits]),
        cap=np.array([-1 if lim.max_per_competency is None else lim.max_per_competency for lim in limits]),
        exclude_completed=np.array([lim.exclude_completed for lim in limits], dtype=bool),
        topics=np.array([(1 << len(lim.topics)) - 1 for lim in limits], dtype=np.int64),
    )


def _row_rules(
    block: _Block, limits: Sequence[MenuLimits], arrays: _Limits, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate row, under the limits of its teacher (``limits[group[t]]``): whether it is eligible (not
    completed when the policy says so, not excluded, and no longer than the most hours a menu may hold, a
    bound never relaxed), whether its format is allowed, and the owed topics it covers (bit i for
    ``topics[i]``)."""
    row_group = np.repeat(group, np.diff(block.start))
    eligible = (block.hours <= arrays.hours_max[row_group] + TOLERANCE) & ~(
        block.done & arrays.exclude_completed[row_group]
    )
    fmts = np.arange(-1, len(FORMATS))  # every value of _Block.fmt
    fmt_ok = np.stack([_format_allowed(fmts, lim.formats) for lim in limits])
    covers = np.zeros((len(limits), len(block.topic_names), len(fmts)), dtype=np.int64)
    for g, lim in enumerate(limits):
        if lim.exclude:
            eligible &= ~((row_group == g) & np.isin(block.course_id, list(lim.exclude)))
        for bit, topic in enumerate(lim.topics):
            named = np.full(len(fmts), topic.topic, dtype=object)
            covers[g, block.topic_names == topic.topic] |= _covers(topic, named, fmts).astype(np.int64) << bit
    return eligible, fmt_ok[row_group, block.fmt + 1], covers[row_group, block.topic_code, block.fmt + 1]


def _programmes(
    block: _Block, limits: Sequence[MenuLimits], arrays: _Limits, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Programmes]:
    """The usable and kept rows of every teacher; the teachers who keep any, and their programmes (every rule
    hard), in teacher order. A topic no kept course covers is left out of the programme, as in _rows."""
    eligible, fmt_ok, covers = _row_rules(block, limits, arrays, group)
    usable, keep = _candidates(
        block.start,
        eligible,
        fmt_ok,
        covers,
        block.pre_ptr,
        block.pre_at,
        block.pre_done,
        TOP_CANDIDATES,
        TOP_OTHER_FORMATS,
    )
    cap_ptr, cap_idx, pre_ptr, pre_idx = _side_rules(
        block.start,
        keep,
        block.comp_ptr,
        block.comp_code,
        len(block.comp_names),
        block.pre_ptr,
        block.pre_at,
        block.pre_done,
        arrays.cap[group],
    )
    n_kept = np.diff(np.concatenate([[0], np.cumsum(keep)])[block.start])
    owner = np.flatnonzero(n_kept)
    g = group[owner]
    rows = np.flatnonzero(keep)
    item_ptr = np.concatenate([[0], np.cumsum(n_kept[owner])]).astype(np.int64)
    h = block.hours[rows]
    share = np.repeat(arrays.practical_share[g], n_kept[owner])
    programmes = Programmes(
        item_ptr=item_ptr,
        utility=block.utility[rows],
        hours=h,
        gain=np.where(share > 0, (block.practical[rows] - share) * h, 0.0),
        covers=covers[rows],
        cost=block.cost[rows],
        # a course in a format not allowed breaks the formats rule by its hours: it may not be taken
        allowed=fmt_ok[rows] | ~(h > FEASIBILITY),
        cap_ptr=cap_ptr,
        cap_idx=cap_idx,
        pre_ptr=pre_ptr,
        pre_idx=pre_idx,
        hours_min=arrays.hours_min[g],
        hours_max=arrays.hours_max[g],
        budget=arrays.budget[g],
        cap=np.where(arrays.cap[g] >= 0, arrays.cap[g], n_kept[owner]).astype(np.float64),
        need=np.bitwise_or.reduceat(covers[rows], item_ptr[:-1]) if len(rows) else np.zeros(0, np.int64),
    )
    return usable, keep, owner, programmes


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
    if code == "per_competency":
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
    raise ValueError(f"rule {code!r} has no explanation")


def _settle(
    sl: _Slice, keep: np.ndarray, limits: MenuLimits, outcome: int, found: np.ndarray, hopeless: bool
) -> tuple[np.ndarray, Status, str | None, str | None]:
    """The menu (bool over the teacher's candidates), status, relaxed rule and message of a teacher the branch
    and bound alone does not settle: ``outcome`` is its search's (or NO_CANDIDATES), ``found`` its menu when
    FOUND; ``hopeless`` when the teacher owes a topic no kept course covers."""
    none = np.zeros(len(sl.ids), dtype=bool)
    if outcome == NO_CANDIDATES:
        # An empty menu breaks the hours window, and the mandatory rule when a topic is owed: relaxing the
        # hours alone is enough only when no topic is owed.
        if not limits.topics:
            return none, "empty", "hours", _why("hours", sl, none, limits) + "。"
        return none, "empty", None, NO_CANDIDATES_ZH
    idx = np.flatnonzero(keep)
    if outcome == CUT_SHORT:  # the search was too long: the MILP settles it
        picked = _solve(_rows(sl, keep, limits), sl.utility[keep], None)
        outcome, found = NO_MENU, none
        if picked is not None:
            outcome, found = FOUND, none.copy()
            found[idx[picked]] = True
    # Owing a topic that no kept course covers rules out every menu unless the mandatory rule is relaxed; the
    # coverable topics then first stay hard (the fewest topics lost), else become elastic.
    if outcome == FOUND:
        if not hopeless:
            return found, "ok", None, None
        message = _why("mandatory_topic", sl, found, limits) + RELAXED_SUFFIX_ZH
        return found, "relaxed", "mandatory_topic", message
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
        return chosen, "relaxed", relax, _why(relax, sl, chosen, limits) + RELAXED_SUFFIX_ZH
    return none, "empty", None, NO_RELAXATION_ZH


def _plan(block: _Block, limits: Sequence[MenuLimits], group: np.ndarray) -> _Plans:
    """Every teacher's menu; teacher t's rules are ``limits[group[t]]``. The compiled steps settle a teacher
    whose menu keeps every rule; _settle the others."""
    n_teachers = len(block.start) - 1
    arrays = _limit_arrays(limits)
    usable, keep, owner, programmes = _programmes(block, limits, arrays, group)
    found, picked = best_subsets(programmes, NODE_LIMIT)
    outcome = np.full(n_teachers, NO_CANDIDATES, dtype=np.int64)
    outcome[owner] = found
    need = np.zeros(n_teachers, dtype=np.int64)
    need[owner] = programmes.need
    hopeless = need != arrays.topics[group]
    chosen = np.zeros(len(keep), dtype=bool)
    chosen[keep] = picked
    status = np.full(n_teachers, "ok", dtype=object)
    relaxed_rule = np.full(n_teachers, None, dtype=object)
    message = np.full(n_teachers, None, dtype=object)
    for t in np.flatnonzero((outcome != FOUND) | hopeless):
        s, e = block.start[t], block.start[t + 1]
        chosen[s:e], status[t], relaxed_rule[t], message[t] = _settle(
            _slice(block, int(t), usable[s:e]),
            keep[s:e],
            limits[group[t]],
            outcome[t],
            chosen[s:e],
            hopeless[t],
        )
    ptr, rows, totals = _menus_of(
        block.start,
        chosen,
        block.hours,
        block.practical,
        block.cost,
        block.pre_ptr,
        block.pre_at,
        block.pre_done,
    )
    status[ptr[1:] == ptr[:-1]] = "empty"
    return _Plans(ptr, rows, status, relaxed_rule, message, totals)


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
    plans = _plan(block, [limits], np.zeros(1, dtype=np.int64))
    rows = plans.rows
    return Menu(
        teacher_id=teacher.teacher_id,
        items=tuple(str(c) for c in block.course_id[rows]),
        hours=tuple(float(h) for h in block.hours[rows]),
        total_hours=float(plans.totals[0, 0]),
        practical_hours=float(plans.totals[0, 1]),
        cost_yuan=float(plans.totals[0, 2]),
        status=plans.status[0],
        relaxed_rule=plans.relaxed_rule[0],
        message=plans.message[0],
    )


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
    # teachers of one stage owing the same topics share their limits
    group_of: dict[tuple[str, tuple[str, ...]], int] = {}
    limits: list[MenuLimits] = []
    group = np.empty(len(tid), dtype=np.int64)
    for t, (teacher_id, stage, topics) in enumerate(zip(tid, stages, owed, strict=True)):
        key = (stage, tuple(_cell_list(topics)))
        if key not in group_of:
            group_of[key] = len(limits)
            limits.append(menu_limits(TeacherMenuContext(teacher_id, stage, key[1]), policy))
        group[t] = group_of[key]
    return _frames(tid, block, _plan(block, limits, group))


def _frames(tid: np.ndarray, block: _Block, plans: _Plans) -> tuple[pd.DataFrame, pd.DataFrame]:
    sizes = np.diff(plans.ptr)
    long = pd.DataFrame(
        {
            "teacher_id": pd.Series(np.repeat(tid, sizes), dtype=object),
            "course_id": pd.Series(block.course_id[plans.rows], dtype=object),
            "hours": pd.Series(block.hours[plans.rows], dtype=np.float64),
            "position": pd.Series(
                np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1, dtype=np.int64
            ),
        }
    )
    statuses = pd.DataFrame(
        {
            "teacher_id": pd.Series(tid, dtype=object),
            "status": pd.Series(plans.status, dtype=object),
            "relaxed_rule": pd.Series(plans.relaxed_rule, dtype=object),
            "message": pd.Series(plans.message, dtype=object),
            "total_hours": pd.Series(plans.totals[:, 0], dtype=np.float64),
            "practical_hours": pd.Series(plans.totals[:, 1], dtype=np.float64),
            "cost_yuan": pd.Series(plans.totals[:, 2], dtype=np.float64),
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
