"""Diagnostic model (诊断模型): a multidimensional compensatory IRT model (M2PL) over a Q-matrix.

Turns item responses into per-competency estimates with standard errors, which the teacher portraits read.

Model: P(x_ij = 1 | theta_i) = sigmoid(sum_k a_jk theta_ik + d_j), with a_jk free only where the Q-matrix says
item j measures competency k (plus, optionally, a general factor every item loads on). Scores in [0, 1]
(partial credit divided by the full score) enter as fractional Bernoulli outcomes, optionally weighted by
their estimated dispersion. theta_i ~ N(0, Sigma) with unit variances; the correlations are estimated, which
lets a competency with few items borrow strength from the correlated ones. The item parameters are
hierarchical: each loading is drawn around its dimension's mean loading and each intercept around the mean of
its skills' intercepts, so an item with a handful of respondents borrows from the items of the same skills and
an item nobody answered is predicted from them.

Estimation is variational EM, an approximation to regularised marginal maximum likelihood. Every person has
a Gaussian posterior N(theta_i, C_i) with full covariance; each E-step moves it once towards the optimum of
the evidence lower bound (ELBO), by the fixed point C_i = (Sigma^-1 + sum_j E[sigmoid'] a_j a_j^T)^-1 and a
Newton step on theta_i, computed in person chunks; the data term lives on the dimensions the person's responses
load on, so only those are factorised (`_Local`, batched by their number) and C_i is never formed. With
``corr_rank`` the correlations are factor-analytic instead (rank r plus each dimension's own variance,
`_Factors`) and each person's posterior is an arrow over (theta, the r factors) costing K (1 + r)^2 (`_Arrow`). Expectations
over each response's linear predictor use Gauss-Hermite quadrature. The M-step updates Sigma under its
shrinkage prior (over-relaxed where that keeps the bound, `_over_relaxed`; parameter-expanded: each
dimension's scale moves into its loadings), takes one Newton step
per item on the expected log-likelihood plus the item prior, and refits the prior's skill means. The monitored
objective is the ELBO plus every log prior, the one all these steps raise; iterations stop when it gains less
than ``tol`` per response. Unlike the Laplace approximation (posterior mode and curvature), the variational
posterior keeps the estimated correlations and the interval coverage honest when a competency has only one or
two items. The reported standard errors also carry the calibration error of the person's items and of the
scale (`_calibration_middle`), which dominates on a bank whose items have few respondents each.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Expectations over eta ~ N(m, s^2) with probabilists' Gauss-Hermite nodes; 7 nodes are within 1e-3 of the
# exact value for the spreads met here (s < 2), far below the sampling noise of any item.
_GH_Z, _GH_W = np.polynomial.hermite_e.hermegauss(7)
_GH_W = _GH_W / np.sqrt(2.0 * np.pi)
# Persons are processed in chunks so that the (persons x K x K) Hessian block stays near 32 MB.
_CHUNK_FLOATS = 4_000_000
_MIN_VAR = 1e-12
# a Newton step on theta moves no coordinate further than this (posterior SDs are below 1)
_MAX_STEP = 2.0
# estimated response weights stay within [1/_MAX_WEIGHT, _MAX_WEIGHT]
_MAX_WEIGHT = 10.0
_WEIGHT_ITERATIONS = 10
# The covariance step goes this many times as far as plain EM's along the same line, where that keeps the bound
# (checked): the skill correlations are EM's slow part, since each person's few answers per skill leave the
# posteriors close to the prior (measured on ASSIST2017: the plateau of validation AUC in 19 iterations, not 26).
_OVER_RELAX = 1.9
# the factor prior's residual variances stay above this (a dimension its factors explain wholly is degenerate)
_MIN_UNIQUENESS = 1e-2
# where the factor prior starts: first factor's loadings and the least residual variance (`_Factors.start`)
_FACTOR_START = 0.95
_FACTOR_START_UNIQUENESS = 0.1


def _softplus(x: FloatArray) -> FloatArray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


@dataclass(frozen=True)
class _Responses:
    """Responses in long form, sorted by person, with CSR offsets so person chunks are contiguous slices."""

    person: IntArray
    item: IntArray
    score: FloatArray
    n_persons: int
    starts: IntArray


@dataclass(frozen=True)
class _Layout:
    """Where each item's loadings sit: slot l of item j loads on dimension ``dims[j, l]`` when ``free[j, l]``."""

    dims: IntArray
    free: BoolArray

    @staticmethod
    def from_pattern(pattern: BoolArray) -> _Layout:
        n_slots = max(1, int(pattern.sum(axis=1).max(initial=0)))
        # Stable sort puts each row's loaded dimensions first, in column order; the rest is padding.
        order = np.argsort(~pattern, axis=1, kind="stable")[:, :n_slots]
        free = np.take_along_axis(pattern, order, axis=1)
        return _Layout(dims=np.where(free, order, 0).astype(np.int64), free=free)

    def pairs(self) -> IntArray:
        """(row >= col) entries of a posterior covariance that some item's linear predictor involves."""
        lo = np.minimum(self.dims[:, :, None], self.dims[:, None, :])
        hi = np.maximum(self.dims[:, :, None], self.dims[:, None, :])
        both = self.free[:, :, None] & self.free[:, None, :]
        return np.unique(np.stack([hi[both], lo[both]], axis=1), axis=0).astype(np.int64)


def _responses(
    person_idx: ArrayLike, item_idx: ArrayLike, score01: ArrayLike, n_persons: int, n_items: int
) -> _Responses:
    person = np.asarray(person_idx, dtype=np.int64).ravel()
    item = np.asarray(item_idx, dtype=np.int64).ravel()
    score = np.asarray(score01, dtype=np.float64).ravel()
    if not (person.shape == item.shape == score.shape):
        raise ValueError("person_idx, item_idx and score01 must have the same length")
    if n_persons < 1:
        raise ValueError("n_persons must be at least 1")
    if person.size and (person.min() < 0 or person.max() >= n_persons):
        raise ValueError(f"person_idx must lie in [0, {n_persons})")
    if item.size and (item.min() < 0 or item.max() >= n_items):
        raise ValueError(f"item_idx must lie in [0, {n_items}) (the Q-matrix rows)")
    if not np.all(np.isfinite(score)) or score.size and (score.min() < 0.0 or score.max() > 1.0):
        raise ValueError("score01 must be finite and scaled to [0, 1] (raw score / max_score)")
    order = np.argsort(person, kind="stable")
    person, item, score = person[order], item[order], score[order]
    starts = np.searchsorted(person, np.arange(n_persons + 1)).astype(np.int64)
    return _Responses(person, item, score, n_persons, starts)


def _dense_to_long(X: ArrayLike) -> tuple[IntArray, IntArray, FloatArray, int]:
    dense = np.asarray(X, dtype=np.float64)
    if dense.ndim != 2:
        raise ValueError("X must be a (persons x items) array with NaN for missing cells")
    person, item = np.nonzero(~np.isnan(dense))
    return person.astype(np.int64), item.astype(np.int64), dense[person, item], dense.shape[0]


def _gh(m: FloatArray, s: FloatArray, softplus: bool = True, stein: bool = False) -> tuple[FloatArray, ...]:
    """Expectations over eta = m + s z, z ~ N(0, 1): E[softplus] (when asked), E[sigmoid], E[sigmoid'], and
    with ``stein`` also E[sigmoid' z] and E[sigmoid' z^2]. One exponential per node serves all of them."""
    eta = m[:, None] + s[:, None] * _GH_Z[None, :]
    e = np.exp(-np.abs(eta))
    prob = np.where(eta >= 0.0, 1.0, e) / (1.0 + e)
    slope = prob * (1.0 - prob)
    out = [prob @ _GH_W, slope @ _GH_W]
    if softplus:
        out.insert(0, (np.maximum(eta, 0.0) + np.log1p(e)) @ _GH_W)
    if stein:
        out += [slope @ (_GH_W * _GH_Z), slope @ (_GH_W * _GH_Z**2)]
    return tuple(out)


def _gh_softplus(m: FloatArray, s: FloatArray) -> FloatArray:
    eta = m[:, None] + s[:, None] * _GH_Z[None, :]
    return _softplus(eta) @ _GH_W


def _spread(a_o: FloatArray, slot_cov: FloatArray) -> FloatArray:
    """Posterior standard deviation of a_j . theta_i per response, from its slots' covariance block."""
    var = np.sum(np.sum(slot_cov * a_o[:, None, :], axis=2) * a_o, axis=1)
    return np.sqrt(np.maximum(var, _MIN_VAR), dtype=np.float64)


# ----------------------------------------------------------------------------------------------- persons


