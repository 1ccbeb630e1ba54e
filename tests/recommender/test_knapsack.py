"""The menu's branch and bound: the best subset over thousands of random programmes, judged against brute force
over every subset; a search cut short falls back to the MILP, which finds a menu as good."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recommender.menu.programme as programme
from data.reference import load_policy
from recommender.knapsack import (
    CUT_SHORT,
    FEASIBILITY,
    FOUND,
    NO_MENU,
    Programme,
    Programmes,
    SearchLimit,
    best_subset,
    best_subsets,
)
from recommender.menu import TeacherMenuContext, check_menu, plan_menu, utility

MAX_ITEMS = 10


def csr(lists: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-item integer lists as (pointers, values), as Programme takes them."""
    ptr = np.zeros(len(lists) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(x) for x in lists])
    return ptr, np.array([k for x in lists for k in x], dtype=np.int64)


def items(ptr: np.ndarray, idx: np.ndarray, i: int | np.integer) -> list[int]:
    return [int(k) for k in idx[ptr[i] : ptr[i + 1]]]


@st.composite
def programmes(draw: Any) -> Programme:
    n = draw(st.integers(0, MAX_ITEMS))
    hours = np.array(
        draw(st.lists(st.sampled_from([0.0, 1.5, 2.0, 4.0, 6.0, 10.0, 16.0]), min_size=n, max_size=n))
    )
    # utility per hour falls with the rank, as in the menu, or is drawn freely (negative: worth less than its time)
    if draw(st.booleans()):
        value = utility(np.arange(n), hours)
    else:
        value = np.array(draw(st.lists(st.floats(-20, 20), min_size=n, max_size=n)))
    share = draw(st.sampled_from([0.0, 0.3, 0.5]))
    practical = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    n_caps = draw(st.integers(0, 3))
    caps = [
        tuple(draw(st.lists(st.integers(0, n_caps - 1), max_size=2, unique=True))) if n_caps else ()
        for _ in range(n)
    ]
    # prerequisites in either direction of the search order, never a cycle (always an earlier item)
    prerequisites = [
        tuple(draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True))) if i else () for i in range(n)
    ]
    (cap_ptr, cap_idx), (pre_ptr, pre_idx) = csr(caps), csr(prerequisites)
    return Programme(
        utility=value,
        hours=hours,
        hours_min=float(draw(st.sampled_from([0, 10, 20, 30]))),
        hours_max=float(draw(st.sampled_from([10, 24, 34, 40]))),
        gain=(practical - share) * hours,
        covers=np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.int64),
        need=draw(st.integers(0, 3)),
        cost=np.array(draw(st.lists(st.sampled_from([0.0, 50.0, 100.0]), min_size=n, max_size=n))),
        budget=draw(st.sampled_from([np.inf, 100.0, 200.0])),
        cap_ptr=cap_ptr,
        cap_idx=cap_idx,
        cap=draw(st.integers(1, 3)),
        pre_ptr=pre_ptr,
        pre_idx=pre_idx,
        allowed=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        | draw(st.booleans()),
    )


def feasible(p: Programme, chosen: np.ndarray) -> bool:
    """Every rule of the programme, checked one by one for a subset."""
    hours = float(p.hours[chosen].sum())
    counts = np.bincount(
        [k for i in np.flatnonzero(chosen) for k in items(p.cap_ptr, p.cap_idx, i)], minlength=1
    )
    covered = 0
    for i in np.flatnonzero(chosen):
        covered |= p.covers[i]
    return bool(
        p.allowed[chosen].all()
        and p.hours_min - FEASIBILITY <= hours <= p.hours_max + FEASIBILITY
        and p.gain[chosen].sum() >= -FEASIBILITY
        and p.cost[chosen].sum() <= p.budget + FEASIBILITY
        and counts.max() <= p.cap
        and covered & p.need == p.need
        and all(chosen[j] for i in np.flatnonzero(chosen) for j in items(p.pre_ptr, p.pre_idx, i))
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programmes())
def test_the_search_finds_the_best_subset_or_proves_there_is_none(p: Programme) -> None:
    n = len(p.utility)
    subsets = [np.array(s, dtype=bool) for s in itertools.product([False, True], repeat=n)]
    values = [float(p.utility[s].sum()) for s in subsets if feasible(p, s)]
    chosen = best_subset(p)
    if not values:
        assert chosen is None
        return
    assert chosen is not None and feasible(p, chosen)
    assert float(p.utility[chosen].sum()) == pytest.approx(max(values), rel=1e-9, abs=1e-9)


