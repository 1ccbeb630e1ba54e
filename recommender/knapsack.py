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
from typing import Final, NamedTuple

import numpy as np
from numba import njit

# Nodes a search may visit (some 10 ms) before the caller falls back to the MILP.
NODE_LIMIT: Final = 200_000
# Slack on every bound, as the MILP solver's feasibility tolerance.
FEASIBILITY: Final = 1e-6


_FOUND, _NONE, _LIMIT = 0, 1, 2


class SearchLimit(Exception):
    """The search visited NODE_LIMIT nodes without settling."""


@dataclass(frozen=True)
class Programme:
    """One teacher's menu programme over n items (courses), every rule hard.

    ``gain``: (practical − share) × hours, which must sum to ≥ 0; ``covers``: per item, a bit per owed
    topic it covers, ``need`` the bits that must be covered; ``caps``: per item, the capped competencies it
    uses (indices into a count of at most ``cap`` each); ``prerequisites``: per item, the items it needs;
    ``allowed``: the items that may be taken at all."""

    utility: np.ndarray
    hours: np.ndarray
    hours_min: float
    hours_max: float
    gain: np.ndarray
    covers: list[int]
    need: int
    cost: np.ndarray
    budget: float
    caps: list[tuple[int, ...]]
    cap: int
    prerequisites: list[tuple[int, ...]]
    allowed: np.ndarray


# Multipliers of the practical rule tried for the Lagrangian bound, in units of the largest utility per hour.
MULTIPLIERS: Final = np.concatenate([[0.0], np.geomspace(1e-3, 20.0, 40)])


class _Greedy(NamedTuple):
    """The greedy (LP) fill by value per hour of the items searched at depth i or later, for every depth i:
    row i of ``cum_h`` / ``cum_v`` holds prefix sums over one order of the items (0 for an item searched
    earlier), ``density`` the value per hour along that order."""

    cum_h: np.ndarray  # (n + 1, n + 1)
    cum_v: np.ndarray
    density: np.ndarray  # (n,)


def _greedy(depth: np.ndarray, value: np.ndarray, hours: np.ndarray) -> _Greedy:
    n = len(value)
    density = np.divide(value, hours, out=np.full(n, np.inf), where=hours > 0)
    order = np.lexsort((np.arange(n), -density))
    take = (depth[order][None, :] >= np.arange(n + 1)[:, None]) & (value[order] > 0)[None, :]
    zero = np.zeros((n + 1, 1))
    return _Greedy(
        cum_h=np.hstack([zero, np.cumsum(hours[order] * take, axis=1)]),
        cum_v=np.hstack([zero, np.cumsum(value[order] * take, axis=1)]),
        density=np.where(np.isfinite(density[order]), density[order], 0.0),
    )


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