@dataclass(frozen=True)
class _Chunk:
    """The responses of persons p0..p1-1 with their flat scatter/gather positions, fixed for a whole fit."""

    p0: int
    p1: int
    rows: slice
    local: IntArray
    item: IntArray
    y: FloatArray
    free: BoolArray  # responses x L
    vec_cells: IntArray  # responses x L: positions in a (persons x K) block
    dims_p: IntArray  # persons x S: the dimensions each person's responses load on first, then the others
    touched_p: BoolArray  # persons x S: which of dims_p are loaded on
    mat_cells: IntArray  # responses x L x L: positions in a (persons x S x S) block over dims_p
    groups: tuple[tuple[IntArray, int], ...]  # persons batched by their number of dimensions, rounded up to 8
    k: int  # dimensions of theta (a posterior may carry more coordinates after them: the factors' z)

    @property
    def n(self) -> int:
        return self.p1 - self.p0

    def eta(self, theta: FloatArray, a_o: FloatArray, d_o: FloatArray) -> FloatArray:
        return np.einsum("ol,ol->o", a_o, theta[:, : self.k].ravel()[self.vec_cells]) + d_o

    def elbo_part(
        self, theta: FloatArray, m: FloatArray, e_sp: FloatArray, w_o: FloatArray, precision: FloatArray
    ) -> FloatArray:
        """Per person: expected log-likelihood under q minus the prior's quadratic form in the mean."""
        loglik = np.bincount(self.local, w_o * (self.y * m - e_sp), minlength=self.n)
        return loglik - 0.5 * np.einsum("pk,pk->p", theta @ precision, theta)

    def update(
        self,
        theta: FloatArray,
        s: FloatArray,
        a_o: FloatArray,
        d_o: FloatArray,
        w_o: FloatArray,
        prior: _Prior,
        precision: FloatArray,
    ) -> tuple[FloatArray, _Local | _Arrow, FloatArray]:
        """One step of the Gaussian variational posterior N(theta, cov) of every person in the chunk.

        The covariance takes its fixed point cov = (prior precision + sum_j E[sigmoid'] a_j a_j^T)^-1 and the
        mean a Newton step, both with expectations over each response's current spread ``s``. Under a
        covariance the data term lives on the dimensions the person's responses load on, so the covariance is
        computed there (`_Local`); under the factor prior ``theta`` holds the extended coordinates (theta, z),
        ``precision`` is theirs and the covariance is an arrow (`_Arrow`). Returns the new mean, the new
        covariance and the bound's per-person part at the old mean.
        """
        n, k = self.n, self.k
        m = self.eta(theta, a_o, d_o)
        e_sp, e_p, e_f = _gh(m, s)
        value = self.elbo_part(theta, m, e_sp, w_o, precision)
        resid = w_o * (self.y - e_p)
        grad = -(theta @ precision)
        grad[:, :k] += np.bincount(
            self.vec_cells.ravel(), (resid[:, None] * a_o).ravel(), minlength=n * k
        ).reshape(n, k)
        post: _Local | _Arrow
        if isinstance(prior, _Factors):
            post = _Arrow.solve(self, w_o * e_f, a_o, prior)
            step = post.times_cov(grad)
        else:
            outer = (w_o * e_f)[:, None, None] * a_o[:, :, None] * a_o[:, None, :]
            width = self.dims_p.shape[1]
            summed = np.bincount(self.mat_cells.ravel(), outer.ravel(), minlength=n * width * width)
            post = _Local.solve(self, np.asarray(summed, dtype=np.float64).reshape(n, width, width), prior)
            step = post.times_cov(grad, prior, self)
        return self._newton(theta, value, step, s, a_o, d_o, w_o, precision), post, value

    def _newton(
        self,
        theta: FloatArray,
        value: FloatArray,
        step: FloatArray,
        s: FloatArray,
        a_o: FloatArray,
        d_o: FloatArray,
        w_o: FloatArray,
        precision: FloatArray,
    ) -> FloatArray:
        """Take the step where it raises the bound, halving it per person where not.

        For a fixed covariance the bound is concave in the mean, so halving always ends in an increase; the
        cap keeps a first step from a flat start sane for persons with all answers right (or wrong).
        """
        step = step * np.minimum(1.0, _MAX_STEP / np.maximum(np.abs(step).max(axis=1), _MIN_VAR))[:, None]
        out = theta.copy()
        todo = np.ones(self.n, dtype=bool)
        t = 1.0
        for _ in range(8):
            cand = theta + t * step
            m = self.eta(cand, a_o, d_o)
            ok = todo & (self.elbo_part(cand, m, _gh_softplus(m, s), w_o, precision) >= value - 1e-9)
            out[ok] = cand[ok]
            todo &= ~ok
            if not todo.any():
                break
            t *= 0.5
        return out

    def slot_cov(self, cov: FloatArray) -> FloatArray:
        """responses x L x L: the posterior covariance of the dimensions each response's slots load on."""
        return cov.ravel()[self.mat_cells] * (self.free[:, :, None] & self.free[:, None, :])

    def prior_slot_cov(self, sigma: FloatArray) -> FloatArray:
        k = len(sigma)
        dims = self.vec_cells - (self.local * k)[:, None]
        return sigma[dims[:, :, None], dims[:, None, :]] * (self.free[:, :, None] & self.free[:, None, :])


@dataclass(frozen=True)
class _Local:
    """Posterior covariances of a chunk's persons, each computed on the S dimensions its responses load on.

    With prior covariance Sigma and data precision D on those dimensions (zero elsewhere), the posterior
    covariance is C = (Sigma^-1 + D)^-1 = Sigma - Sigma_.S G Sigma_S. with G = (Sigma_SS + D^-1)^-1
    = D - D C_SS D (Woodbury), so only S x S matrices are factorised: C_SS = L (I + L^T D L)^-1 L^T with
    Sigma_SS = L L^T, and log det C = log det Sigma - log det (I + L^T D L). A person answering half the skills
    costs an eighth of the full factorisation; an unanswered dimension keeps the prior given the answered ones.
    Arrays are persons x width x width over ``_Chunk.dims_p``, padded with identity (``cov``) and zero (``gain``).
    """

    cov: FloatArray  # C_SS
    gain: FloatArray  # G
    logdet: FloatArray  # log det C

    @staticmethod
    def solve(c: _Chunk, data: FloatArray, sigma: FloatArray) -> _Local:
        n, width = c.dims_p.shape
        cov, gain, logdet = np.empty_like(data), np.empty_like(data), np.empty(n)
        eye = np.eye(width)
        for rows, b in c.groups:  # padded with the identity
            dims, touched = c.dims_p[rows, :b], c.touched_p[rows, :b]
            mask = touched[:, :, None] & touched[:, None, :]
            prior = np.where(mask, sigma[dims[:, :, None], dims[:, None, :]], eye[:b, :b])
            d = data[rows, :b, :b] * mask
            chol = np.linalg.cholesky(prior)
            inner = eye[:b, :b] + np.swapaxes(chol, 1, 2) @ d @ chol
            inner_chol = np.linalg.cholesky(inner)
            logdet[rows] = -2.0 * np.log(np.diagonal(inner_chol, axis1=1, axis2=2)).sum(axis=1)
            half = np.linalg.solve(inner_chol, np.swapaxes(chol, 1, 2))  # (I + M)^-1/2 L^T
            c_ss = np.swapaxes(half, 1, 2) @ half
            cov[rows] = eye
            gain[rows] = 0.0
            cov[rows, :b, :b] = c_ss
            gain[rows, :b, :b] = d - d @ c_ss @ d
        return _Local(cov, gain, logdet + np.linalg.slogdet(sigma)[1])

    def times_cov(self, r: FloatArray, sigma: FloatArray, c: _Chunk) -> FloatArray:
        """C r per person: Sigma r - Sigma_.S G (Sigma r)_S."""
        sr = r @ sigma
        v = np.einsum("pij,pj->pi", self.gain, np.take_along_axis(sr, c.dims_p, axis=1))
        spread = np.zeros_like(r)
        np.put_along_axis(spread, c.dims_p, v, axis=1)
        return np.asarray(sr - spread @ sigma, dtype=np.float64)

    def cov_sum(self, sigma: FloatArray, c: _Chunk) -> FloatArray:
        """sum of C over the chunk's persons: n Sigma - Sigma (sum of G scattered onto the full dims) Sigma."""
        k = len(sigma)
        cells = c.dims_p[:, :, None] * k + c.dims_p[:, None, :]
        scattered = np.bincount(cells.ravel(), self.gain.ravel(), minlength=k * k).reshape(k, k)
        return np.asarray(c.n * sigma - sigma @ scattered @ sigma, dtype=np.float64)

    def entries(
        self, sigma: FloatArray, c: _Chunk, rows: IntArray, cols: IntArray, middle: FloatArray | None = None
    ) -> FloatArray:
        """persons x len(rows): the entries C[rows, cols], without forming C; with ``middle`` (persons x width x
        width over dims_p, a matrix living on the answered dimensions) plus those of C_.S middle C_S.."""
        out = np.empty((c.n, len(rows)))
        for group, b in c.groups:
            dims = c.dims_p[group, :b]
            side = sigma[:, dims].transpose(1, 0, 2)  # persons x K x b: Sigma_.S
            weighted = side @ self.gain[group, :b, :b]
            out[group] = sigma[rows, cols] - np.einsum("pqw,pqw->pq", weighted[:, rows], side[:, cols])
            if middle is not None:
                block = side - weighted @ sigma[dims[:, :, None], dims[:, None, :]]  # C_.S
                product = block @ middle[group, :b, :b]
                out[group] += np.einsum("pqw,pqw->pq", product[:, rows], block[:, cols])
        return out


