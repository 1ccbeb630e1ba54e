"""Study menu properties over thousands of random teachers, candidate sets, policies and requests, judged
against brute force over every subset of the candidates: a feasible policy gives an optimal menu that keeps
every rule; an infeasible one names the first rule (in RELAXATION_ORDER) whose relaxation admits a menu, and
the menu keeps every other rule; no menu only when no single relaxation admits one."""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.policy import FORMATS, STAGES, MandatoryTopic, Policy
from data.reference import load_policy
from recommender.menu import (
    RELAXATION_ORDER,
    TOLERANCE,
    MenuLimits,
    MenuRequest,
    TeacherMenuContext,
    check_menu,
    menu_limits,
    plan_menu,
    plan_menus,
    utility,
)
from recommender.menu.block import repeats

TOPICS = ("师德师风", "思想政治")
COMPS = ("A", "B", "C")
MAX_CANDIDATES = 9  # 2^9 subsets for the brute force; below the programme's trimming


@st.composite
def candidate_frames(draw: Any) -> pd.DataFrame:
    n = draw(st.one_of(st.integers(0, 2), *[st.integers(3, MAX_CANDIDATES)] * 3))
    ids = [f"C{i}" for i in range(n)]
    rows = []
    for i in range(n):
        # prerequisites point to earlier courses or outside the list, so they never form a cycle
        pre = (
            draw(st.lists(st.sampled_from([*ids[:i], "OUTSIDE"]), max_size=1)) if draw(st.booleans()) else []
        )
        rows.append(
            {
                "course_id": ids[i],
                "score": draw(st.floats(-3, 3, allow_nan=False)),
                "hours": float(draw(st.sampled_from([2, 4, 6, 8, 10, 12, 16, 20, 30]))),
                "format": draw(st.sampled_from([*FORMATS, None])),
                "practical": draw(st.booleans()),
                "mandatory_topic": draw(st.sampled_from([None, None, *TOPICS])),
                "competencies": draw(st.lists(st.sampled_from(COMPS), max_size=2, unique=True)),
                "prerequisites": pre,
                "cost_yuan": draw(st.sampled_from([0.0, 0.0, 50.0, 100.0, 300.0, np.nan])),
            }
        )
    columns = [
        "course_id",
        "score",
        "hours",
        "format",
        "practical",
        "mandatory_topic",
        "competencies",
        "prerequisites",
        "cost_yuan",
    ]
    return pd.DataFrame(rows, columns=columns)


@st.composite
def policies(draw: Any) -> Policy:
    topics = tuple(
        MandatoryTopic(
            t,
            12,
            tuple(draw(st.lists(st.sampled_from(STAGES), max_size=2, unique=True))),
            tuple(draw(st.lists(st.sampled_from(FORMATS), max_size=2, unique=True))),
        )
        for t in draw(st.lists(st.sampled_from(TOPICS), max_size=2, unique=True))
    )
    formats = draw(st.one_of(st.just(FORMATS), st.lists(st.sampled_from(FORMATS), min_size=3, unique=True)))
    return dataclasses.replace(
        load_policy("default"),
        menu_hours_target=float(draw(st.sampled_from([10, 20, 30, 50]))),
        menu_hours_slack=float(draw(st.sampled_from([0, 4, 10]))),
        mandatory_topics=topics,
        practical_share_min=draw(st.sampled_from([0.0, 0.3, 0.5])),
        allowed_formats=tuple(formats),
        budget_yuan=draw(st.sampled_from([None, None, 100.0, 300.0])),
        max_courses_per_competency=draw(st.sampled_from([None, 1, 2, 3])),
        exclude_completed=draw(st.booleans()),
    )


