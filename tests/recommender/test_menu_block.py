"""The menu's block-wide steps against their plain readings: list cells read once per object, sums added as
numpy adds them, rows put in rank order with or without a sort."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.menu.block import _rank_order, cell_list, list_entries
from recommender.menu.compiled import _np_sum

CELL_VALUES = st.one_of(st.sampled_from(["A", "B", "", "长", "C1"]), st.none(), st.integers(0, 3))


@st.composite
def list_columns(draw: Any) -> list[object]:
    """A column of list cells, some objects repeated as a block repeats a course's cell."""
    kinds = st.sampled_from(["list", "tuple", "array", "str_array", "none", "text", "nan"])
    pool: list[object] = []
    for kind in draw(st.lists(kinds, min_size=1, max_size=6)):
        values = draw(st.lists(CELL_VALUES, max_size=4))
        if kind == "list":
            pool.append(values)
        elif kind == "tuple":
            pool.append(tuple(values))
        elif kind == "array":
            cell = np.empty(len(values), dtype=object)
            cell[:] = values
            pool.append(cell)
        elif kind == "str_array":
            pool.append(np.array([str(v) for v in values if v is not None], dtype=str))
        else:
            pool.append({"none": None, "text": "A", "nan": np.nan}[kind])
    return [pool[i] for i in draw(st.lists(st.integers(0, len(pool) - 1), max_size=12))]


@settings(max_examples=300, deadline=None)
@given(list_columns())
def test_list_entries_read_each_cell_as_cell_list_does(cells: list[object]) -> None:
    rows, values = list_entries(cells)
    expected = [(r, v) for r, cell in enumerate(cells) for v in cell_list(cell)]
    assert list(zip(rows.tolist(), values.tolist(), strict=True)) == expected
    assert all(type(v) is str for v in values)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-1e12, 1e12, allow_nan=False), st.sampled_from([-0.0, 0.0, 0.1, 1e-300])),
        max_size=400,
    )
)
def test_sums_are_added_as_numpy_adds_them(values: list[float]) -> None:
    a = np.array(values, dtype=np.float64)
    got, expected = _np_sum(a), a.sum()
    assert got == expected and np.signbit(got) == np.signbit(expected)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.sampled_from([0.5, 1.0, 1.0, np.nan]), st.sampled_from(["C1", "C2", "C3"])
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_rows_come_in_rank_order_sorted_or_already_so(
    rows: list[tuple[int, float, str]], presort: bool
) -> None:
    frame = pd.DataFrame(rows, columns=["teacher", "score", "course_id"])
    if presort:  # as the batch's ranked pool arrives
        frame = frame.assign(neg=np.nan_to_num(-frame["score"], nan=np.inf))
        frame = frame.sort_values(["teacher", "neg", "course_id"], kind="stable").drop(columns="neg")
    tpos = frame["teacher"].to_numpy(dtype=np.int64)
    score = frame["score"].to_numpy(dtype=np.float64)
    ids = frame["course_id"].to_numpy(dtype=object)
    order = _rank_order(frame, tpos, score, ids)
    tie = pd.factorize(ids, sort=True)[0]
    expected = np.lexsort((tie, np.nan_to_num(-score, nan=np.inf), tpos))
    assert order.tolist() == expected.tolist()
