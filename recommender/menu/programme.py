"""A block's menus: every teacher's programme solved by the branch and bound (recommender.knapsack) in one call,
and the teachers it does not settle — a rule to relax, or a search too long — by a mixed-integer programme
(scipy.optimize.milp / HiGHS) whose rows are lb <= A x <= ub per rule. Relaxing a rule adds one slack per row on
the side the rule may miss, first minimises the total slack, then maximises utility with the slack held at that
minimum; the relaxed rule's sentence is built from the relaxed menu's own numbers (why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from data.policy import FORMATS, MandatoryTopic
from recommender.explain import FORMAT_ZH
from recommender.knapsack import CUT_SHORT, FEASIBILITY, FOUND, NO_MENU, NODE_LIMIT, Programmes, best_subsets
from recommender.menu.block import Block, TeacherSlice, teacher_slice
from recommender.menu.compiled import candidates, menus_of, side_rules
from recommender.menu.rules import (
    NO_CANDIDATES_ZH,
    NO_RELAXATION_ZH,
    RELAXATION_ORDER,
    RELAXED_SUFFIX_ZH,
    TOLERANCE,
    MenuLimits,
    Status,
    covers,
    format_allowed,
)

# Candidates the programme sees: the best TOP_CANDIDATES in allowed formats, the best TOP_OTHER_FORMATS in
# other formats (only used when the formats rule has to be relaxed), every course covering a topic still owed,
# and the prerequisites of those. More candidates rarely change the menu but slow the branch and bound.
TOP_CANDIDATES: Final = 40
TOP_OTHER_FORMATS: Final = 10
# HiGHS settles these small programmes in milliseconds; the limit only guards against a pathological case,
# where the best menu found so far is used.
MILP_OPTIONS: Final = {"time_limit": 2.0, "mip_rel_gap": 1e-4}


@dataclass(frozen=True)
class MilpRows:
    code: str
    a: np.ndarray  # (k, n)
    lb: np.ndarray
    ub: np.ndarray
    slack_sign: float  # +1 the lower bound may be missed when relaxed, -1 the upper bound, 0 never


def milp_rows(sl: TeacherSlice, keep: np.ndarray, limits: MenuLimits) -> list[MilpRows]:
    n = int(keep.sum())
    h = sl.hours[keep]
    inf = np.inf
    rows = [
        MilpRows("hours", h[None, :], np.array([limits.hours_min]), np.array([inf]), 1.0),
        MilpRows("hours", h[None, :], np.array([-inf]), np.array([limits.hours_max]), 0.0),
    ]
    if limits.practical_share > 0:
        a = ((sl.practical[keep] - limits.practical_share) * h)[None, :]
        rows.append(MilpRows("practical_share", a, np.zeros(1), np.array([inf]), 1.0))
    if limits.topics:
        a = np.stack([covers(t, sl.topic[keep], sl.fmt[keep]) for t in limits.topics]).astype(np.float64)
        # a topic no kept course covers is lost whatever else is chosen: its row could only make the
        # programme infeasible (see plan)
        a = a[a.any(axis=1)]
        if len(a):
            rows.append(MilpRows("mandatory_topic", a, np.ones(len(a)), np.full(len(a), inf), 1.0))
    if limits.budget_yuan is not None:
        rows.append(
            MilpRows("budget", sl.cost[keep][None, :], np.array([-inf]), np.array([limits.budget_yuan]), -1.0)
        )
    other = ~format_allowed(sl.fmt[keep], limits.formats)
    if other.any():
        rows.append(MilpRows("formats", (h * other)[None, :], np.array([-inf]), np.zeros(1), -1.0))
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
            rows.append(MilpRows("per_competency", crowded, np.full(len(crowded), -inf), cap, -1.0))
    edge = keep[sl.dep]
    if edge.any():
        a = np.zeros((int(edge.sum()), n))
        k = np.arange(len(a))
        a[k, local[sl.pre[edge]]] += 1.0
        a[k, local[sl.dep[edge]]] -= 1.0
        rows.append(MilpRows("prerequisites", a, np.zeros(len(a)), np.full(len(a), inf), 0.0))
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


def _solve(rows: list[MilpRows], utility: np.ndarray, relax: str | None) -> np.ndarray | None:
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


# The outcome of a teacher with no candidate the programme may see, besides knapsack's FOUND, NO_MENU and
# CUT_SHORT: no programme, no search.
NO_CANDIDATES: Final = -1


@dataclass(frozen=True)
class Plans:
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
    """MenuLimits of a block's teachers as arrays: entry g for ``limits[g]`` (see plan)."""

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
    block: Block, limits: Sequence[MenuLimits], arrays: _Limits, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate row, under the limits of its teacher (``limits[group[t]]``): whether it is eligible (not
    completed when the policy says so, not excluded, and no longer than the most hours a menu may hold, a
    bound never relaxed), whether its format is allowed, and the owed topics it covers (bit i for
    ``topics[i]``)."""
    row_group = np.repeat(group, np.diff(block.start))
    eligible = (block.hours <= arrays.hours_max[row_group] + TOLERANCE) & ~(
        block.done & arrays.exclude_completed[row_group]
    )
    fmts = np.arange(-1, len(FORMATS))  # every value of Block.fmt
    fmt_ok = np.stack([format_allowed(fmts, lim.formats) for lim in limits])
    covered = np.zeros((len(limits), len(block.topic_names), len(fmts)), dtype=np.int64)
    for g, lim in enumerate(limits):
        if lim.exclude:
            eligible &= ~((row_group == g) & np.isin(block.course_id, list(lim.exclude)))
        for bit, topic in enumerate(lim.topics):
            named = np.full(len(fmts), topic.topic, dtype=object)
            covered[g, block.topic_names == topic.topic] |= covers(topic, named, fmts).astype(np.int64) << bit
    return eligible, fmt_ok[row_group, block.fmt + 1], covered[row_group, block.topic_code, block.fmt + 1]


def _programmes(
    block: Block, limits: Sequence[MenuLimits], arrays: _Limits, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Programmes]:
    """The usable and kept rows of every teacher; the teachers who keep any, and their programmes (every rule
    hard), in teacher order. A topic no kept course covers is left out of the programme, as in milp_rows."""
    eligible, fmt_ok, covered = _row_rules(block, limits, arrays, group)
    usable, keep = candidates(
        block.start,
        eligible,
        fmt_ok,
        covered,
        block.pre_ptr,
        block.pre_at,
        block.pre_done,
        TOP_CANDIDATES,
        TOP_OTHER_FORMATS,
    )
    cap_ptr, cap_idx, pre_ptr, pre_idx = side_rules(
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
        covers=covered[rows],
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
        need=np.bitwise_or.reduceat(covered[rows], item_ptr[:-1]) if len(rows) else np.zeros(0, np.int64),
    )
    return usable, keep, owner, programmes


def _topic_reason(sl: TeacherSlice, topic: MandatoryTopic, limits: MenuLimits) -> str:
    named = sl.topic == topic.topic
    covering = covers(topic, sl.topic, sl.fmt)
    if not named.any():
        return "候选课程中没有该专题的课程"
    if not covering.any():
        return f"候选课程中没有该专题的{'、'.join(FORMAT_ZH[f] for f in topic.formats)}课程"
    if not (covering & sl.usable).any():
        return "该专题的候选课程均不可选（已完成、已被排除、先修课程未满足或学时超过上限）"
    if not (covering & sl.usable & format_allowed(sl.fmt, limits.formats)).any():
        return f"该专题的候选课程均不在允许的培训形式（{'、'.join(FORMAT_ZH[f] for f in limits.formats)}）内"
    return "该专题的课程与学时、实践比例、费用等其他规则无法同时满足"


def why(code: str, sl: TeacherSlice, chosen: np.ndarray, limits: MenuLimits) -> str:
    """The Chinese sentence for a relaxed rule, from the relaxed menu's own numbers."""
    h = float(sl.hours[chosen].sum())
    if code == "mandatory_topic":
        # topics lost for the same reason share one clause: 「必修专题：四史、心理健康」
        lost: dict[str, list[str]] = {}
        for t in limits.topics:
            if not (chosen & covers(t, sl.topic, sl.fmt)).any():
                lost.setdefault(_topic_reason(sl, t, limits), []).append(t.topic)
        return "；".join(
            f"无法满足「{limits.label(code, '、'.join(names))}」："
            + (reason if len(names) == 1 else reason.replace("该专题", "这些专题"))
            for reason, names in lost.items()
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
        other = float(sl.hours[chosen & ~format_allowed(sl.fmt, limits.formats)].sum())
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
    sl: TeacherSlice, keep: np.ndarray, limits: MenuLimits, outcome: int, found: np.ndarray, hopeless: bool
) -> tuple[np.ndarray, Status, str | None, str | None]:
    """The menu (bool over the teacher's candidates), status, relaxed rule and message of a teacher the branch
    and bound alone does not settle: ``outcome`` is its search's (or NO_CANDIDATES), ``found`` its menu when
    FOUND; ``hopeless`` when the teacher owes a topic no kept course covers."""
    none = np.zeros(len(sl.ids), dtype=bool)
    if outcome == NO_CANDIDATES:
        # An empty menu breaks the hours window, and the mandatory rule when a topic is owed: relaxing the
        # hours alone is enough only when no topic is owed.
        if not limits.topics:
            return none, "empty", "hours", why("hours", sl, none, limits) + "。"
        return none, "empty", None, NO_CANDIDATES_ZH
    idx = np.flatnonzero(keep)
    if outcome == CUT_SHORT:  # the search was too long: the MILP settles it
        picked = _solve(milp_rows(sl, keep, limits), sl.utility[keep], None)
        outcome, found = NO_MENU, none
        if picked is not None:
            outcome, found = FOUND, none.copy()
            found[idx[picked]] = True
    # Owing a topic that no kept course covers rules out every menu unless the mandatory rule is relaxed; the
    # coverable topics then first stay hard (the fewest topics lost), else become elastic.
    if outcome == FOUND:
        if not hopeless:
            return found, "ok", None, None
        message = why("mandatory_topic", sl, found, limits) + RELAXED_SUFFIX_ZH
        return found, "relaxed", "mandatory_topic", message
    rows = milp_rows(sl, keep, limits)
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
        return chosen, "relaxed", relax, why(relax, sl, chosen, limits) + RELAXED_SUFFIX_ZH
    return none, "empty", None, NO_RELAXATION_ZH


def plan(block: Block, limits: Sequence[MenuLimits], group: np.ndarray) -> Plans:
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
            teacher_slice(block, int(t), usable[s:e]),
            keep[s:e],
            limits[group[t]],
            outcome[t],
            chosen[s:e],
            hopeless[t],
        )
    ptr, rows, totals = menus_of(
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
    return Plans(ptr, rows, status, relaxed_rule, message, totals)
