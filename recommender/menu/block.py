"""Candidate blocks: one teacher's or many teachers' ranked candidates as aligned arrays, rows grouped by teacher
and in rank order within each, so that a teacher is a slice and the per-teacher loop touches no DataFrame; and
what a course adds to a menu (utility)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from data.policy import FORMATS


@dataclass(frozen=True)
class Block:
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


# What an hour of the teacher's time costs, in the DCG weight of an hour: the weight of the second-ranked course.
# Only the top course is worth more than the time it takes; every other hour is spent only as far as the
# hours rule asks, so a menu stops as close above the target as course sizes allow (the maximum is a ceiling).
HOUR_PRICE: Final = 1.0 / np.log2(3.0)


def repeats(teacher: np.ndarray, topic: np.ndarray) -> np.ndarray:
    """Bool per row (rows by teacher, in rank order): a course of a mandatory topic (non-empty) that a
    better-ranked course of the same teacher already covers."""
    topic = np.asarray(topic, dtype=object)
    has = np.array([isinstance(t, str) and t != "" for t in topic], dtype=bool)
    key = (
        pd.Series(np.asarray(teacher).astype(str), dtype=object)
        + "\x1f"
        + pd.Series(topic, dtype=object).astype(str)
    )
    return has & key.duplicated().to_numpy()


def utility(rank: np.ndarray, hours: np.ndarray, repeat: np.ndarray | None = None) -> np.ndarray:
    """What a course adds to a menu: its hours times (the DCG weight 1 / log2(rank + 2) of its 0-based rank minus
    HOUR_PRICE) — the benefit of the teacher's hours less what those hours cost.

    Ranker scores are only comparable within one list, so the rank is used, not the score. Each 学时 is worth
    the weight of the course it is spent on, so the hours go to the best-ranked courses; weighting courses
    instead of hours would pack the window with short courses from deep in the list. The price makes every
    course but the first cost more than it brings: the menu takes the fewest hours the rules allow, spent on
    the best courses (benefit per hour, in Lagrangian form). A `repeat` (see `repeats`) is worth no more than
    its time costs, so a menu spreads over topics: no second course of one mandatory topic unless no menu
    without it keeps the rules.
    """
    weight = 1.0 / np.log2(np.asarray(rank, dtype=np.float64) + 2.0)
    if repeat is not None:
        # a second course of one mandatory topic is worth nothing more: taken only if no other menu keeps the rules
        weight = np.where(repeat, 0.0, weight)
    return np.asarray(hours, dtype=np.float64) * (weight - HOUR_PRICE)


def cell_list(cell: object) -> list[str]:
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
    """The elements of list cells end to end, read as cell_list reads them (object array of str), and how many
    each cell has. A one-dimensional object array is read in one pass with the others; any other cell alone."""
    parts = [
        c
        if isinstance(c, np.ndarray) and c.ndim == 1 and c.dtype == object
        else np.array(cell_list(c), dtype=object)
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


def list_entries(cells: Sequence[object] | pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def candidate_block(
    cands: pd.DataFrame,
    teacher_pos: np.ndarray,
    n_teachers: int,
    completed_pos: np.ndarray,
    completed_ids: np.ndarray,
) -> Block:
    """Arrays for the candidates of ``n_teachers`` teachers; ``teacher_pos`` gives each row's teacher and
    (``completed_pos``, ``completed_ids``) the courses each teacher completed."""
    score = cands["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    tpos = np.asarray(teacher_pos, dtype=np.int64)
    ids = _strings(cands["course_id"].to_numpy(dtype=object))
    order = _rank_order(cands, tpos, score, ids)
    tpos, ids = tpos[order], ids[order]
    comp_rows, comp_values = list_entries(cands["competencies"].to_numpy(dtype=object)[order])
    pre_rows, pre_ids = list_entries(cands["prerequisites"].to_numpy(dtype=object)[order])
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
    return Block(
        start=start,
        course_id=ids,
        utility=utility(np.arange(len(ids)) - start[tpos], hours, repeats(tpos, topic_names[topic_code])),
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
class TeacherSlice:
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


def teacher_slice(block: Block, t: int, usable: np.ndarray) -> TeacherSlice:
    """Teacher t's candidates, ``usable`` over them."""
    s, e = int(block.start[t]), int(block.start[t + 1])
    cs, ce = block.comp_ptr[s], block.comp_ptr[e]
    ps, pe = block.pre_ptr[s], block.pre_ptr[e]
    owed = ~block.pre_done[ps:pe]
    pre_at = block.pre_at[ps:pe][owed]
    return TeacherSlice(
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