@dataclass(frozen=True)
class _Factors:
    """Factor-analytic prior of theta (``corr_rank``): each Q-matrix dimension is theta_k = loadings_k . z + e_k
    with z ~ N(0, I_r) and e_k ~ N(0, psi_k) independent, so theta's covariance is loadings loadings^T +
    diag(psi): r common factors plus what is each dimension's own. The general dimension (last, with
    ``general``) is N(0, general_var), independent of both. Persons' posteriors live on the extended
    coordinates (theta, z), K + r of them; the Q-matrix dimensions are the "own" block, the general dimension
    and z the "shared" one."""

    loadings: FloatArray  # n_own x r
    psi: FloatArray  # n_own
    general_var: float | None  # None: no general dimension

    @property
    def n_own(self) -> int:
        return len(self.psi)

    @property
    def k(self) -> int:
        return self.n_own + int(self.general_var is not None)

    @property
    def ext(self) -> int:
        return self.k + self.loadings.shape[1]

    def covariance(self) -> FloatArray:
        """Prior covariance of the extended coordinates; its theta block is the covariance of theta."""
        n_own, k = self.n_own, self.k
        cov = np.eye(self.ext)
        cov[:n_own, :n_own] = self.loadings @ self.loadings.T + np.diag(self.psi)
        cov[:n_own, k:] = self.loadings
        cov[k:, :n_own] = self.loadings.T
        if self.general_var is not None:
            cov[n_own, n_own] = self.general_var
        return cov

    def precision(self) -> FloatArray:
        n_own, k = self.n_own, self.k
        lp = self.loadings / self.psi[:, None]
        prec = np.eye(self.ext)
        prec[:n_own, :n_own] = np.diag(1.0 / self.psi)
        prec[:n_own, k:] = -lp
        prec[k:, :n_own] = -lp.T
        prec[k:, k:] += self.loadings.T @ lp
        if self.general_var is not None:
            prec[n_own, n_own] = 1.0 / self.general_var
        return prec

    def logdet(self) -> float:
        """log det of `covariance` (z has unit variances and explains nothing of e)."""
        general = 0.0 if self.general_var is None else np.log(self.general_var)
        return float(np.log(self.psi).sum() + general)

    def rescaled(self, scale: FloatArray) -> _Factors:
        """The same prior in units where theta_k is divided by scale[k]."""
        own = scale[: self.n_own]
        general = None if self.general_var is None else self.general_var / scale[-1] ** 2
        return _Factors(self.loadings / own[:, None], self.psi / own**2, general)

    @staticmethod
    def start(n_own: int, rank: int, general: bool, rng: np.random.Generator) -> _Factors:
        """The dimensions start strongly correlated through the first factor, the other factors small and random.

        EM grows a factor from a small start slowly (measured on ASSIST2017: 8 factors started at loadings 0.1
        still gained 10^-3 nats per response at iteration 12; one factor started at 0.5 stalled for five
        iterations, at 0.8 and above it converged in 8-9)."""
        loadings = 0.1 * rng.standard_normal((n_own, rank))
        loadings[:, :1] = _FACTOR_START
        psi = np.maximum(1.0 - np.sum(loadings**2, axis=1), _FACTOR_START_UNIQUENESS)
        return _Factors(loadings, psi, 1.0 if general else None)


@dataclass(frozen=True)
class _Arrow:
    """Posterior covariances of a chunk's persons under the factor prior, on the extended coordinates.

    The posterior precision is the prior's (`_Factors.precision`) plus the data's. Keeping every coupling the
    data make with the general dimension and dropping those between two Q-matrix dimensions (items of two
    skills), it is an arrow: a diagonal own block D, the small shared block Q_hh (general dimension and z) and
    their coupling V. Then C_hh = (Q_hh - V^T D^-1 V)^-1 = W W^T, C_own,h = -u C_hh and C_own = D^-1 + u C_hh u^T
    with u = D^-1 V: every entry is C_xy = own_x [x = y] + w_x . w_y with w = (u W; -W), at a cost per person of
    K (1 + r)^2 rather than the cube of the dimensions answered. It is the exact fixed point where every item
    measures one skill (plus the general dimension); with two-skill items it is a member of the Gaussian family
    whose bound is computed exactly, so EM's monitored objective stays the true bound.
    """

    u: FloatArray  # persons x n_own x H
    inv_d: FloatArray  # persons x n_own
    half: FloatArray  # persons x H x H: W
    logdet: FloatArray  # log det C per person

    @staticmethod
    def solve(c: _Chunk, f: FloatArray, a_o: FloatArray, factors: _Factors) -> _Arrow:
        """From the data's weights f = w E[sigmoid'] per response and its slots' loadings ``a_o``."""
        n, k, n_own = c.n, c.k, factors.n_own
        r = factors.loadings.shape[1]
        h = factors.ext - n_own
        cells = c.vec_cells.ravel()
        fa = f[:, None] * a_o
        # an item of several skills couples them; the coupling is dropped and, so that the precision stays
        # positive definite, bounded by each skill's share: 2 a_l a_m t_l t_m <= |a_l a_m| (t_l^2 + t_m^2)
        own = np.abs(a_o) * (c.vec_cells - (c.local * k)[:, None] < n_own) * c.free
        split = f[:, None] * own * (own.sum(axis=1, keepdims=True) - own)
        diag = np.bincount(cells, (fa * a_o + split).ravel(), minlength=n * k).reshape(n, k)
        lp = factors.loadings / factors.psi[:, None]
        coupling = np.empty((n, n_own, h))
        coupling[:, :, h - r :] = -lp
        q_hh = np.zeros((n, h, h))
        q_hh[:, h - r :, h - r :] = np.eye(r) + factors.loadings.T @ lp
        if factors.general_var is not None:
            # the general dimension is each item's last loaded slot
            a_g = a_o[np.arange(len(a_o)), c.free.sum(axis=1) - 1]
            column = np.bincount(cells, (fa * a_g[:, None]).ravel(), minlength=n * k).reshape(n, k)
            coupling[:, :, 0] = column[:, :n_own]
            q_hh[:, 0, 0] = 1.0 / factors.general_var + diag[:, n_own]
        inv_d = 1.0 / (1.0 / factors.psi + diag[:, :n_own])
        u = coupling * inv_d[:, :, None]
        # (few shared coordinates: broadcast products beat einsum's general loops here and below)
        chol = np.linalg.cholesky(q_hh - np.sum(coupling[:, :, :, None] * u[:, :, None, :], axis=1))
        half = np.swapaxes(np.linalg.inv(chol), 1, 2)
        logdet = np.log(inv_d).sum(axis=1) - 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        return _Arrow(u, inv_d, half, logdet)

    @property
    def own(self) -> FloatArray:
        """persons x extended coordinates: the diagonal part of each covariance."""
        return np.concatenate([self.inv_d, np.zeros(self.half.shape[:2])], axis=1)

    @property
    def w(self) -> FloatArray:
        """persons x extended coordinates x H: the low-rank part of each covariance, C = diag(own) + w w^T."""
        return np.concatenate([self.u @ self.half, -self.half], axis=1)

    def times_cov(self, g: FloatArray) -> FloatArray:
        """C g per person, by blocks."""
        n_own = self.inv_d.shape[1]
        g_own, g_h = g[:, :n_own], g[:, n_own:]
        rhs = g_h - np.sum(self.u * g_own[:, :, None], axis=1)
        x_h = (self.half @ (np.swapaxes(self.half, 1, 2) @ rhs[:, :, None]))[:, :, 0]
        x_own = g_own * self.inv_d - np.sum(self.u * x_h[:, None, :], axis=2)
        return np.concatenate([x_own, x_h], axis=1)

    def entries(self, rows: IntArray, cols: IntArray) -> FloatArray:
        w = self.w
        own = np.where(rows == cols, self.own[:, rows], 0.0)
        return np.asarray(own + np.sum(w[:, rows] * w[:, cols], axis=2), dtype=np.float64)

    def cov_sum(self) -> FloatArray:
        w = self.w
        flat = np.swapaxes(w, 0, 1).reshape(w.shape[1], -1)
        return np.asarray(flat @ flat.T + np.diag(self.own.sum(axis=0)), dtype=np.float64)

    def slot_cov(self, c: _Chunk) -> FloatArray:
        """responses x L x L, as `_Chunk.slot_cov`."""
        w, own = self.w, self.own
        pos = c.vec_cells + (c.local * (w.shape[1] - c.k))[:, None]  # positions in persons x extended
        ws = w.reshape(w.shape[0] * w.shape[1], w.shape[2])[pos] * c.free[:, :, None]
        n_slots = pos.shape[1]
        cov = np.empty((len(pos), n_slots, n_slots))
        for i in range(n_slots):  # a few slots: products of (responses x H) columns beat a batched einsum
            for j in range(i + 1):
                cov[:, i, j] = cov[:, j, i] = np.sum(ws[:, i] * ws[:, j], axis=1)
        cov += (own.ravel()[pos] * c.free)[:, :, None] * np.eye(n_slots)
        return cov

    def calibration(
        self, c: _Chunk, v: FloatArray, a_o: FloatArray, rows: IntArray, cols: IntArray
    ) -> FloatArray:
        """Entries of C (sum_j v_j a_j a_j^T) C, what the items' calibration error adds (`_calibration_middle`):
        with C's column of response o's predictor b_o(x) = own_x a_o(x) + w_x . beta_o, beta_o = sum of its
        slots' a w, the sum over responses of v b_o(x) b_o(y) is taken by its parts per person."""
        n, k = c.n, c.k
        w, own = self.w, self.own
        ext, h = w.shape[1], w.shape[2]
        pos = c.vec_cells + (c.local * (ext - k))[:, None]
        ws = w.reshape(n * ext, h)[pos] * c.free[:, :, None]
        beta = np.sum(ws * a_o[:, :, None], axis=1)
        e = own.ravel()[pos] * a_o * c.free
        outer = v[:, None, None] * beta[:, :, None] * beta[:, None, :]
        cells = c.local[:, None, None] * (h * h) + np.arange(h * h).reshape(h, h)
        m = np.bincount(cells.ravel(), outer.ravel(), minlength=n * h * h).reshape(n, h, h)
        mixed = (v[:, None, None] * e[:, :, None] * beta[:, None, :]).reshape(-1)
        cells = (pos[:, :, None] * h + np.arange(h)).ravel()
        cross = np.bincount(cells, mixed, minlength=n * ext * h).reshape(n, ext, h)
        # the diagonal part: only entries asked for, each (row, col) numbered by `where` (others: a zero column)
        n_asked = len(rows)
        where = np.full((k, k), n_asked)
        where[rows, cols] = where[cols, rows] = np.arange(n_asked)
        dims = c.vec_cells - (c.local * k)[:, None]
        cells = c.local[:, None, None] * (n_asked + 1) + where[dims[:, :, None], dims[:, None, :]]
        pairs = (v[:, None, None] * e[:, :, None] * e[:, None, :]).ravel()
        own_part = np.bincount(cells.ravel(), pairs, minlength=n * (n_asked + 1)).reshape(n, -1)
        own_part = own_part[:, where[rows, cols]]
        wr, wc = w[:, rows], w[:, cols]
        return np.asarray(
            own_part + np.sum(wr * cross[:, cols] + cross[:, rows] * wc + (wr @ m) * wc, axis=2),
            dtype=np.float64,
        )


