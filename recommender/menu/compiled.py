"""Compiled steps over a whole candidate block: which candidates each teacher may use and the programme sees, the
side rules of the branch and bound, and the menus' order and sums. One call each per block; one teacher
(plan_menu) is a block of one."""

from __future__ import annotations

import numpy as np
from numba import njit


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
def candidates(
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
def side_rules(
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
def menus_of(
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