@st.composite
def cases(draw: Any) -> tuple[pd.DataFrame, TeacherMenuContext, Policy, MenuRequest | None]:
    frame = draw(candidate_frames())
    ids = frame["course_id"].tolist()
    teacher = TeacherMenuContext(
        "T",
        draw(st.sampled_from(STAGES)),
        tuple(
            draw(
                st.lists(
                    st.sampled_from(TOPICS),
                    min_size=draw(st.sampled_from([0, 1, 1])),
                    max_size=2,
                    unique=True,
                )
            )
        ),
        frozenset(draw(st.lists(st.sampled_from([*ids, "OUTSIDE"]), max_size=3))),
    )
    request = None
    if draw(st.booleans()):
        request = MenuRequest(
            hours_target=draw(st.sampled_from([None, 10.0, 24.0])),
            formats=draw(
                st.one_of(
                    st.none(),
                    st.none(),
                    st.lists(st.sampled_from(FORMATS), min_size=2, max_size=4, unique=True).map(tuple),
                )
            ),
            exclude=frozenset(draw(st.lists(st.sampled_from(ids), max_size=2))) if ids else frozenset(),
            budget_yuan=draw(st.sampled_from([None, 100.0])),
        )
    return frame, teacher, draw(policies()), request


def breaches(frame: pd.DataFrame, teacher: TeacherMenuContext, limits: MenuLimits) -> dict[str, np.ndarray]:
    """For every subset of the candidates (rows of a (2^n, n) 0/1 matrix): which rules it breaks."""
    n = len(frame)
    s = np.array(list(itertools.product([False, True], repeat=n)), dtype=bool).reshape(2**n, n)
    ids = frame["course_id"].to_numpy()
    hours = frame["hours"].to_numpy()
    cost = frame["cost_yuan"].fillna(0.0).to_numpy()
    practical = frame["practical"].to_numpy(dtype=bool)
    total = s @ hours
    fmt = frame["format"].to_numpy(dtype=object)
    all_formats = set(FORMATS) <= set(limits.formats)
    allowed = np.array([all_formats or f in limits.formats for f in fmt], dtype=bool)
    hard = np.zeros(len(s), dtype=bool)
    if limits.exclude_completed:
        hard |= s[:, np.isin(ids, list(teacher.completed))].any(axis=1)
    hard |= s[:, np.isin(ids, list(limits.exclude))].any(axis=1)
    for i, pre in enumerate(frame["prerequisites"]):
        for p in pre:
            if p not in teacher.completed:
                has = ids == p
                hard |= s[:, i] & ~(s[:, has].any(axis=1))
    hard |= total > limits.hours_max + TOLERANCE
    mandatory = np.zeros(len(s), dtype=bool)
    for t in limits.topics:
        covers = (frame["mandatory_topic"].to_numpy() == t.topic) & (
            np.isin(fmt, list(t.formats)) if t.formats else True
        )
        mandatory |= ~s[:, covers].any(axis=1)
    per_comp = np.zeros(len(s), dtype=bool)
    if limits.max_per_competency is not None:
        for c in COMPS:
            on = np.array([c in comps for comps in frame["competencies"]], dtype=bool)
            per_comp |= s[:, on].sum(axis=1) > limits.max_per_competency
    return {
        "subsets": s,
        "hard": hard,
        "mandatory_topic": mandatory,
        "practical_share": s @ (hours * practical) < limits.practical_share * total - TOLERANCE,
        "hours": total < limits.hours_min - TOLERANCE,
        "budget": (s @ cost > limits.budget_yuan + TOLERANCE)
        if limits.budget_yuan is not None
        else np.zeros(len(s), dtype=bool),
        "formats": s[:, ~allowed].any(axis=1),
        "per_competency": per_comp,
    }


def course_values(frame: pd.DataFrame) -> np.ndarray:
    """Each course's utility: ranked by score, ties by course_id."""
    order = frame.sort_values(["score", "course_id"], ascending=[False, True], kind="stable").index
    rank = pd.Series(np.arange(len(frame)), index=order).reindex(frame.index).to_numpy()
    ranked = frame.loc[order]
    repeat = pd.Series(repeats(np.zeros(len(ranked)), ranked["mandatory_topic"].to_numpy()), index=order)
    return utility(rank, frame["hours"].to_numpy(), repeat.reindex(frame.index).to_numpy())


