"""Exact depth-first branch and bound for one menu when no rule is relaxed: a 0-1 knapsack on hours (a window,
not just a capacity) with the menu's side rules. It settles a typical teacher in well under a millisecond,
where a general MILP solver spends most of its time setting up; `recommender.menu` falls back to the MILP
when the search passes its node limit.

The bounds are greedy (Dantzig) fills of the remaining hours, the last item fractional: LP bounds of the
hours-only relaxation, one bisection over prefix sums per node. The practical rule, which makes the plain
bound weak, is moved into the second bound's objective with a Lagrange multiplier. Ties keep the first menu
found; the search tries taking an item before leaving it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numba import njit

# Nodes a search may visit (some 10 ms) before the caller falls back to the MILP.
NODE_LIMIT: Final = 200_000
# Slack on every bound, as the MILP solver's feasibility tolerance.
FEASIBILITY: Final = 1e-6


# Outcome of one search: the best menu found, no menu keeps every rule, the search passed its node limit.
FOUND, NO_MENU, CUT_SHORT = 0, 1, 2


class SearchLimit(Exception):
    """The search visited NODE_LIMIT nodes without settling."""


@dataclass(frozen=True)
class Programme:
    """One teacher's menu programme over n items (courses), every rule hard.

    ``gain``: (practical − share) × hours, which must sum to ≥ 0; ``covers``: per item, a bit per owed
    topic it covers, ``need`` the bits that must be covered; ``cap_ptr``/``cap_idx``: per item (as CSR), the
    capped competencies it uses (indices into a count of at most ``cap`` each); ``pre_ptr``/``pre_idx``: per
    item (as CSR), the items it needs;
    ``allowed``: the items that may be taken at all."""

    utility: np.ndarray
    hours: np.ndarray
    hours_min: float
    hours_max: float
    gain: np.ndarray
    covers: np.ndarray
    need: int
    cost: np.ndarray
    budget: float
    cap_ptr: np.ndarray
    cap_idx: np.ndarray
    cap: int
    pre_ptr: np.ndarray
    pre_idx: np.ndarray
    allowed: np.ndarray


# Multipliers of the practical rule tried for the Lagrangian bound, in units of the largest utility per hour.
MULTIPLIERS: Final = np.concatenate([[0.0], np.geomspace(1e-3, 20.0, 40)])


@njit(cache=True)
def _by_density(value: np.ndarray, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items by value per hour, highest first (an item without hours first; ties by position), and the value
    per hour along that order (0 for an item without hours)."""
    n = len(value)
    key = np.empty(n)
    for j in range(n):
        key[j] = -value[j] / hours[j] if hours[j] > 0 else -np.inf
    order = np.argsort(key, kind="mergesort")
    density = np.zeros(n)
    for k in range(n):
        j = order[k]
        density[k] = value[j] / hours[j] if hours[j] > 0 else 0.0
    return order, density


