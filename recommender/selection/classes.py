"""Classes (50人编班): size-constrained k-means on the trainees' need profiles, and the spread that measures
it against a split by hand."""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy.optimize import linear_sum_assignment

CLASS_ITERATIONS: Final = 15
EXCHANGE_PASSES: Final = 50
# rosters up to this size are matched to seats exactly (well under a second)
EXACT_MATCHING: Final = 600
RANDOM_SPLITS: Final = 20


def class_sizes(n: int, class_size: int) -> np.ndarray:
    """The fewest classes of at most ``class_size`` that hold ``n`` trainees, sizes differing by at most one
    (360 trainees in classes of 50: eight classes of 45, not seven of 50 and one of 10)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = -(-n // class_size)
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return sizes


def _seats_by_group(groups: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(G, k) seats of each group in each class such that every class is full and every group is spread as
    evenly as it can be: deal the trainees, ordered by group, round the classes like cards."""
    order = np.argsort(groups, kind="stable")
    k = len(sizes)
    dealt = np.empty(len(groups), dtype=np.int64)
    # the i-th card goes to class i mod k; classes that take one card fewer are the last ones, as in `sizes`
    dealt[order] = np.arange(len(groups)) % k
    seats = np.zeros((int(groups.max()) + 1, k), dtype=np.int64)
    np.add.at(seats, (groups, dealt), 1)
    return seats


def _fill(cost: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Classes filled to ``capacity`` at low total ``cost`` (n, k); sizes never change.

    Up to ``EXACT_MATCHING`` trainees: the exact matching of trainees to seats. Beyond it (the matching grows
    with the cube of the roster: minutes for 5,000): a start that seats trainees, ordered by their nearest
    class, in class order, then exchanges between two classes while one lowers the cost — within a fraction
    of a percent of the exact cost on need profiles.
    """
    n, k = cost.shape
    if n <= EXACT_MATCHING:
        seat = np.repeat(np.arange(k), capacity)
        rows, cols = linear_sum_assignment(cost[:, seat])
        exact = np.empty(n, dtype=np.int64)
        exact[rows] = seat[cols]
        return exact
    nearest = cost.argmin(axis=1)
    order = np.lexsort((cost[np.arange(n), nearest], nearest))
    label = np.empty(n, dtype=np.int64)
    label[order] = np.repeat(np.arange(k), capacity)
    for _ in range(EXCHANGE_PASSES):
        # the best any member of class a gains by moving to b; a swap between a and b can only pay when
        # the two best moves together do, which leaves few pairs to look at after the first pass
        moves = cost - cost[np.arange(n), label][:, None]
        order = np.argsort(label, kind="stable")
        held = np.flatnonzero(np.bincount(label, minlength=k))
        best = np.zeros((k, k))
        best[held] = np.minimum.reduceat(moves[order], np.searchsorted(label[order], held), axis=0)
        pairs = np.argwhere(np.triu(best + best.T < -1e-9, 1))
        if not len(pairs):
            break
        for a, b in pairs:
            in_a, in_b = np.flatnonzero(label == a), np.flatnonzero(label == b)
            m = min(len(in_a), len(in_b))
            # pairing the i-th best mover of each side gives gains that only grow with i, so the good swaps
            # are the first few pairs
            move_a = in_a[np.argsort(cost[in_a, b] - cost[in_a, a])[:m]]
            move_b = in_b[np.argsort(cost[in_b, a] - cost[in_b, b])[:m]]
            change = cost[move_a, b] - cost[move_a, a] + cost[move_b, a] - cost[move_b, b]
            good = int((change < -1e-9).sum())
            label[move_a[:good]], label[move_b[:good]] = b, a
    return label


def _assign(cost: np.ndarray, sizes: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Each trainee's class, every class filled to its size (and, with ``groups``, every group to its dealt
    seats in each class, which makes each group a problem of its own)."""
    if groups is None:
        return _fill(cost, sizes)
    label = np.empty(len(cost), dtype=np.int64)
    seats = _seats_by_group(groups, sizes)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        label[members] = _fill(cost[members], seats[g])
    return label


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(n, k) squared Euclidean distances, without the (n, k, d) intermediate."""
    d = (x**2).sum(axis=1)[:, None] - 2.0 * x @ centres.T + (centres**2).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def _kmeanspp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn in proportion to the squared distance to the nearest one."""
    centres = [x[rng.integers(len(x))]]
    nearest = _sq_distances(x, centres[0][None])[:, 0]
    for _ in range(1, k):
        total = nearest.sum()
        pick = rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x))
        centres.append(x[pick])
        nearest = np.minimum(nearest, _sq_distances(x, x[pick][None])[:, 0])
    return np.asarray(centres)


def form_classes(
    features: np.ndarray, class_size: int, groups: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Class (0..k-1) of each trainee: size-constrained k-means on the need profiles ``features`` (n, d).

    Lloyd's iterations whose assignment step fills the seats of ``class_sizes`` (``_fill``), so every class
    has its size exactly. With ``groups`` (e.g. county codes) each class also takes an even share of
    every group (混合编班), and within that share the trainees whose needs fit it best.
    """
    x = np.asarray(features, dtype=np.float64)
    sizes = class_sizes(len(x), class_size)
    if len(sizes) <= 1:
        return np.zeros(len(x), dtype=np.int64)
    rng = np.random.default_rng(seed)
    centres = _kmeanspp(x, len(sizes), rng)
    label = np.full(len(x), -1, dtype=np.int64)
    for _ in range(CLASS_ITERATIONS):
        cost = _sq_distances(x, centres)
        new = _assign(cost, sizes, groups)
        if np.array_equal(new, label):
            break
        label = new
        centres = np.stack([x[label == j].mean(axis=0) for j in range(len(sizes))])
    return label


def spread(features: np.ndarray, label: np.ndarray) -> float:
    """Root-mean-square distance of each trainee's need profile to its class's mean profile (gap points)."""
    x = np.asarray(features, dtype=np.float64)
    if len(x) == 0:
        return float("nan")
    k = int(label.max()) + 1
    counts = np.bincount(label, minlength=k)[:, None]
    centres = np.stack([np.bincount(label, x[:, j], minlength=k) for j in range(x.shape[1])], axis=1) / counts
    return float(np.sqrt(((x - centres[label]) ** 2).sum(axis=1).mean()))


def random_spread(
    features: np.ndarray, label: np.ndarray, seed: int = 0, splits: int = RANDOM_SPLITS
) -> float:
    """The mean ``spread`` of random splits into classes of the same sizes: the baseline 编班 by hand."""
    rng = np.random.default_rng(seed)
    return float(np.mean([spread(features, rng.permutation(label)) for _ in range(splits)]))