def batch(ps: list[Programme]) -> Programmes:
    """Programmes laid end to end, as a block's are."""

    def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate([np.zeros(0, dtype=dtype), *[np.asarray(a, dtype=dtype) for a in arrays]])

    def ptr(parts: list[np.ndarray]) -> np.ndarray:
        offsets = np.cumsum([0] + [int(x[-1]) for x in parts])[: len(parts)]
        return np.concatenate([[0], *[x[1:] + o for x, o in zip(parts, offsets, strict=True)]]).astype(
            np.int64
        )

    return Programmes(
        item_ptr=np.concatenate([[0], np.cumsum([len(p.hours) for p in ps])]).astype(np.int64),
        utility=cat([p.utility for p in ps], np.float64),
        hours=cat([p.hours for p in ps], np.float64),
        gain=cat([p.gain for p in ps], np.float64),
        covers=cat([p.covers for p in ps], np.int64),
        cost=cat([p.cost for p in ps], np.float64),
        allowed=cat([p.allowed for p in ps], bool),
        cap_ptr=ptr([p.cap_ptr for p in ps]),
        cap_idx=cat([p.cap_idx for p in ps], np.int64),
        pre_ptr=ptr([p.pre_ptr for p in ps]),
        pre_idx=cat([p.pre_idx for p in ps], np.int64),
        hours_min=np.array([p.hours_min for p in ps], dtype=np.float64),
        hours_max=np.array([p.hours_max for p in ps], dtype=np.float64),
        budget=np.array([p.budget for p in ps], dtype=np.float64),
        cap=np.array([p.cap for p in ps], dtype=np.float64),
        need=np.array([p.need for p in ps], dtype=np.int64),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(programmes(), max_size=6))
def test_a_batch_of_programmes_is_searched_as_each_alone(ps: list[Programme]) -> None:
    status, chosen = best_subsets(batch(ps))
    at = 0
    for k, p in enumerate(ps):
        alone = best_subset(p)
        mine = chosen[at : at + len(p.hours)]
        at += len(p.hours)
        if alone is None:
            assert status[k] == NO_MENU and not mine.any()
        else:
            assert status[k] == FOUND and np.array_equal(mine, alone)


def test_a_search_past_its_node_limit_says_so() -> None:
    n = 12
    hours = np.arange(1.0, n + 1)
    p = Programme(
        utility=utility(np.arange(n), hours),
        hours=hours,
        hours_min=20.0,
        hours_max=25.0,
        gain=np.zeros(n),
        covers=np.zeros(n, dtype=np.int64),
        need=0,
        cost=np.zeros(n),
        budget=np.inf,
        cap_ptr=np.zeros(n + 1, dtype=np.int64),
        cap_idx=np.zeros(0, dtype=np.int64),
        cap=n,
        pre_ptr=np.zeros(n + 1, dtype=np.int64),
        pre_idx=np.zeros(0, dtype=np.int64),
        allowed=np.ones(n, dtype=bool),
    )
    assert best_subset(p) is not None
    with pytest.raises(SearchLimit):
        best_subset(p, node_limit=3)
    assert best_subsets(batch([p, p]), node_limit=3)[0].tolist() == [CUT_SHORT, CUT_SHORT]


def test_a_search_cut_short_falls_back_to_the_milp(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n = 30
    frame = pd.DataFrame(
        {
            "course_id": [f"C{i:02d}" for i in range(n)],
            "score": -np.arange(n, dtype=float),
            "hours": rng.choice([4.0, 6.0, 8.0, 10.0, 12.0, 16.0], n),
            "format": "workshop",
            "practical": rng.random(n) < 0.4,
            "mandatory_topic": ["师德师风" if i % 7 == 3 else None for i in range(n)],
            "competencies": [[f"K{i % 5}"] for i in range(n)],
            "prerequisites": [[f"C{i - 4:02d}"] if i % 9 == 8 else [] for i in range(n)],
            "cost_yuan": 0.0,
        }
    )
    teacher = TeacherMenuContext("T1", "primary", ("师德师风",))
    policy = load_policy("default")
    searched = plan_menu(frame, teacher, policy)

    monkeypatch.setattr(programme, "NODE_LIMIT", 0)  # every search is cut short
    solved = plan_menu(frame, teacher, policy)
    assert searched.status == solved.status == "ok"
    assert check_menu(solved, frame, teacher, policy) == []
    value = dict(zip(frame["course_id"], utility(np.arange(n), frame["hours"].to_numpy()), strict=True))
    assert sum(value[c] for c in solved.items) == pytest.approx(
        sum(value[c] for c in searched.items), rel=1e-4
    )