def _chunks(resp: _Responses, layout: _Layout, k: int) -> Iterator[_Chunk]:
    """Person chunks, built as they are needed: scoring a million persons holds one chunk at a time."""
    size = max(1, _CHUNK_FLOATS // (k * k))
    for p0 in range(0, resp.n_persons, size):
        p1 = min(resp.n_persons, p0 + size)
        rows = slice(int(resp.starts[p0]), int(resp.starts[p1]))
        local, item = resp.person[rows] - p0, resp.item[rows]
        dims, free = layout.dims[item], layout.free[item]
        vec = local[:, None] * k + dims
        flat = np.zeros((p1 - p0) * k, dtype=bool)
        flat[vec[free]] = True
        touched = flat.reshape(p1 - p0, k)
        width = max(1, int(touched.sum(axis=1).max(initial=0)))
        dims_p = np.argsort(~touched, axis=1, kind="stable")[:, :width]
        where = np.cumsum(touched, axis=1) - 1  # position of a touched dimension within dims_p
        pos = np.where(free, where[local[:, None], dims], 0)
        mat = local[:, None, None] * (width * width) + pos[:, :, None] * width + pos[:, None, :]
        touched_p = np.take_along_axis(touched, dims_p, axis=1)
        bucket = np.minimum(-(-touched_p.sum(axis=1) // 8) * 8, width)
        groups = tuple((np.flatnonzero(bucket == b), int(b)) for b in np.unique(bucket))
        yield _Chunk(
            p0, p1, rows, local, item, resp.score[rows], free, vec, dims_p, touched_p, mat, groups, k
        )


@dataclass(frozen=True)
class _Posteriors:
    """Gaussian variational posteriors N(theta_i, C_i) of all persons, kept in the summaries EM needs; under the
    factor prior on the extended coordinates (theta, z)."""

    theta: FloatArray
    cov_sum: FloatArray  # sum_i C_i
    logdet: FloatArray  # log det C_i per person
    slot_cov: FloatArray  # responses x L x L blocks of C_i

    @staticmethod
    def prior(resp: _Responses, chunks: list[_Chunk], cov: FloatArray, n_slots: int) -> _Posteriors:
        """Every person at the prior, whose covariance (of theta or of the extended coordinates) is ``cov``."""
        n = resp.n_persons
        slot_cov = np.empty((resp.item.size, n_slots, n_slots))
        for c in chunks:
            slot_cov[c.rows] = c.prior_slot_cov(cov[: c.k, : c.k])
        logdet = np.full(n, np.linalg.slogdet(cov)[1])
        return _Posteriors(np.zeros((n, len(cov))), n * cov, logdet, slot_cov)

    def rescaled(self, scale: FloatArray, slot_scale: FloatArray) -> _Posteriors:
        """The same posteriors in units where coordinate k is divided by scale[k]."""
        return self.mapped(np.diag(1.0 / scale), slot_scale)

    def mapped(self, transform: FloatArray, slot_scale: FloatArray | None) -> _Posteriors:
        """The same posteriors in the coordinates ``transform`` @ old, under which the responses' slots are
        divided by ``slot_scale`` (None: they do not move)."""
        slot_cov = self.slot_cov
        if slot_scale is not None:
            slot_cov = slot_cov / (slot_scale[:, :, None] * slot_scale[:, None, :])
        return _Posteriors(
            self.theta @ transform.T,
            transform @ self.cov_sum @ transform.T,
            self.logdet + 2.0 * np.linalg.slogdet(transform)[1],
            slot_cov,
        )


_Prior = FloatArray | _Factors  # the covariance of theta, or its factor form


def _prior_terms(prior: _Prior) -> tuple[FloatArray, float]:
    """Precision and log det covariance of the coordinates a posterior lives on."""
    if isinstance(prior, _Factors):
        return prior.precision(), prior.logdet()
    return np.asarray(np.linalg.inv(prior), dtype=np.float64), float(np.linalg.slogdet(prior)[1])


def _slot_cov(c: _Chunk, post: _Local | _Arrow) -> FloatArray:
    """The responses' slot covariances under a chunk's posteriors of either form."""
    return post.slot_cov(c) if isinstance(post, _Arrow) else c.slot_cov(post.cov)


def _e_step(
    chunks: list[_Chunk], a: FloatArray, d: FloatArray, w: FloatArray, prior: _Prior, post: _Posteriors
) -> tuple[_Posteriors, float]:
    """One variational update of every person's posterior; also returns the evidence lower bound before it."""
    n, k = post.theta.shape
    precision, logdet = _prior_terms(prior)
    elbo = 0.5 * (post.logdet.sum() - np.sum(precision * post.cov_sum) + n * (k - logdet))
    new = _Posteriors(np.empty_like(post.theta), np.zeros((k, k)), np.empty(n), np.empty_like(post.slot_cov))
    cov_sum = new.cov_sum
    for c in chunks:
        a_o = a[c.item]
        s = _spread(a_o, post.slot_cov[c.rows])
        theta, local, value = c.update(
            post.theta[c.p0 : c.p1], s, a_o, d[c.item], w[c.item], prior, precision
        )
        elbo += float(value.sum())
        new.theta[c.p0 : c.p1], new.logdet[c.p0 : c.p1] = theta, local.logdet
        if isinstance(local, _Arrow):
            cov_sum += local.cov_sum()
        else:
            assert not isinstance(prior, _Factors)
            cov_sum += local.cov_sum(prior, c)
        new.slot_cov[c.rows] = _slot_cov(c, local)
    return new, elbo


def _posterior(
    chunks: Iterable[_Chunk],
    a: FloatArray,
    d: FloatArray,
    w: FloatArray,
    prior: _Prior,
    theta0: FloatArray,
    slot_cov0: FloatArray | None,
    pairs: IntArray,
    item_cov: FloatArray | None,
    n_calibration: int = 0,
    max_steps: int = 20,
    tol: float = 1e-2,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Variational posteriors iterated, person by person, until neither the person's mean nor the spread of any
    of their responses moves by ``tol`` (in units of theta's population spread, far below any standard error);
    the means, standard errors and covariances at ``pairs`` (row >= col entries) of theta, chunk by chunk so
    that no (persons x K x K) array outlives its chunk. A person stops on their own: the result does not depend
    on which other persons share the chunk (a province scored in blocks gives what it gives scored whole).
    ``theta0`` starts the means (on the extended coordinates under the factor prior).

    With ``item_cov`` (per item, the covariance of its estimated slots and intercept) the covariances also
    carry the calibration error of the person's items (`_calibration_middle`) and of the scale's origin and
    unit, estimated from ``n_calibration`` persons."""
    n_persons = len(theta0)
    precision = _prior_terms(prior)[0]
    k = prior.k if isinstance(prior, _Factors) else len(prior)
    sigma = prior.covariance()[:k, :k] if isinstance(prior, _Factors) else prior
    theta = theta0.copy()
    se = np.empty((n_persons, k))
    pair_cov = np.empty((n_persons, len(pairs)))
    rows, cols = np.concatenate([np.arange(k), pairs[:, 0]]), np.concatenate([np.arange(k), pairs[:, 1]])
    for c in chunks:
        a_o, d_o, w_o, th = a[c.item], d[c.item], w[c.item], theta[c.p0 : c.p1]
        s = _spread(a_o, c.prior_slot_cov(sigma) if slot_cov0 is None else slot_cov0[c.rows])
        active = np.ones(c.n, dtype=bool)
        kept: _Local | _Arrow | None = None
        for _ in range(max_steps):
            new, local = c.update(th, s, a_o, d_o, w_o, prior, precision)[:2]
            new_s = _spread(a_o, _slot_cov(c, local))
            moved = np.abs(new - th).max(axis=1, initial=0.0)
            np.maximum.at(moved, c.local, np.abs(new_s - s))
            th = np.where(active[:, None], new, th)
            s = np.where(active[c.local], new_s, s)
            if kept is None:
                kept = local
            for field in dataclasses.fields(kept):
                getattr(kept, field.name)[active] = getattr(local, field.name)[active]
            active &= moved >= tol
            if not active.any():
                break
        assert kept is not None
        v = None if item_cov is None else _calibration_weights(c, th, s, a_o, d_o, w_o, item_cov[c.item])
        if isinstance(kept, _Arrow):
            values = kept.entries(rows, cols)
            if v is not None:
                values = values + kept.calibration(c, v, a_o, rows, cols)
        else:
            middle = None if v is None else _calibration_middle(c, v, a_o)
            values = kept.entries(sigma, c, rows, cols, middle)
        var, pair_var = values[:, :k], values[:, k:]
        if item_cov is not None:
            # the population's mean and spread, which define the scale, are estimated from n_calibration
            # persons too: a responding person at theta is placed with the variance (1 + theta^2 / 2) / n of
            # that estimate (one without responses keeps the population prior itself)
            answered = np.bincount(c.local, minlength=c.n) > 0
            origin = answered[:, None] * (1.0 + 0.5 * th[:, :k] ** 2) / n_calibration
            var = var + origin
            pair_var = pair_var + origin[:, pairs[:, 0]] * (pairs[:, 0] == pairs[:, 1])
        theta[c.p0 : c.p1] = th
        se[c.p0 : c.p1] = np.sqrt(var)
        pair_cov[c.p0 : c.p1] = pair_var
    return theta[:, :k], se, pair_cov


def _calibration_weights(
    c: _Chunk,
    theta: FloatArray,
    s: FloatArray,
    a_o: FloatArray,
    d_o: FloatArray,
    w_o: FloatArray,
    item_cov_o: FloatArray,
) -> FloatArray:
    """Per response, v_j = (w_j p'_j)^2 x_j^T V_j x_j of `_calibration_middle`."""
    slope = _gh(c.eta(theta, a_o, d_o), s, softplus=False)[1]
    x = np.concatenate([theta[:, : c.k].ravel()[c.vec_cells] * c.free, np.ones((len(a_o), 1))], axis=1)
    quad = np.sum(np.sum(item_cov_o * x[:, None, :], axis=2) * x, axis=1)
    return np.asarray((w_o * slope) ** 2 * quad, dtype=np.float64)


def _calibration_middle(c: _Chunk, v: FloatArray, a_o: FloatArray) -> FloatArray:
    """What the error of the estimated item parameters adds to each person's posterior covariance (delta method).

    The person's estimate solves sum_j w_j (y_j - p_j) a_j = prior term. Moving item j's slots and intercept
    psi_j = (a_j, d_j) by delta moves that score by -w_j p'_j a_j (theta_j, 1) . delta in expectation, so the
    estimate moves by C (that), with C the posterior covariance. Items are calibrated independently of each
    other, so the added covariance is C (sum_j v_j a_j a_j^T) C with v_j = (w_j p'_j)^2 x_j^T V_j x_j,
    x_j = (theta on item j's slots, 1) and V_j the covariance of psi_j. On a bank whose items have a handful of
    respondents each this is what makes the intervals of the most-assessed persons honest.

    Takes v per response (`_calibration_weights`); returns the middle matrix, which lives on the person's
    answered dimensions (persons x width x width over ``dims_p``; `_Local.entries` adds the sandwich).
    """
    n = c.n
    outer = v[:, None, None] * a_o[:, :, None] * a_o[:, None, :]
    width = c.dims_p.shape[1]
    summed = np.bincount(c.mat_cells.ravel(), outer.ravel(), minlength=n * width * width)
    return np.asarray(summed, dtype=np.float64).reshape(n, width, width)


# ------------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class _ItemPrior:
    """The hierarchical prior of the item parameters: a_jl ~ N(loading_mean[dim], 1/l2_a) for each loaded slot
    and d_j ~ N(intercept_mean_j, 1/l2_d), where intercept_mean_j averages the skill means of item j's skills."""

    loading_mean: FloatArray  # per dimension
    intercept_mean: FloatArray  # per item
    l2_a: float
    l2_d: float

    def centre(self, layout: _Layout) -> FloatArray:
        return np.where(layout.free, self.loading_mean[layout.dims], 0.0)

    def penalty(self, a: FloatArray, d: FloatArray, layout: _Layout) -> FloatArray:
        """Per item: minus the log prior density, up to a constant."""
        da = np.where(layout.free, a - self.centre(layout), 0.0)
        return 0.5 * (self.l2_a * np.sum(da**2, axis=1) + self.l2_d * (d - self.intercept_mean) ** 2)

    @staticmethod
    def fitted(
        a: FloatArray, d: FloatArray, layout: _Layout, skills: _SkillMeans, l2_a: float, l2_d: float
    ) -> _ItemPrior:
        """The skill means that maximise the prior density of the current item parameters (an exact M-step):
        each dimension's mean loading, and the skill intercepts whose per-item averages fit the intercepts in
        least squares (`_SkillMeans`)."""
        k = int(layout.dims.max(initial=0)) + 1
        dims = layout.dims[layout.free]
        n_loaded = np.bincount(dims, minlength=k)
        total = np.bincount(dims, a[layout.free], minlength=k)
        overall = total.sum() / max(n_loaded.sum(), 1)
        loading_mean = np.where(n_loaded > 0, total / np.maximum(n_loaded, 1), overall)
        return _ItemPrior(loading_mean, skills.fitted(d), l2_a, l2_d)


@dataclass(frozen=True)
class _SkillMeans:
    """Least squares of the intercepts on the items' skills: ``design`` has each item's skills weighted 1/count
    (its intercept's prior mean averages their means) and a column for the items with no skill of their own
    (they fall back on the mean intercept). The design is fixed for a fit, so its pseudo-inverse is taken once."""

    design: FloatArray
    pinv: FloatArray

    @staticmethod
    def of(Q: ArrayLike) -> _SkillMeans:
        q = np.asarray(Q).astype(bool).astype(np.float64)
        skills = q / np.maximum(q.sum(axis=1, keepdims=True), 1.0)
        design = np.concatenate([skills, (q.sum(axis=1, keepdims=True) == 0).astype(np.float64)], axis=1)
        # through the (skills x skills) Gram matrix: a far smaller problem than the design's own SVD
        with threadpool_limits(limits=1, user_api="blas"):
            return _SkillMeans(design, np.linalg.pinv(design.T @ design, hermitian=True) @ design.T)

    def fitted(self, d: FloatArray) -> FloatArray:
        """The per-item averages of the skill intercepts that fit ``d`` best (an orthogonal projection)."""
        return np.asarray(self.design @ (self.pinv @ d), dtype=np.float64)


def _item_newton(
    resp: _Responses,
    mu: FloatArray,
    slot_cov: FloatArray,
    a: FloatArray,
    d: FloatArray,
    w: FloatArray,
    layout: _Layout,
    prior: _ItemPrior,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """One Newton step per item on its expected penalised log-likelihood under the persons' posteriors.

    ``mu`` and ``slot_cov`` are, per response, the posterior mean and covariance of the item's slots. Items
    are independent given the posteriors, so the Hessian is block-diagonal (one (L+1)^2 block per item) and
    every block is solved at once. The objective is convex; a step that would raise it is halved. An item
    nobody answered lands on its prior mean (the objective is then the prior's quadratic).

    Also returns, per item, the inverse of that Hessian (the approximate covariance of its slots and intercept:
    their calibration error) and the dispersion at the old parameters: the mean squared residual over the mean
    Bernoulli variance. It is 1 for right/wrong answers (and for items nobody answered); a fractional score
    varies less around its expectation than a 0/1 one (about 1/n for n binomial points), so its responses
    deserve the weight 1/dispersion (quasi-likelihood).
    """
    n_items, n_slots = a.shape
    n_par = n_slots + 1
    item, y = resp.item, resp.score
    to_item = sp.csr_matrix((w[item], (item, np.arange(item.size))), shape=(n_items, item.size))
    ridge = np.concatenate([np.full(n_slots, prior.l2_a), [prior.l2_d]])
    centre = np.concatenate([prior.centre(layout), prior.intercept_mean[:, None]], axis=1)
    pad_fix = np.concatenate([~layout.free, np.zeros((n_items, 1), dtype=bool)], axis=1)

    a_o = a[item]
    c = np.sum(slot_cov * a_o[:, None, :], axis=2)
    s = np.sqrt(np.maximum(np.einsum("ol,ol->o", a_o, c), _MIN_VAR))
    m = np.einsum("ol,ol->o", a_o, mu) + d[item]
    e_sp, e_p, e_f, e_fz, e_fz2 = _gh(m, s, stein=True)
    value = np.asarray(to_item @ (e_sp - y * m)).ravel() + prior.penalty(a, d, layout)
    # E[(y - p)^2] = y^2 - 2 y E[p] + E[p] - E[p (1 - p)]
    squared = np.bincount(item, y * y - 2.0 * y * e_p + e_p - e_f, minlength=n_items)
    spread = np.bincount(item, e_f, minlength=n_items)
    dispersion = np.where(spread > _MIN_VAR, squared / np.maximum(spread, _MIN_VAR), 1.0)
    # Stein's lemma: E[sigmoid(eta) theta] = E[sigmoid] mu + E[sigmoid'] c, with c = Cov(theta, eta).
    g_obs = np.concatenate([(e_p - y)[:, None] * mu + e_f[:, None] * c, (e_p - y)[:, None]], axis=1)
    # Exact Hessian E[sigmoid'(eta) (theta,1)(theta,1)^T] from theta | eta = mu + c z / s + independent rest.
    fz_s, ff = e_fz / s, (e_fz2 - e_f) / s**2
    h_obs = np.empty((item.size, n_par, n_par))
    h_obs[:, :n_slots, :n_slots] = (
        e_f[:, None, None] * (slot_cov + mu[:, :, None] * mu[:, None, :])
        + fz_s[:, None, None] * (mu[:, :, None] * c[:, None, :] + c[:, :, None] * mu[:, None, :])
        + ff[:, None, None] * c[:, :, None] * c[:, None, :]
    )
    h_ad = e_f[:, None] * mu + fz_s[:, None] * c
    h_obs[:, :n_slots, n_slots] = h_ad
    h_obs[:, n_slots, :n_slots] = h_ad
    h_obs[:, n_slots, n_slots] = e_f
    params = np.concatenate([a, d[:, None]], axis=1)
    grad = np.asarray(to_item @ g_obs) + ridge * (params - centre)
    hess = np.asarray(to_item @ h_obs.reshape(item.size, -1)).reshape(n_items, n_par, n_par)
    hess += np.eye(n_par) * ridge
    grad[pad_fix] = 0.0
    hess[pad_fix] = 0.0
    hess += np.eye(n_par)[None] * pad_fix[:, :, None]
    item_cov = np.linalg.inv(hess) * ~(pad_fix[:, :, None] | pad_fix[:, None, :])
    step = -np.einsum("ipq,iq->ip", item_cov, grad)
    a, d = a.copy(), d.copy()
    todo = np.ones(n_items, dtype=bool)
    t = 1.0
    for _ in range(8):
        a_c, d_c = a + t * step[:, :n_slots], d + t * step[:, n_slots]
        a_co = a_c[item]
        m_c = np.einsum("ol,ol->o", a_co, mu) + d_c[item]
        e_c = _gh_softplus(m_c, _spread(a_co, slot_cov))
        cand = np.asarray(to_item @ (e_c - y * m_c)).ravel() + prior.penalty(a_c, d_c, layout)
        ok = todo & (cand <= value + 1e-9)
        a[ok], d[ok] = a_c[ok], d_c[ok]
        todo &= ~ok
        if not todo.any():
            break
        t *= 0.5
    return a, d, dispersion, item_cov


# ------------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Posterior:
    """Gaussian posteriors of some persons' competencies under a fitted model: means and standard errors
    (persons x dims) and the covariances at the model's ``pairs_`` (persons x pairs), which predictions need."""

    theta: FloatArray
    se: FloatArray
    pair_cov: FloatArray


def _sigma_log_prior(sigma: FloatArray, nu: float) -> float:
    """Log density, up to a constant, of the prior that shrinks the covariance of theta towards the identity:
    -nu/2 (log det sigma + trace sigma^-1), maximised with the data's nS by (nS + nu I) / (n + nu)."""
    if nu == 0.0 or not np.isfinite(nu):
        return 0.0
    return float(-0.5 * nu * (np.linalg.slogdet(sigma)[1] + np.trace(np.linalg.inv(sigma))))


def _expanded(
    scale: FloatArray, a: FloatArray, prior: _ItemPrior, layout: _Layout
) -> tuple[FloatArray, _ItemPrior, float, FloatArray]:
    """The loadings and item prior when each dimension's scale moves into its loadings, what the item prior gains
    by it and the slots' scales."""
    slot_scale = np.where(layout.free, scale[layout.dims], 1.0)
    scaled_a = a * slot_scale
    scaled_prior = dataclasses.replace(prior, loading_mean=prior.loading_mean * scale)
    gain = float(prior.penalty(a, prior.intercept_mean, layout).sum()) - float(
        scaled_prior.penalty(scaled_a, prior.intercept_mean, layout).sum()
    )
    return scaled_a, scaled_prior, gain, slot_scale


def _over_relaxed(sigma: FloatArray, target: FloatArray, second: FloatArray, n: int, nu: float) -> FloatArray:
    """The covariance ``_OVER_RELAX`` times as far from ``sigma`` as the EM update ``target``, if it is positive
    definite and the bound's covariance part (the expected log prior density of the persons' theta, with
    posterior second moment ``second``, plus the shrinkage prior) is at least what it was at ``sigma``; else
    ``target``. Either way the bound does not fall, and the structure (zeros) of both is kept."""

    def part(s: FloatArray) -> float:
        return float(
            -0.5 * n * (np.sum(np.linalg.inv(s) * second) + np.linalg.slogdet(s)[1]) + _sigma_log_prior(s, nu)
        )

    further = sigma + _OVER_RELAX * (target - sigma)
    if np.linalg.eigvalsh(further)[0] <= _MIN_VAR or part(further) < part(sigma):
        return target
    return further


class MIRT(BaseEstimator):  # type: ignore[misc]
    """Compensatory multidimensional 2PL over a Q-matrix, with hierarchical item parameters, scikit-learn style.

    Parameters
    ----------
    max_iter: EM iterations at most.
    tol: stop when an iteration raises the penalised evidence lower bound by less than this per response (nats):
        a scale that does not depend on the size of the data or on the constants of the priors.
    item_l2: precision of the prior of each loading a_jk around its dimension's mean loading. Loadings are
        the first thing a sparse bank overfits (an item with ten respondents can separate them), so the default
        keeps them close to the mean unless an item's respondents say otherwise.
    intercept_l2: precision of the prior of each intercept d_j around the mean of its skills' intercepts (an
        item with few respondents borrows from the items of the same skills; an unseen item gets that mean).
    covariance: "estimate" learns the correlations of theta (borrowing strength across competencies);
        "identity" keeps the competencies independent a priori.
    corr_shrinkage: weight of the identity in the estimated covariance of theta (keeps it well conditioned
        when a competency has few items); it is the prior `_sigma_log_prior`, part of the monitored bound.
        Applies to the full-rank covariance only.
    corr_rank: None: the correlations of the Q-matrix dimensions are a full matrix. An integer r: they are
        loadings loadings^T + diag(psi) with r common factors (the rank itself regularises them), which makes each
        person's posterior far cheaper on many skills (`_Arrow`); "identity" covariance then means r = 0. The
        fitted factors are ``factor_loadings_`` (Q-matrix dimensions x r) and ``uniqueness_`` (psi).
    general_factor: add a dimension every item loads on (last column of ``a_`` and ``theta_``), kept
        uncorrelated with the Q-matrix dimensions (bifactor structure).
    dispersion: estimate, per item with fractional (partial-credit or continuous) scores, how much less its
        scores scatter than 0/1 answers would, and weight its responses by the inverse (quasi-likelihood).
    calibration_error: let the standard errors and predictions carry the error of the estimated item
        parameters (`_calibration_middle`), not only the persons' own.
    random_state: seed of the jitter on the starting loadings.

    Learned state: ``a_`` (items x dims), ``d_`` (items), ``sigma_`` (dims x dims correlation), ``weights_``
    (per item: 1, or the inverse dispersion), ``item_cov_`` (per item, the covariance of its loaded slots and
    intercept), ``theta_`` and ``se_`` (posterior mean and standard deviation of the training persons),
    ``pairs_`` and ``pair_cov_`` (the posterior covariances predictions need, per training person),
    ``objective_`` (the penalised evidence lower bound EM maximises, per iteration), ``n_iter_``, ``converged_``.
    """

    def __init__(
        self,
        max_iter: int = 50,
        tol: float = 5e-4,
        item_l2: float = 10.0,
        intercept_l2: float = 1.0,
        covariance: Literal["estimate", "identity"] = "estimate",
        corr_shrinkage: float = 0.05,
        corr_rank: int | None = None,
        general_factor: bool = False,
        dispersion: bool = False,
        calibration_error: bool = True,
        random_state: int | None = 0,
    ) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.item_l2 = item_l2
        self.intercept_l2 = intercept_l2
        self.covariance = covariance
        self.corr_shrinkage = corr_shrinkage
        self.corr_rank = corr_rank
        self.general_factor = general_factor
        self.dispersion = dispersion
        self.calibration_error = calibration_error
        self.random_state = random_state

    # -------------------------------------------------------------------------------------------- fitting

    def fit(self, X: ArrayLike, Q: ArrayLike) -> MIRT:
        """Fit on a dense (persons x items) score array in [0, 1], NaN for cells not taken."""
        person, item, score, n_persons = _dense_to_long(X)
        return self.fit_long(person, item, score, n_persons, Q)

    def fit_long(
        self,
        person_idx: ArrayLike,
        item_idx: ArrayLike,
        score01: ArrayLike,
        n_persons: int,
        Q: ArrayLike,
    ) -> MIRT:
        """Fit on long-form responses: one row per (person, item) with the score scaled to [0, 1].

        Every step raises (or keeps) the monitored objective: the person E-step, the covariance of theta under
        its shrinkage prior, one Newton step per item and the skill means of the item prior, each with the
        others held fixed. The parameter expansion (dimension scales moved into the loadings) leaves the bound
        unchanged but moves the priors, so it is taken only where it does not lower the objective.
        """
        self._check_params()
        pattern = self._pattern(Q)
        skills = _SkillMeans.of(Q)
        n_items, k = pattern.shape
        resp = _responses(person_idx, item_idx, score01, n_persons, n_items)
        w = np.ones(n_items)
        weights_settled = not self.dispersion
        partial = (
            np.bincount(resp.item, (resp.score > 1e-9) & (resp.score < 1.0 - 1e-9), minlength=n_items) > 0
        )
        layout = _Layout.from_pattern(pattern)
        rng = np.random.default_rng(self.random_state)

        counts = np.bincount(resp.item, minlength=n_items)
        mean = (np.bincount(resp.item, resp.score, minlength=n_items) + 0.5) / (counts + 1.0)
        d = np.log(mean / (1.0 - mean))
        # Start with the loading mass of ~1 spread over an item's dimensions; the jitter breaks ties between
        # dimensions that measure the same items. A general factor starts with most of the mass: what the
        # specific factors add is the slow part for EM to find, so they start small.
        n_loaded = np.maximum(layout.free.sum(axis=1, keepdims=True), 1)
        start = 1.0 + 0.1 * rng.standard_normal(layout.free.shape)
        if self.general_factor:
            general = layout.dims == k - 1
            start = np.where(general, 1.0, 0.3 * start / np.sqrt(np.maximum(n_loaded - 1, 1)))
        else:
            start = start / np.sqrt(n_loaded)
        a = np.where(layout.free, start, 0.0)
        prior = _ItemPrior.fitted(a, d, layout, skills, self.item_l2, self.intercept_l2)
        nu = self._nu(n_persons)
        chunks = list(_chunks(resp, layout, k))
        theta_prior: _Prior = np.eye(k)
        if self.corr_rank is not None:
            rank = 0 if self.covariance == "identity" else self.corr_rank
            theta_prior = _Factors.start(k - int(self.general_factor), rank, self.general_factor, rng)
        cov = theta_prior.covariance() if isinstance(theta_prior, _Factors) else theta_prior
        post = _Posteriors.prior(resp, chunks, cov, layout.dims.shape[1])
        dims_o, free_o = layout.dims[resp.item], layout.free[resp.item]

        self.converged_ = False
        self.objective_: list[float] = []
        with threadpool_limits(limits=1, user_api="blas"):
            for it in range(1, self.max_iter + 1):
                post, elbo = _e_step(chunks, a, d, w, theta_prior, post)
                objective = elbo - float(prior.penalty(a, d, layout).sum())
                self.n_iter_ = it
                if isinstance(theta_prior, _Factors):
                    self.objective_.append(objective)
                    theta_prior, a, prior, post = self._update_factors(
                        post, theta_prior, a, prior, layout, resp
                    )
                else:
                    objective += _sigma_log_prior(theta_prior, nu)
                    self.objective_.append(objective)
                    theta_prior, a, prior, post = self._update_sigma(
                        post, theta_prior, a, prior, layout, resp, nu
                    )
                mu = np.where(free_o, post.theta[resp.person[:, None], dims_o], 0.0)
                a, d, phi, item_cov = _item_newton(resp, mu, post.slot_cov, a, d, w, layout, prior)
                prior = _ItemPrior.fitted(a, d, layout, skills, self.item_l2, self.intercept_l2)
                if not weights_settled:
                    new_w = np.where(partial, np.clip(1.0 / phi, 1.0 / _MAX_WEIGHT, _MAX_WEIGHT), 1.0)
                    # the bound moves with the weights, so convergence is judged once they have settled (they
                    # creep on slowly, by far less than their own sampling error)
                    weights_settled = bool(np.max(np.abs(new_w / w - 1.0)) < 0.05) or it >= _WEIGHT_ITERATIONS
                    w = new_w
                    continue
                log.debug("irt iteration %d: penalised evidence lower bound %.3f", it, objective)
                if len(self.objective_) > 1 and objective - self.objective_[-2] < self.tol * max(
                    resp.item.size, 1
                ):
                    self.converged_ = True
                    break
            # report theta on unit population variances (a reparametrisation: predictions do not move)
            sigma = theta_prior.covariance()[:k, :k] if isinstance(theta_prior, _Factors) else theta_prior
            scale = np.sqrt(np.diag(sigma))
            slot_scale = np.where(layout.free, scale[layout.dims], 1.0)
            a, sigma = a * slot_scale, sigma / np.outer(scale, scale)
            if isinstance(theta_prior, _Factors):
                theta_prior = theta_prior.rescaled(scale)
                scale = np.concatenate([scale, np.ones(theta_prior.ext - k)])
            else:
                theta_prior = sigma
            post = post.rescaled(scale, slot_scale[resp.item])
            par_scale = np.concatenate([slot_scale, np.ones((n_items, 1))], axis=1)
            item_cov = item_cov * par_scale[:, :, None] * par_scale[:, None, :]
            pairs = layout.pairs()
            used_cov = item_cov if self.calibration_error else None
            theta, se, pair_cov = _posterior(
                chunks, a, d, w, theta_prior, post.theta, post.slot_cov, pairs, used_cov, n_persons
            )

        a_dense = np.zeros((n_items, k))
        rows = np.broadcast_to(np.arange(n_items)[:, None], layout.dims.shape)
        a_dense[rows[layout.free], layout.dims[layout.free]] = a[layout.free]
        # A dimension and its loadings can flip sign together; report the one where loadings are positive.
        sign = np.where(a_dense.sum(axis=0) < 0.0, -1.0, 1.0)
        par_sign = np.concatenate(
            [np.where(layout.free, sign[layout.dims], 1.0), np.ones((n_items, 1))], axis=1
        )
        self.a_ = a_dense * sign
        self.d_ = d
        self.sigma_ = sigma * np.outer(sign, sign)
        if isinstance(theta_prior, _Factors):
            self.factor_loadings_ = theta_prior.loadings * sign[: theta_prior.n_own, None]
            self.uniqueness_ = theta_prior.psi
        self.item_cov_ = item_cov * par_sign[:, :, None] * par_sign[:, None, :]
        self.theta_ = theta * sign
        self.se_ = se
        self.pattern_ = pattern
        self.weights_ = w
        self.pairs_ = pairs
        self.pair_cov_ = pair_cov * sign[pairs[:, 0]] * sign[pairs[:, 1]]
        self.n_items_, self.n_dims_, self.n_calibration_ = n_items, k, n_persons
        return self

    def _check_params(self) -> None:
        if self.max_iter < 1:
            raise ValueError("max_iter must be at least 1")
        if self.tol <= 0.0:
            raise ValueError("tol must be positive")
        if self.item_l2 <= 0.0 or self.intercept_l2 <= 0.0:
            raise ValueError("item_l2 and intercept_l2 must be positive (they keep unseen items finite)")
        if self.covariance not in ("estimate", "identity"):
            raise ValueError("covariance must be 'estimate' or 'identity'")
        if not 0.0 <= self.corr_shrinkage <= 1.0:
            raise ValueError("corr_shrinkage must lie in [0, 1]")
        if self.corr_rank is not None and self.corr_rank < 0:
            raise ValueError("corr_rank must be None or at least 0")

    def _pattern(self, Q: ArrayLike) -> BoolArray:
        q = np.asarray(Q)
        if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] == 0:
            raise ValueError("Q must be a non-empty (items x competencies) 0/1 matrix")
        pattern = q.astype(bool)
        if self.general_factor:
            pattern = np.concatenate([pattern, np.ones((q.shape[0], 1), dtype=bool)], axis=1)
        if not pattern.any(axis=1).all():
            raise ValueError("every item needs at least one competency in Q (or general_factor=True)")
        return pattern

    def _nu(self, n_persons: int) -> float:
        """Weight of the shrinkage prior in persons, so that it makes corr_shrinkage of the covariance's update."""
        if self.covariance == "identity" or self.corr_shrinkage >= 1.0:
            return float("inf")
        return n_persons * self.corr_shrinkage / (1.0 - self.corr_shrinkage)

    def _update_sigma(
        self,
        post: _Posteriors,
        sigma: FloatArray,
        a: FloatArray,
        prior: _ItemPrior,
        layout: _Layout,
        resp: _Responses,
        nu: float,
    ) -> tuple[FloatArray, FloatArray, _ItemPrior, _Posteriors]:
        """The covariance of theta maximising the bound plus its shrinkage prior, then rescaled to unit variances.

        The update is (n S + nu I) / (n + nu), S the posterior second moment, restricted to the allowed
        structure (diagonal for "identity"; the general factor uncorrelated with the rest). The rescaling moves
        each dimension's scale into its loadings (parameter-expanded EM), which leaves the likelihood and the
        bound unchanged and speeds EM up a lot; it is skipped when the priors would lose by it. Returns the
        covariance, the loadings, the item prior and the posteriors in the units kept.
        """
        n, k = post.theta.shape
        second = (post.theta.T @ post.theta + post.cov_sum) / n
        if np.isfinite(nu):
            target = (n * second + nu * np.eye(k)) / (n + nu)
        else:
            target = np.diag(np.diag(second)) if self.covariance == "identity" else np.eye(k)
        if self.general_factor:
            target[-1, :-1] = target[:-1, -1] = 0.0
        if np.isfinite(nu):
            target = _over_relaxed(sigma, target, second, n, nu)
        scale = np.sqrt(np.maximum(np.diag(target), _MIN_VAR))
        scaled_sigma = target / np.outer(scale, scale)
        scaled_a, scaled_prior, gain, slot_scale = _expanded(scale, a, prior, layout)
        if gain + _sigma_log_prior(scaled_sigma, nu) - _sigma_log_prior(target, nu) < 0.0:
            return target, a, prior, post
        return scaled_sigma, scaled_a, scaled_prior, post.rescaled(scale, slot_scale[resp.item])

    def _update_factors(
        self,
        post: _Posteriors,
        factors: _Factors,
        a: FloatArray,
        prior: _ItemPrior,
        layout: _Layout,
        resp: _Responses,
    ) -> tuple[_Factors, FloatArray, _ItemPrior, _Posteriors]:
        """The factor prior maximising the bound, then rescaled to unit variances (as `_update_sigma`).

        Factor analysis's EM step on the posterior second moments: loadings = E[theta z^T] E[z z^T]^-1 and psi the
        residual variances. It is parameter-expanded twice: z is let have covariance E[z z^T] and mapped back to
        N(0, I) (the loadings take its Cholesky factor), and each dimension's scale moves into the items'
        loadings where the item prior does not lose by it. Both leave the bound unchanged and speed EM up."""
        n, k, n_own = len(post.theta), factors.k, factors.n_own
        second = (post.theta.T @ post.theta + post.cov_sum) / n
        zz, tz = second[k:, k:], second[:n_own, k:]
        loadings = np.linalg.solve(zz, tz.T).T if len(zz) else tz
        # over-relaxed (the loadings go _OVER_RELAX times as far as EM's, psi optimal for them): each
        # dimension's residual variance is a quadratic in the step, least at EM's and symmetric about it, so any
        # step short of twice EM's still raises the bound
        loadings = factors.loadings + _OVER_RELAX * (loadings - factors.loadings)
        resid = (
            np.diag(second)[:n_own]
            - 2.0 * np.sum(loadings * tz, axis=1)
            + np.einsum("kr,rs,ks->k", loadings, zz, loadings)
        )
        psi = np.maximum(resid, _MIN_UNIQUENESS)
        transform = np.eye(len(second))
        if len(zz):
            chol = np.linalg.cholesky(zz)
            loadings = np.asarray(loadings @ chol, dtype=np.float64)
            transform[k:, k:] = np.linalg.inv(chol)
        general = None if factors.general_var is None else float(second[n_own, n_own])
        target = _Factors(loadings, psi, general)
        scale = np.sqrt(np.diag(target.covariance())[:k])
        scaled_a, scaled_prior, gain, slot_scale = _expanded(scale, a, prior, layout)
        if gain < 0.0:
            return target, a, prior, post.mapped(transform, None)
        transform = np.diag(1.0 / np.concatenate([scale, np.ones(len(zz))])) @ transform
        return target.rescaled(scale), scaled_a, scaled_prior, post.mapped(transform, slot_scale[resp.item])

    def items_only(self) -> MIRT:
        """A copy with the item parameters only (all scoring needs), without the training persons'
        posteriors (``theta_``, ``se_``, ``pair_cov_``: persons x dims², large for a province)."""
        slim = copy.copy(self)
        for name in ("theta_", "se_", "pair_cov_"):
            slim.__dict__.pop(name, None)
        return slim

    # -------------------------------------------------------------------------------------------- scoring

    def transform(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and standard error of theta for new persons (rows of X), items held fixed."""
        person, item, score, n_persons = _dense_to_long(X)
        return self.transform_long(person, item, score, n_persons)

    def transform_long(
        self, person_idx: ArrayLike, item_idx: ArrayLike, score01: ArrayLike, n_persons: int
    ) -> tuple[FloatArray, FloatArray]:
        """Long-form ``transform``: persons 0..n_persons-1 with no response get the prior (0, 1)."""
        post = self.posterior_long(person_idx, item_idx, score01, n_persons)
        return post.theta, post.se

    def posterior_long(
        self, person_idx: ArrayLike, item_idx: ArrayLike, score01: ArrayLike, n_persons: int
    ) -> Posterior:
        """Posteriors of new persons 0..n_persons-1 from their responses, items held fixed; a person with no
        response gets the population prior (mean 0, covariance ``sigma_``), so `predict_proba` with this
        posterior predicts a newcomer from the population and the item.

        Persons are scored in chunks, so memory beyond the responses grows with n_persons x dims only.
        """
        check_is_fitted(self, "a_")
        resp = _responses(person_idx, item_idx, score01, n_persons, self.n_items_)
        layout = _Layout.from_pattern(self.pattern_)
        a = np.take_along_axis(self.a_, layout.dims, axis=1) * layout.free
        item_cov = self.item_cov_ if self.calibration_error else None
        prior = self._theta_prior()
        with threadpool_limits(limits=1, user_api="blas"):
            chunks = _chunks(resp, layout, self.n_dims_)
            theta0 = np.zeros((n_persons, prior.ext if isinstance(prior, _Factors) else self.n_dims_))
            theta, se, pair_cov = _posterior(
                chunks,
                a,
                self.d_,
                self.weights_,
                prior,
                theta0,
                None,
                self.pairs_,
                item_cov,
                self.n_calibration_,
            )
        return Posterior(theta, se, pair_cov)

    def _theta_prior(self) -> _Prior:
        """The fitted prior of theta: its factor form where ``corr_rank`` was set, else the covariance."""
        if self.corr_rank is None:
            return np.asarray(self.sigma_, dtype=np.float64)
        return _Factors(self.factor_loadings_, self.uniqueness_, 1.0 if self.general_factor else None)

    def predict_proba(
        self, person_idx: ArrayLike, item_idx: ArrayLike, posterior: Posterior | None = None
    ) -> FloatArray:
        """Posterior predictive probability of success (expected score in [0, 1]) of persons on items: the
        training persons by default, or the persons of ``posterior`` (from `posterior_long`). The spread of
        each linear predictor includes the person's posterior covariance and, with ``calibration_error``,
        the item's own calibration error."""
        check_is_fitted(self, "a_")
        if posterior is None:
            if not hasattr(self, "theta_"):
                raise ValueError("this model keeps no training persons (items_only): pass a posterior")
            posterior = Posterior(self.theta_, self.se_, self.pair_cov_)
        person = np.asarray(person_idx, dtype=np.int64).ravel()
        item = np.asarray(item_idx, dtype=np.int64).ravel()
        if person.shape != item.shape:
            raise ValueError("person_idx and item_idx must have the same length")
        if person.size and (person.min() < 0 or person.max() >= len(posterior.theta)):
            raise ValueError(f"person_idx must lie in [0, {len(posterior.theta)}) (the posterior's persons)")
        if item.size and (item.min() < 0 or item.max() >= self.n_items_):
            raise ValueError(f"item_idx must lie in [0, {self.n_items_})")
        a = self.a_[item]
        theta = posterior.theta[person]
        m = np.einsum("ok,ok->o", a, theta) + self.d_[item]
        # Var(a . theta) from the stored covariance entries; off-diagonal pairs count twice.
        r, c = self.pairs_[:, 0], self.pairs_[:, 1]
        weight = np.where(r == c, 1.0, 2.0) * a[:, r] * a[:, c]
        s2 = np.einsum("oq,oq->o", weight, posterior.pair_cov[person])
        if self.calibration_error:
            layout = _Layout.from_pattern(self.pattern_)
            slots = np.take_along_axis(theta, layout.dims[item], axis=1) * layout.free[item]
            x = np.concatenate([slots, np.ones((len(item), 1))], axis=1)
            s2 = s2 + np.einsum("op,opq,oq->o", x, self.item_cov_[item], x)
        return _gh(m, np.sqrt(np.maximum(s2, 0.0)), softplus=False)[0]

    def per_competency(self, posterior: Posterior | None = None) -> tuple[FloatArray, FloatArray]:
        """Per Q-matrix competency (persons x competencies): the estimate and standard error on the unit
        population scale, of the training persons by default or of ``posterior``'s persons.

        Without the general factor these are the dimensions themselves. With it, a competency is what its items
        measure: its own dimension and the general one, weighted by its items' mean loadings on each and scaled
        to unit population variance (the general dimension is uncorrelated with the others), so the estimate
        carries the person's general level as a reading of that competency's items would. A competency without
        items is its own dimension."""
        check_is_fitted(self, "a_")
        if posterior is None:
            if not hasattr(self, "theta_"):
                raise ValueError("this model keeps no training persons (items_only): pass a posterior")
            posterior = Posterior(self.theta_, self.se_, self.pair_cov_)
        if not self.general_factor:
            return posterior.theta, posterior.se
        k = self.n_dims_ - 1
        q = self.pattern_[:, :k]
        counts = np.maximum(q.sum(axis=0), 1)
        own = np.where(q.any(axis=0), (self.a_[:, :k] * q).sum(axis=0) / counts, 1.0)
        general = np.where(q.any(axis=0), (self.a_[:, k : k + 1] * q).sum(axis=0) / counts, 0.0)
        norm = np.sqrt(own**2 + general**2)
        u, v = own / norm, general / norm
        theta, se = posterior.theta, posterior.se
        # the posterior covariance of each competency's dimension with the general one, where items share them
        with_general = (self.pairs_[:, 0] == k) & (self.pairs_[:, 1] < k)
        where = np.full(k, -1)
        where[self.pairs_[with_general, 1]] = np.flatnonzero(with_general)
        cov = np.where(where >= 0, posterior.pair_cov[:, np.maximum(where, 0)], 0.0)
        estimate = u * theta[:, :k] + v * theta[:, k:]
        var = u**2 * se[:, :k] ** 2 + v**2 * se[:, k:] ** 2 + 2.0 * u * v * cov
        return estimate, np.sqrt(np.maximum(var, 0.0))
