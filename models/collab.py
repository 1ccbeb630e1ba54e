"""Collaborative signals (协同过滤信号) that the ranker uses as pair features: popularity, item-kNN, course-to-course
transitions and implicit ALS, fitted on enrolment logs and scored for whole blocks of users at once.

Every scorer maps a block of users to a dense ``(users, items)`` array; nothing loops over users in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# implicit parallelises over users itself; the CI machines and the benchmark budget have two cores.
MAX_THREADS = 2


@dataclass(frozen=True)
class Interactions:
    """Enrolment events as parallel arrays, sorted by user and then by time (ties keep their input order).

    ``times`` may be dates as day numbers or, where only the order is known, positions in each user's sequence.
    """

    users: IntArray
    items: IntArray
    times: npt.NDArray[np.float64]
    n_users: int
    n_items: int

    @classmethod
    def from_arrays(
        cls,
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        times: npt.ArrayLike,
        n_users: int | None = None,
        n_items: int | None = None,
    ) -> Interactions:
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        t = np.asarray(times, dtype=np.float64)
        if not (u.shape == i.shape == t.shape) or u.ndim != 1:
            raise ValueError("users, items and times must be 1-D arrays of the same length")
        if u.size and (u.min() < 0 or i.min() < 0):
            raise ValueError("user and item indices must be non-negative")
        nu = int(u.max()) + 1 if n_users is None and u.size else int(n_users or 0)
        ni = int(i.max()) + 1 if n_items is None and i.size else int(n_items or 0)
        if u.size and (u.max() >= nu or i.max() >= ni):
            raise ValueError("an index is out of range of n_users / n_items")
        order = np.lexsort((t, u))
        return cls(u[order], i[order], t[order], nu, ni)

    def __len__(self) -> int:
        return int(self.users.size)

    def steps_from_end(self) -> IntArray:
        """0 for each user's latest event, 1 for the one before, and so on."""
        counts = np.bincount(self.users, minlength=self.n_users)
        ends = np.cumsum(counts)
        return (ends[self.users] - 1 - np.arange(self.users.size)).astype(np.int64)

    def split_last(self) -> tuple[Interactions, IntArray]:
        """Each user's history without the latest event, and that event's item (-1 for users with none)."""
        steps = self.steps_from_end()
        last = steps == 0
        held = np.full(self.n_users, -1, dtype=np.int64)
        held[self.users[last]] = self.items[last]
        rest = ~last
        kept = Interactions(self.users[rest], self.items[rest], self.times[rest], self.n_users, self.n_items)
        return kept, held

    def matrix(self, weights: npt.ArrayLike | None = None) -> sp.csr_matrix:
        """Users × items; a repeated (user, item) pair keeps its largest weight (1 when unweighted)."""
        w = np.ones(self.users.size, np.float32) if weights is None else np.asarray(weights, np.float32)
        order = np.lexsort((-w, self.items, self.users))
        u, i, w = self.users[order], self.items[order], w[order]
        first = np.ones(u.size, dtype=bool)
        first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
        m = sp.csr_matrix((w[first], (u[first], i[first])), shape=(self.n_users, self.n_items))
        m.eliminate_zeros()
        return m

    def recency_matrix(self, decay: float, last: int | None = None) -> sp.csr_matrix:
        """Users × items weighted ``decay ** steps_from_end``, keeping only the ``last`` latest events if given."""
        steps = self.steps_from_end()
        w = np.power(np.float32(decay), steps.astype(np.float32))
        if last is not None:
            w[steps >= last] = 0.0
        return self.matrix(w)

    def age_weights(self, half_life: float | None) -> npt.NDArray[np.float32]:
        """Per-event weight halving every ``half_life`` time units before the latest event in the log."""
        if half_life is None or not self.times.size:
            return np.ones(self.times.size, np.float32)
        age = self.times.max() - self.times
        return np.power(0.5, age / half_life).astype(np.float32)


