"""Every relaxable menu rule has all its faces (the index in the docstring of recommender/menu/__init__.py): a
MILP row, a sentence for when it is relaxed, and a check — a rule added to RULES without one of them fails here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from data.policy import FORMATS, Policy
from data.reference import load_policy
from recommender.menu import (
    RELAXATION_ORDER,
    Menu,
    MenuLimits,
    TeacherMenuContext,
    check_menu,
    menu_limits,
)
from recommender.menu.block import TeacherSlice
from recommender.menu.programme import milp_rows, why

ETHICS = "师德师风"
TEACHER = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS,))


def strict_policy() -> Policy:
    """Every relaxable rule in force: 50–60 学时, practical ≥ 50 %, 师德师风 owed, a budget, workshops only,
    one course per competency."""
    return dataclasses.replace(
        load_policy("default"), budget_yuan=100.0, allowed_formats=("workshop",), max_courses_per_competency=1
    )


def limits() -> MenuLimits:
    return menu_limits(TEACHER, strict_policy())


def candidates() -> TeacherSlice:
    """Four 20-学时 offline courses on one competency, one of them on 师德师风, none practical, 100 元 each."""
    n = 4
    return TeacherSlice(
        ids=np.array([f"C{i}" for i in range(n)], dtype=object),
        utility=np.ones(n),
        hours=np.full(n, 20.0),
        fmt=np.full(n, FORMATS.index("offline")),
        practical=np.zeros(n, dtype=bool),
        topic=np.array([ETHICS, "", "", ""], dtype=object),
        cost=np.full(n, 100.0),
        comp_of=np.arange(n),
        comp_code=np.zeros(n, dtype=np.int64),
        comp_names=np.array(["K1"], dtype=object),
        dep=np.zeros(0, dtype=np.int64),
        pre=np.zeros(0, dtype=np.int64),
        usable=np.ones(n, dtype=bool),
    )


def test_the_strict_policy_has_every_relaxable_rule_in_force() -> None:
    lim = limits()
    assert lim.topics and lim.practical_share > 0 and lim.budget_yuan is not None
    assert lim.max_per_competency is not None and set(lim.formats) != set(FORMATS)


@pytest.mark.parametrize("code", RELAXATION_ORDER)
def test_every_relaxable_rule_has_a_milp_row_that_may_be_relaxed(code: str) -> None:
    sl = candidates()
    rows = [r for r in milp_rows(sl, np.ones(len(sl.ids), dtype=bool), limits()) if r.code == code]
    assert rows and any(r.slack_sign != 0 for r in rows)


@pytest.mark.parametrize("code", RELAXATION_ORDER)
def test_every_relaxable_rule_explains_itself_with_its_label(code: str) -> None:
    sl, lim = candidates(), limits()
    chosen = np.array([False, True, True, True])  # 60 学时, no ethics course, over budget, crowded
    topic = ETHICS if code == "mandatory_topic" else ""
    assert why(code, sl, chosen, lim).startswith(f"无法满足「{lim.label(code, topic)}」：")


def test_every_relaxable_rule_is_checked() -> None:
    """A menu that breaks every rule: 80 学时 offline, nothing practical, no 师德师风, 200 元, one competency."""
    frame = pd.DataFrame(
        {
            "course_id": ["C1", "C2"],
            "hours": [70.0, 10.0],
            "format": ["offline", "offline"],
            "practical": [False, False],
            "mandatory_topic": [None, None],
            "competencies": [["K1"], ["K1"]],
            "prerequisites": [[], []],
            "cost_yuan": [200.0, 0.0],
        }
    )
    menu = Menu("T1", ("C1", "C2"), (70.0, 10.0), 80.0, 0.0, 200.0, "ok")
    broken = {problem.split(":")[0] for problem in check_menu(menu, frame, TEACHER, strict_policy())}
    assert set(RELAXATION_ORDER) <= broken
