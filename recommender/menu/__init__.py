"""Study menu (选学菜单): the courses a teacher is offered, chosen from the ranked candidates under the province's
policy, naming the rule when it cannot be met. The menu keeping every rule is found by an exact branch and bound
(recommender.knapsack); relaxing a rule, or a search too long, goes to a mixed-integer programme
(scipy.optimize.milp / HiGHS). A block's teachers are planned together, in compiled steps over the whole block
and one branch and bound call; only a teacher whose menu needs a relaxation or the MILP is settled in Python on
its own (one teacher, plan_menu, is a block of one).

The package: `rules` (RULES, MenuRequest, MenuLimits, Menu), `block` (the candidates as arrays and what a course
adds to a menu), `compiled` (the numba steps over a block), `programme` (the branch and bound call, the MILP and
the relaxed rules' sentences); here the entry points plan_menu, plan_menus and check_menu.

Rules (codes, Chinese labels) are defined once in RULES; the programme and check_menu() both read their numbers
from MenuLimits, which combines the policy, the teacher and the teacher's own request in one place.

Where each rule lives — to change a rule, change every face in its row (tests/recommender/test_menu_rules.py
fails when a relaxable rule lacks its MILP row, its explanation or its check):

rule (RULES)     policy field (data/policy.py)   MenuLimits          MILP row              branch and bound
                                                                     (programme.milp_rows) (programme._programmes)
mandatory_topic  mandatory_topics                topics              ≥ 1 course per owed topic   covers, need
practical_share  practical_share_min             practical_share     Σ (practical − share)·h ≥ 0 gain (the same sum)
hours            menu_hours_target, _slack       hours_min, _max     min ≤ Σ h (max never relaxed) hours_min, hours_max
budget           budget_yuan (and the request's) budget_yuan         Σ cost ≤ budget             cost, budget
formats          allowed_formats (∩ request's)   formats             Σ h in other formats ≤ 0    allowed (_row_rules)
per_competency   max_courses_per_competency      max_per_competency  ≤ cap per crowded comp.     cap_ptr, cap_idx
prerequisites    —                               —                   prerequisite ≥ dependant    pre_ptr, pre_idx
completed        exclude_completed               exclude_completed   (left out of the candidates: _row_rules)
excluded         — (the request's exclude)       exclude             (left out of the candidates: _row_rules)

Every relaxable rule's sentence is built by programme.why (mandatory topics: _topic_reason) and checked by
check_menu; the relaxation order is the order of RULES.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.policy import FORMATS, Policy
from recommender.menu.block import Block, candidate_block, cell_list, list_entries, utility
from recommender.menu.programme import Plans, plan
from recommender.menu.rules import (
    RELAXATION_ORDER,
    RULES,
    TOLERANCE,
    Menu,
    MenuLimits,
    MenuRequest,
    Rule,
    TeacherMenuContext,
    covers,
    format_allowed,
    menu_limits,
)

__all__ = [
    "RELAXATION_ORDER",
    "RULES",
    "TOLERANCE",
    "Menu",
    "MenuLimits",
    "MenuRequest",
    "Rule",
    "TeacherMenuContext",
    "check_menu",
    "menu_limits",
    "plan_menu",
    "plan_menus",
    "utility",
]


def plan_menu(
    cands: pd.DataFrame, teacher: TeacherMenuContext, policy: Policy, request: MenuRequest | None = None
) -> Menu:
    """The best menu for one teacher from their ranked candidates (columns course_id, score, hours, format,
    practical, mandatory_topic, competencies, prerequisites, cost_yuan), or the best that relaxes one rule."""
    limits = menu_limits(teacher, policy, request)
    done = np.array(sorted(teacher.completed), dtype=object)
    block = candidate_block(
        cands, np.zeros(len(cands), dtype=np.int64), 1, np.zeros(len(done), np.int64), done
    )
    plans = plan(block, [limits], np.zeros(1, dtype=np.int64))
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
    done_pos, done_ids = list_entries(teachers.get("completed", none))
    block = candidate_block(cands_long[known], pos[known], len(tid), done_pos, done_ids)
    owed = teachers["missing_mandatory"].to_numpy(dtype=object) if "missing_mandatory" in teachers else none
    stages = teachers["stage"].astype(str).to_numpy(dtype=object)
    # teachers of one stage owing the same topics share their limits
    group_of: dict[tuple[str, tuple[str, ...]], int] = {}
    limits: list[MenuLimits] = []
    group = np.empty(len(tid), dtype=np.int64)
    for t, (teacher_id, stage, topics) in enumerate(zip(tid, stages, owed, strict=True)):
        key = (stage, tuple(cell_list(topics)))
        if key not in group_of:
            group_of[key] = len(limits)
            limits.append(menu_limits(TeacherMenuContext(teacher_id, stage, key[1]), policy))
        group[t] = group_of[key]
    return _frames(tid, block, plan(block, limits, group))


def _frames(tid: np.ndarray, block: Block, plans: Plans) -> tuple[pd.DataFrame, pd.DataFrame]:
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
        missing = [p for p in cell_list(cell) if p not in before]
        if missing:
            problems.append(("prerequisites", "", f"课程 {course} 的先修课程 {missing} 未完成也未排在其前"))
    if not limits.hours_min - TOLERANCE <= total <= limits.hours_max + TOLERANCE:
        problems.append(("hours", "", f"菜单共 {total:g} 学时"))
    practical_hours = float(hours[practical].sum())
    if limits.practical_share > 0 and practical_hours < limits.practical_share * total - TOLERANCE:
        problems.append(("practical_share", "", f"实践性课程 {practical_hours:g} / {total:g} 学时"))
    for topic in limits.topics:
        if not covers(topic, topics, fmt).any():
            problems.append(("mandatory_topic", topic.topic, "菜单中没有该专题的课程"))
    if limits.budget_yuan is not None and float(cost.sum()) > limits.budget_yuan + TOLERANCE:
        problems.append(("budget", "", f"菜单费用 {float(cost.sum()):g} 元"))
    allowed = format_allowed(fmt, limits.formats)
    if not allowed.all():
        problems.append(("formats", "", f"含其他形式的课程 {list(chosen.index[~allowed])}"))
    if limits.max_per_competency is not None:
        counts = pd.Series([c for cell in chosen["competencies"] for c in cell_list(cell)]).value_counts()
        crowded = counts[counts > limits.max_per_competency]
        if len(crowded):
            problems.append(("per_competency", "", f"能力点课程数 {crowded.to_dict()}"))
    return [
        f"{code}: 违反「{limits.label(code, topic)}」，{why}"
        for code, topic, why in problems
        if code != menu.relaxed_rule
    ]