def covered(frame: pd.DataFrame, items: tuple[str, ...], topic: MandatoryTopic) -> bool:
    fits = frame["format"].isin(topic.formats) if topic.formats else True
    return bool((frame["course_id"].isin(items) & (frame["mandatory_topic"] == topic.topic) & fits).any())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_menu_keeps_every_rule_it_does_not_name_and_is_the_best_there_is(
    case: tuple[pd.DataFrame, TeacherMenuContext, Policy, MenuRequest | None],
) -> None:
    frame, teacher, policy, request = case
    menu = plan_menu(frame, teacher, policy, request)
    b = breaches(frame, teacher, menu_limits(teacher, policy, request))
    keeps = {
        r: ~b["hard"] & ~np.any([b[o] for o in RELAXATION_ORDER if o != r], axis=0) for r in RELAXATION_ORDER
    }
    feasible = keeps["hours"] & ~b["hours"]
    if feasible.any():
        assert (menu.status, menu.relaxed_rule, menu.message) == ("ok", None, None)
        assert check_menu(menu, frame, teacher, policy, request) == []
        values = course_values(frame)
        mine = values[frame["course_id"].isin(menu.items).to_numpy()].sum()
        best = (b["subsets"][feasible] @ values).max()
        assert mine >= best - 1e-3 * abs(best)  # values may be negative: hours cost more than they bring
        return
    first = next((r for r in RELAXATION_ORDER if keeps[r].any()), None)
    assert menu.relaxed_rule == first
    if first is None:
        assert (menu.status, menu.items) == ("empty", ())
        assert menu.message is not None and menu.message.startswith("无法生成选学菜单")
        return
    assert menu.message is not None and menu.message.startswith("无法满足「")
    assert check_menu(menu, frame, teacher, policy, request) == []
    assert menu.status == ("relaxed" if menu.items else "empty")
    broken = check_menu(dataclasses.replace(menu, relaxed_rule=None), frame, teacher, policy, request)
    assert broken and all(x.startswith(f"{first}:") for x in broken)
    if first == "mandatory_topic":
        # the message names exactly the topics lost
        named = {n for group in re.findall(r"「必修专题：(.*?)」", menu.message) for n in group.split("、")}
        for t in menu_limits(teacher, policy, request).topics:
            assert (t.topic in named) != covered(frame, menu.items, t)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cases(), min_size=1, max_size=5))
def test_a_block_gets_the_menus_each_teacher_gets_alone(
    block: list[tuple[pd.DataFrame, TeacherMenuContext, Policy, MenuRequest | None]],
) -> None:
    policy = block[0][2]
    teachers = pd.DataFrame(
        {
            "teacher_id": [f"T{i}" for i in range(len(block))],
            "stage": [t.stage for _, t, _, _ in block],
            "missing_mandatory": [list(t.missing_mandatory) for _, t, _, _ in block],
            "completed": [sorted(t.completed) for _, t, _, _ in block],
        }
    )
    long = pd.concat(
        [f.assign(teacher_id=f"T{i}") for i, (f, _, _, _) in enumerate(block)], ignore_index=True
    )
    # rows in any order: grouping and ranking are the block's job
    menus, statuses = plan_menus(long.iloc[::-1], teachers, policy)
    for i, (frame, teacher, _, _) in enumerate(block):
        alone = plan_menu(frame, dataclasses.replace(teacher, teacher_id=f"T{i}"), policy)
        mine = menus[menus["teacher_id"] == f"T{i}"].sort_values("position")
        assert tuple(mine["course_id"]) == alone.items
        row = statuses.iloc[i]
        assert (row["teacher_id"], row["status"], row["message"]) == (f"T{i}", alone.status, alone.message)