@njit(cache=True)
def _greedy(
    depth: np.ndarray, value: np.ndarray, hours: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The greedy (LP) fill by value per hour of the items searched at depth i or later, for every depth i: row
    i of ``cum_h`` / ``cum_v`` holds prefix sums along one order of the items (an item searched earlier, or of
    no value, adds 0), and ``density`` the value per hour along that order."""
    n = len(value)
    order, density = _by_density(value, hours)
    cum_h = np.zeros((n + 1, n + 1))
    cum_v = np.zeros((n + 1, n + 1))
    for i in range(n + 1):
        for k in range(n):
            j = order[k]
            take = depth[j] >= i and value[j] > 0
            cum_h[i, k + 1] = cum_h[i, k] + (hours[j] if take else 0.0)
            cum_v[i, k + 1] = cum_v[i, k] + (value[j] if take else 0.0)
    return cum_h, cum_v, density


@njit(cache=True)
def _bound(cum_h: np.ndarray, cum_v: np.ndarray, density: np.ndarray, i: int, room: float) -> float:
    """Greedy fill of ``room`` hours with the items searched at depth i or later, the last one in part."""
    room = max(room, 0.0)
    lo, hi = 0, cum_h.shape[1] - 1  # the last m with cum_h[i, m] <= room (cum_h[i, 0] = 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cum_h[i, mid] <= room:
            lo = mid
        else:
            hi = mid - 1
    # cum_h[i, lo + 1] > room: the item at lo is searched later, has hours, and is taken in part
    extra = (room - cum_h[i, lo]) * density[lo] if lo < len(density) else 0.0
    return float(cum_v[i, lo] + extra)


@njit(cache=True)
def _root_bound(value: np.ndarray, hours: np.ndarray, room: float) -> float:
    """``_bound`` at depth 0 (every item, the greedy fill of ``room`` hours), without the per-depth tables."""
    order, density = _by_density(value, hours)
    room = max(room, 0.0)
    filled, total = 0.0, 0.0
    for k in range(len(order)):
        j = order[k]
        if value[j] <= 0:
            continue
        if filled + hours[j] > room:
            return total + (room - filled) * density[k]
        filled += hours[j]
        total += value[j]
    return total


@njit(cache=True)
def _multiplier(u: np.ndarray, h: np.ndarray, g: np.ndarray, room: float, multipliers: np.ndarray) -> float:
    """The multiplier of the practical rule (sum of gain >= 0) whose Lagrangian LP bound on the whole
    programme is least, among ``multipliers`` (in units of the largest utility per hour); 0 when no item can
    lose the rule."""
    n = len(u)
    if n == 0 or g.min() >= 0:
        return 0.0
    scale = 1e-12
    for j in range(n):
        if h[j] > 0:
            scale = max(scale, u[j] / h[j])
    best, best_lam = np.inf, 0.0
    for m in multipliers:
        lam = m * scale
        bound = _root_bound(u + lam * g, h, room)
        if bound < best:
            best, best_lam = bound, lam
    return best_lam


@njit(cache=True)
def _run(
    h: np.ndarray,
    u: np.ndarray,
    g: np.ndarray,
    c: np.ndarray,
    cover: np.ndarray,
    ok: np.ndarray,
    cap_ptr: np.ndarray,
    cap_idx: np.ndarray,
    pre_ptr: np.ndarray,
    pre_idx: np.ndarray,
    hmin: float,
    hmax: float,
    budget: float,
    cap: float,
    need: int,
    node_limit: int,
    multipliers: np.ndarray,
) -> tuple[int, np.ndarray]:
    """best_subset on arrays in item order (lists as CSR): the search set up in search order, the answer back
    in item order."""
    n = len(h)
    h = np.where(ok, h, 0.0)
    u = np.where(ok, u, 0.0)
    g = np.where(ok, g, 0.0)
    lam = _multiplier(u, h, g, hmax, multipliers)
    lagrangian = u + lam * g
    order, _ = _by_density(lagrangian, h)
    at = np.empty(n, dtype=np.int64)
    at[order] = np.arange(n)
    plain_h, plain_v, plain_d = _greedy(at, u, h)
    moved_h, moved_v, moved_d = _greedy(at, lagrangian, h)
    o_cap_ptr = np.zeros(n + 1, dtype=np.int64)
    o_pre_ptr = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        j = order[k]
        o_cap_ptr[k + 1] = o_cap_ptr[k] + cap_ptr[j + 1] - cap_ptr[j]
        o_pre_ptr[k + 1] = o_pre_ptr[k] + pre_ptr[j + 1] - pre_ptr[j]
    o_cap_idx = np.empty(len(cap_idx), dtype=np.int64)
    o_pre_at = np.empty(len(pre_idx), dtype=np.int64)
    for k in range(n):
        j = order[k]
        for e in range(cap_ptr[j + 1] - cap_ptr[j]):
            o_cap_idx[o_cap_ptr[k] + e] = cap_idx[cap_ptr[j] + e]
        for e in range(pre_ptr[j + 1] - pre_ptr[j]):
            o_pre_at[o_pre_ptr[k] + e] = at[pre_idx[pre_ptr[j] + e]]
    status, taken = _dfs(
        h[order],
        u[order],
        g[order],
        c[order],
        np.where(ok, cover, 0)[order],
        ok[order],
        o_cap_ptr,
        o_cap_idx,
        o_pre_ptr,
        o_pre_at,
        plain_h,
        plain_v,
        plain_d,
        moved_h,
        moved_v,
        moved_d,
        lam,
        hmin,
        hmax,
        budget,
        cap,
        need,
        node_limit,
    )
    chosen = np.zeros(n, dtype=np.bool_)
    for k in range(n):
        chosen[order[k]] = taken[k]
    return status, chosen


@dataclass(frozen=True)
class Programmes:
    """Many programmes (a block's teachers) in flat arrays, searched in one compiled call.

    Programme k owns items ``item_ptr[k]`` to ``item_ptr[k + 1]``; the per-item arrays are Programme's, laid
    end to end. ``cap_ptr``/``pre_ptr`` (N + 1) index the capped competencies / prerequisites of every item,
    ``pre_idx`` holding positions within the item's own programme; the limits are per programme."""

    item_ptr: np.ndarray
    utility: np.ndarray
    hours: np.ndarray
    gain: np.ndarray
    covers: np.ndarray
    cost: np.ndarray
    allowed: np.ndarray
    cap_ptr: np.ndarray
    cap_idx: np.ndarray
    pre_ptr: np.ndarray
    pre_idx: np.ndarray
    hours_min: np.ndarray
    hours_max: np.ndarray
    budget: np.ndarray
    cap: np.ndarray
    need: np.ndarray


def programmes_of(p: Programme) -> Programmes:
    """One programme as a batch of one."""
    return Programmes(
        item_ptr=np.array([0, len(p.hours)], dtype=np.int64),
        utility=p.utility,
        hours=p.hours,
        gain=p.gain,
        covers=p.covers,
        cost=p.cost,
        allowed=p.allowed,
        cap_ptr=p.cap_ptr,
        cap_idx=p.cap_idx,
        pre_ptr=p.pre_ptr,
        pre_idx=p.pre_idx,
        hours_min=np.array([p.hours_min], dtype=np.float64),
        hours_max=np.array([p.hours_max], dtype=np.float64),
        budget=np.array([p.budget], dtype=np.float64),
        cap=np.array([p.cap], dtype=np.float64),
        need=np.array([p.need], dtype=np.int64),
    )


def best_subsets(p: Programmes, node_limit: int = NODE_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """best_subset for every programme of the batch: each one's outcome (FOUND, NO_MENU or CUT_SHORT) and the
    items chosen (bool over all items; set only where FOUND)."""
    f64, i64 = np.float64, np.int64
    return _run_all(
        np.asarray(p.item_ptr, dtype=i64),
        np.asarray(p.hours, dtype=f64),
        np.asarray(p.utility, dtype=f64),
        np.asarray(p.gain, dtype=f64),
        np.asarray(p.cost, dtype=f64),
        np.asarray(p.covers, dtype=i64),
        np.asarray(p.allowed, dtype=bool),
        np.asarray(p.cap_ptr, dtype=i64),
        np.asarray(p.cap_idx, dtype=i64),
        np.asarray(p.pre_ptr, dtype=i64),
        np.asarray(p.pre_idx, dtype=i64),
        np.asarray(p.hours_min, dtype=f64),
        np.asarray(p.hours_max, dtype=f64),
        np.asarray(p.budget, dtype=f64),
        np.asarray(p.cap, dtype=f64),
        np.asarray(p.need, dtype=i64),
        int(node_limit),
        MULTIPLIERS,
    )


def best_subset(p: Programme, node_limit: int = NODE_LIMIT) -> np.ndarray | None:
    """The items of the most useful menu keeping every rule (bool over the items), or None when none exists.
    Raises SearchLimit past ``node_limit`` nodes.

    Two bounds prune the search: the greedy fill of the remaining hours by utility per hour, and the same with
    the practical rule moved into the objective (utility + λ × gain, λ ≥ 0 chosen at the root), which holds
    for any menu that keeps the rule; an item that may not be taken counts for nothing in either. Items are
    searched in the order of the second."""
    status, chosen = best_subsets(programmes_of(p), node_limit)
    if status[0] == CUT_SHORT:
        raise SearchLimit
    return None if status[0] == NO_MENU else np.asarray(chosen, dtype=bool)


@njit(cache=True)
def _run_all(
    item_ptr: np.ndarray,
    h: np.ndarray,
    u: np.ndarray,
    g: np.ndarray,
    c: np.ndarray,
    cover: np.ndarray,
    ok: np.ndarray,
    cap_ptr: np.ndarray,
    cap_idx: np.ndarray,
    pre_ptr: np.ndarray,
    pre_idx: np.ndarray,
    hmin: np.ndarray,
    hmax: np.ndarray,
    budget: np.ndarray,
    cap: np.ndarray,
    need: np.ndarray,
    node_limit: int,
    multipliers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """_run for every programme of a batch (see Programmes)."""
    status = np.empty(len(item_ptr) - 1, dtype=np.int64)
    chosen = np.zeros(len(h), dtype=np.bool_)
    for k in range(len(item_ptr) - 1):
        a, b = item_ptr[k], item_ptr[k + 1]
        found, taken = _run(
            h[a:b],
            u[a:b],
            g[a:b],
            c[a:b],
            cover[a:b],
            ok[a:b],
            cap_ptr[a : b + 1] - cap_ptr[a],
            cap_idx[cap_ptr[a] : cap_ptr[b]],
            pre_ptr[a : b + 1] - pre_ptr[a],
            pre_idx[pre_ptr[a] : pre_ptr[b]],
            hmin[k],
            hmax[k],
            budget[k],
            cap[k],
            need[k],
            node_limit,
            multipliers,
        )
        status[k] = found
        chosen[a:b] = taken
    return status, chosen


@njit(cache=True)
def _dfs(
    h: np.ndarray,
    u: np.ndarray,
    g: np.ndarray,
    c: np.ndarray,
    cover: np.ndarray,
    ok: np.ndarray,
    cap_ptr: np.ndarray,
    cap_idx: np.ndarray,
    pre_ptr: np.ndarray,
    pre_at: np.ndarray,
    plain_h: np.ndarray,
    plain_v: np.ndarray,
    plain_d: np.ndarray,
    moved_h: np.ndarray,
    moved_v: np.ndarray,
    moved_d: np.ndarray,
    lam: float,
    hmin: float,
    hmax: float,
    budget: float,
    cap: float,
    need: int,
    node_limit: int,
) -> tuple[int, np.ndarray]:
    """Depth-first search, iterative: depth i decides item i; ``stage[i]`` is 0 on entry, 1 once the take
    branch is done (or impossible), 2 once the leave branch is."""
    n, tol, eps = len(h), FEASIBILITY, 1e-9
    suffix_h = np.zeros(n + 1)
    suffix_gain = np.zeros(n + 1)
    suffix_cover = np.zeros(n + 1, dtype=np.int64)
    # items of no value (a price per hour makes most of them so) still count toward the minimum hours: a
    # completion short of hmin by more than the valuable items' hours pays at least the best price per hour
    suffix_pos_h = np.zeros(n + 1)
    suffix_neg_d = np.full(n + 1, -np.inf)
    for i in range(n - 1, -1, -1):
        suffix_h[i] = suffix_h[i + 1] + h[i]
        suffix_gain[i] = suffix_gain[i + 1] + max(g[i], 0.0)
        suffix_cover[i] = suffix_cover[i + 1] | cover[i]
        suffix_pos_h[i] = suffix_pos_h[i + 1] + (h[i] if u[i] > 0 else 0.0)
        suffix_neg_d[i] = (
            max(suffix_neg_d[i + 1], u[i] / h[i]) if (u[i] <= 0 and h[i] > 0) else suffix_neg_d[i + 1]
        )
    hours, value, gain = np.zeros(n + 1), np.zeros(n + 1), np.zeros(n + 1)
    cost, uncovered = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    uncovered[0] = need
    stage = np.zeros(n + 1, dtype=np.int64)
    taken = np.zeros(n, dtype=np.bool_)
    best = np.zeros(n, dtype=np.bool_)
    forced = np.zeros(n, dtype=np.int64)
    count = np.zeros(cap_idx.max() + 1 if len(cap_idx) else 1, dtype=np.int64)
    best_value, found, nodes, i = -np.inf, False, 0, 0
    while i >= 0:
        if stage[i] == 0:
            nodes += 1
            if nodes > node_limit:
                return CUT_SHORT, best
            stage[i] = 1
            if i == n:
                if (
                    hours[i] >= hmin - tol
                    and gain[i] >= -tol
                    and uncovered[i] == 0
                    and value[i] > best_value + eps
                ):
                    best_value, found = value[i], True
                    best[:] = taken
                stage[i] = 0
                i -= 1
                continue
            room = hmax - hours[i]
            lack = hmin - hours[i] - suffix_pos_h[i]
            priced = lack * suffix_neg_d[i] if lack > 0 and suffix_neg_d[i] > -np.inf else 0.0
            if (
                hours[i] + suffix_h[i] < hmin - tol
                or (uncovered[i] & ~suffix_cover[i]) != 0
                or gain[i] + suffix_gain[i] < -tol
                or value[i] + _bound(plain_h, plain_v, plain_d, i, room) + priced <= best_value + eps
                or value[i] + lam * gain[i] + _bound(moved_h, moved_v, moved_d, i, room) <= best_value + eps
            ):
                stage[i] = 0
                i -= 1
                continue
            can = ok[i] and hours[i] + h[i] <= hmax + tol and cost[i] + c[i] <= budget + tol
            for e in range(cap_ptr[i], cap_ptr[i + 1]):
                can = can and count[cap_idx[e]] < cap
            for e in range(pre_ptr[i], pre_ptr[i + 1]):
                can = can and (pre_at[e] > i or taken[pre_at[e]])
            if can:
                taken[i] = True
                for e in range(cap_ptr[i], cap_ptr[i + 1]):
                    count[cap_idx[e]] += 1
                for e in range(pre_ptr[i], pre_ptr[i + 1]):
                    if pre_at[e] > i:
                        forced[pre_at[e]] += 1
                hours[i + 1], value[i + 1] = hours[i] + h[i], value[i] + u[i]
                gain[i + 1], cost[i + 1] = gain[i] + g[i], cost[i] + c[i]
                uncovered[i + 1] = uncovered[i] & ~cover[i]
                i += 1
            continue
        if stage[i] == 1:
            if taken[i]:
                taken[i] = False
                for e in range(cap_ptr[i], cap_ptr[i + 1]):
                    count[cap_idx[e]] -= 1
                for e in range(pre_ptr[i], pre_ptr[i + 1]):
                    if pre_at[e] > i:
                        forced[pre_at[e]] -= 1
            stage[i] = 2
            if forced[i] == 0:
                hours[i + 1], value[i + 1], gain[i + 1] = hours[i], value[i], gain[i]
                cost[i + 1], uncovered[i + 1] = cost[i], uncovered[i]
                i += 1
            continue
        stage[i] = 0
        i -= 1
    return (FOUND if found else NO_MENU), best