def top_k_per_row(m: sp.spmatrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row (ties broken by column index)."""
    m = sp.csr_matrix(m)
    m.sum_duplicates()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    # columns ascend within each row, so two stable sorts (by value, then by row) leave ties in column order
    by_value = np.argsort(-m.data, kind="stable")
    order = by_value[np.argsort(rows[by_value], kind="stable")]
    rank = np.arange(order.size) - m.indptr[rows[order]]
    keep = order[rank < k]
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)


def top_n(scores: FloatArray, n: int) -> IntArray:
    """Column indices of the ``n`` best scores of each row, best first (vectorised over the block)."""
    n = min(n, scores.shape[1])
    if n <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    best = np.take_along_axis(scores, part, axis=1)
    return np.take_along_axis(part, np.argsort(-best, axis=1, kind="stable"), axis=1).astype(np.int64)


def mask_seen(scores: FloatArray, seen: sp.spmatrix) -> FloatArray:
    """Set the scores of items a user already has to -inf, in place; returns ``scores``."""
    coo = sp.coo_matrix(seen)
    scores[coo.row, coo.col] = -np.inf
    return scores


class Popularity:
    """How many users took each item, each enrolment weighted down by its age when ``half_life`` is set."""

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = half_life

    def fit(self, log: Interactions) -> Popularity:
        x = log.matrix(log.age_weights(self.half_life))
        self.counts_: FloatArray = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, n_rows: int) -> FloatArray:
        return np.tile(self.counts_, (n_rows, 1))


class ItemKNN:
    """Item-item cosine similarity from co-enrolment, shrunk toward 0 for rare pairs, top-``k`` per item.

    ``similarity_[i, j]`` is how much having item ``i`` recommends item ``j``; for each target ``j`` only its
    ``k`` most similar sources are kept. ``alpha`` = 0.5 is cosine; other values give the asymmetric cosine.
    """

    def __init__(self, k: int = 100, shrink: float = 0.0, alpha: float = 0.5) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.shrink = shrink
        self.alpha = alpha

    def fit(self, x: sp.spmatrix) -> ItemKNN:
        b = sp.csr_matrix(x, dtype=np.float32, copy=True)
        b.data[:] = 1.0
        co = sp.csr_matrix(b.T @ b)
        co.setdiag(0.0)
        co.eliminate_zeros()
        n = np.asarray(b.sum(axis=0), dtype=np.float64).ravel()
        co = co.tocoo()
        denom = np.power(n[co.row], self.alpha) * np.power(n[co.col], 1.0 - self.alpha) + self.shrink
        sim = sp.csr_matrix((co.data / denom, (co.row, co.col)), shape=co.shape, dtype=np.float32)
        self.similarity_: sp.csr_matrix = sp.csr_matrix(top_k_per_row(sim.T, self.k).T)
        return self

    def score(self, x_block: sp.spmatrix) -> FloatArray:
        """``x_block @ similarity_``: the history rows may be binary or recency-weighted."""
        return np.asarray((sp.csr_matrix(x_block, dtype=np.float32) @ self.similarity_).toarray())


class Transition:
    """Next-course signal: how often item ``j`` followed item ``i`` within ``window`` steps of one user's sequence.

    A follower ``lag`` steps later counts ``decay ** (lag - 1)``; rows are normalised to P(next | previous), with
    ``shrink`` pulling rarely-seen sources toward 0. Enrolment order matters, so this is not symmetric.
    """

    def __init__(self, window: int = 1, decay: float = 0.5, shrink: float = 0.0) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.decay = decay
        self.shrink = shrink

    def fit(self, log: Interactions) -> Transition:
        rows: list[IntArray] = []
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        for lag in range(1, self.window + 1):
            same = log.users[lag:] == log.users[:-lag]
            src, dst = log.items[:-lag][same], log.items[lag:][same]
            moved = src != dst
            rows.append(src[moved])
            cols.append(dst[moved])
            vals.append(np.full(int(moved.sum()), self.decay ** (lag - 1), dtype=np.float32))
        shape = (log.n_items, log.n_items)
        counts = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=shape,
            dtype=np.float32,
        )
        out = np.asarray(counts.sum(axis=1), dtype=np.float32).ravel()
        scale = np.zeros_like(out)
        np.divide(1.0, out + self.shrink, out=scale, where=out > 0)
        self.transitions_: sp.csr_matrix = sp.csr_matrix(sp.diags(scale) @ counts)
        return self

    def score(self, recent_block: sp.spmatrix) -> FloatArray:
        """``recent_block @ transitions_``; pass each user's latest items (``Interactions.recency_matrix``)."""
        return np.asarray((sp.csr_matrix(recent_block, dtype=np.float32) @ self.transitions_).toarray())


class ImplicitALS:
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky) through ``implicit``'s CPU ALS.

    Scoring folds each block's histories into the fitted item factors (one exact least-squares step), so users
    unseen at fit time are scored too. Deterministic for a given ``random_state``.
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int = MAX_THREADS,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _threads(self) -> int:
        return max(1, min(self.num_threads, MAX_THREADS))

    def fit(self, x: sp.spmatrix) -> ImplicitALS:
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit threads over users; a multi-threaded BLAS underneath would oversubscribe the cores.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=self._threads(),
            )
            model.fit(sp.csr_matrix(x, dtype=np.float32), show_progress=False)
        self.model_ = model
        self.item_factors_: FloatArray = np.asarray(model.item_factors, dtype=np.float32)
        self.user_factors_: FloatArray = np.asarray(model.user_factors, dtype=np.float32)
        return self

    def user_factors(self, x_block: sp.spmatrix) -> FloatArray:
        x = sp.csr_matrix(x_block, dtype=np.float32)
        with threadpool_limits(1, "blas"):
            f = self.model_.recalculate_user(np.arange(x.shape[0]), x)
        return np.asarray(f, dtype=np.float32)

    def score(self, x_block: sp.spmatrix) -> FloatArray:
        return self.user_factors(x_block) @ self.item_factors_.T