def _multiplier(u: np.ndarray, h: np.ndarray, g: np.ndarray, room: float) -> float:
    """The multiplier of the practical rule (sum of gain >= 0) whose Lagrangian LP bound on the whole
    programme is least, among MULTIPLIERS; 0 when no item can lose the rule."""
    if not (g < 0).any() or not len(u):
        return 0.0
    scale = float(np.max(np.divide(u, h, out=np.zeros(len(u)), where=h > 0), initial=0.0))
    lam = MULTIPLIERS * max(scale, 1e-12)
    v = u[None, :] + lam[:, None] * g[None, :]
    density = np.divide(v, h[None, :], out=np.full(v.shape, np.inf), where=h[None, :] > 0)
    order = np.argsort(-density, axis=1, kind="stable")
    vs = np.take_along_axis(v, order, axis=1)
    hs = np.take_along_axis(np.broadcast_to(h, v.shape), order, axis=1) * (vs > 0)
    vs = np.maximum(vs, 0.0)
    cum_h, cum_v = np.cumsum(hs, axis=1), np.cumsum(vs, axis=1)
    fits = cum_h <= room
    whole = np.where(fits, cum_v, 0.0).max(axis=1, initial=0.0)
    m = fits.sum(axis=1)  # the first item that does not fit whole
    inside = m < len(u)
    at = np.minimum(m, len(u) - 1)
    used = np.where(m > 0, np.take_along_axis(cum_h, np.maximum(m - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    part = np.take_along_axis(np.where(np.isfinite(density), density, 0.0), order, axis=1)
    extra = np.where(inside, (room - used) * np.take_along_axis(part, at[:, None], axis=1)[:, 0], 0.0)
    return float(lam[np.argmin(whole + np.maximum(extra, 0.0))])


def _csr(
    lists: list[tuple[int, ...]], order: np.ndarray, remap: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item integer lists, in search order, as (pointers, values); values mapped through ``remap``."""
    sizes = np.array([len(lists[j]) for j in order], dtype=np.int64)
    flat = np.array([k for j in order for k in lists[j]], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), flat if remap is None else remap[flat]


def best_subset(p: Programme, node_limit: int = NODE_LIMIT) -> np.ndarray | None:
    """The items of the most useful menu keeping every rule (bool over the items), or None when none exists.
    Raises SearchLimit past ``node_limit`` nodes.

    Two bounds prune the search: the greedy fill of the remaining hours by utility per hour, and the same with
    the practical rule moved into the objective (utility + λ × gain, λ ≥ 0 chosen at the root), which holds
    for any menu that keeps the rule. Items are searched in the order of the second."""
    n = len(p.utility)
    # an item that may not be taken counts for nothing in the bounds
    allowed = np.asarray(p.allowed, dtype=bool)
    h = np.where(allowed, np.asarray(p.hours, dtype=np.float64), 0.0)
    u = np.where(allowed, np.asarray(p.utility, dtype=np.float64), 0.0)
    g = np.where(allowed, np.asarray(p.gain, dtype=np.float64), 0.0)
    lam = _multiplier(u, h, g, p.hours_max)
    lagrangian = u + lam * g
    density = np.divide(lagrangian, h, out=np.full(n, np.inf), where=h > 0)
    order = np.lexsort((np.arange(n), -density))
    at = np.empty(n, dtype=np.int64)
    at[order] = np.arange(n)
    plain, moved = _greedy(at, u, h), _greedy(at, lagrangian, h)
    cover = np.where(allowed, np.asarray(p.covers, dtype=np.int64), 0)[order]
    cap_ptr, cap_idx = _csr(p.caps, order, None)
    pre_ptr, pre_at = _csr(p.prerequisites, order, at)
    status, taken = _search(
        h[order],
        u[order],
        g[order],
        np.asarray(p.cost, dtype=np.float64)[order],
        cover,
        allowed[order],
        cap_ptr,
        cap_idx,
        pre_ptr,
        pre_at,
        plain,
        moved,
        lam,
        (p.hours_min, p.hours_max, p.budget, float(p.cap)),
        p.need,
        node_limit,
    )
    if status == _LIMIT:
        raise SearchLimit
    if status == _NONE:
        return None
    chosen = np.zeros(n, dtype=bool)
    chosen[order[taken]] = True
    return chosen


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
    for i in range(n - 1, -1, -1):
        suffix_h[i] = suffix_h[i + 1] + h[i]
        suffix_gain[i] = suffix_gain[i + 1] + max(g[i], 0.0)
        suffix_cover[i] = suffix_cover[i + 1] | cover[i]
    hours, value, gain = np.zeros(n + 1), np.zeros(n + 1), np.zeros(n + 1)
    cost, uncovered = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    uncovered[0] = need
    stage = np.zeros(n + 1, dtype=np.int64)
    taken = np.zeros(n, dtype=np.bool_)
    best = np.zeros(n, dtype=np.bool_)
    forced = np.zeros(n, dtype=np.int64)
    count = np.zeros(max(len(cap_idx), 1), dtype=np.int64)
    best_value, found, nodes, i = -np.inf, False, 0, 0
    while i >= 0:
        if stage[i] == 0:
            nodes += 1
            if nodes > node_limit:
                return _LIMIT, best
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
            if (
                hours[i] + suffix_h[i] < hmin - tol
                or (uncovered[i] & ~suffix_cover[i]) != 0
                or gain[i] + suffix_gain[i] < -tol
                or value[i] + _bound(plain_h, plain_v, plain_d, i, room) <= best_value + eps
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
    return (_FOUND if found else _NONE), best


def _search(
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
    plain: _Greedy,
    moved: _Greedy,
    lam: float,
    limits: tuple[float, float, float, float],
    need: int,
    node_limit: int,
) -> tuple[int, np.ndarray]:
    status, taken = _dfs(
        h,
        u,
        g,
        c,
        cover,
        ok,
        cap_ptr,
        cap_idx,
        pre_ptr,
        pre_at,
        *plain,
        *moved,
        lam,
        *limits,
        need,
        node_limit,
    )
    return int(status), np.asarray(taken, dtype=bool)
