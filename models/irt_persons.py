"""Person posteriors of the diagnostic model (`models.irt.MIRT`): the variational E-step and the scoring of persons.

Every person has a Gaussian posterior N(theta_i, C_i) with full covariance; each E-step (`e_step`) moves it once
towards the optimum of the evidence lower bound, by the fixed point C_i = (Sigma^-1 + sum_j E[sigmoid'] a_j a_j^T)^-1
and a Newton step on theta_i, computed in person chunks (`Chunk`). Under a full covariance prior the data term
lives on the dimensions the person's responses load on, so only those are factorised (`Local`); under the
factor-analytic prior (`Factors`) each posterior is an arrow over (theta, the factors) (`Arrow`).
`converged_posterior` iterates the updates per person to convergence with the items fixed and returns means,
standard errors (with the items' calibration error where asked) and the covariances predictions need.

Public surface, used by `models.irt`: the response and layout containers (`Responses`, `Layout`), the quadrature
(`gh`, `gh_softplus`, `spread`), the theta priors (`Prior`: a covariance or `Factors`; `prior_terms`), the chunks
(`split_chunks`, `Chunk`), the posteriors' summaries (`Posteriors`) and the two entry points `e_step` and
`converged_posterior`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Expectations over eta ~ N(m, s^2) with probabilists' Gauss-Hermite nodes; 7 nodes are within 1e-3 of the
# exact value for the spreads met here (s < 2), far below the sampling noise of any item.
_GH_Z, _GH_W = np.polynomial.hermite_e.hermegauss(7)
_GH_W = _GH_W / np.sqrt(2.0 * np.pi)
# Persons are processed in chunks so that the (persons x K x K) Hessian block stays near 32 MB.
_CHUNK_FLOATS = 4_000_000
MIN_VAR = 1e-12
# a Newton step on theta moves no coordinate further than this (posterior SDs are below 1)
_MAX_STEP = 2.0

# where the factor prior starts: first factor's loadings and the least residual variance (`Factors.start`)
_FACTOR_START = 0.95
_FACTOR_START_UNIQUENESS = 0.1


def _softplus(x: FloatArray) -> FloatArray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


@dataclass(frozen=True)
class Responses:
    """Responses in long form, sorted by person, with CSR offsets so person chunks are contiguous slices."""

    person: IntArray
    item: IntArray
    score: FloatArray
    n_persons: int
    starts: IntArray


@dataclass(frozen=True)
class Layout:
    """Where each item's loadings sit: slot l of item j loads on dimension ``dims[j, l]`` when ``free[j, l]``."""

    dims: IntArray
    free: BoolArray

    @staticmethod
    def from_pattern(pattern: BoolArray) -> Layout:
        n_slots = max(1, int(pattern.sum(axis=1).max(initial=0)))
        # Stable sort puts each row's loaded dimensions first, in column order; the rest is padding.
        order = np.argsort(~pattern, axis=1, kind="stable")[:, :n_slots]
        free = np.take_along_axis(pattern, order, axis=1)
        return Layout(dims=np.where(free, order, 0).astype(np.int64), free=free)

    def pairs(self) -> IntArray:
        """(row >= col) entries of a posterior covariance that some item's linear predictor involves."""
        lo = np.minimum(self.dims[:, :, None], self.dims[:, None, :])
        hi = np.maximum(self.dims[:, :, None], self.dims[:, None, :])
        both = self.free[:, :, None] & self.free[:, None, :]
        # one integer per (row, col), whose order is the pairs' lexicographic one (far faster than rows' unique)
        width = int(self.dims.max(initial=0)) + 1
        code = np.unique(hi[both].astype(np.int64) * width + lo[both])
        return np.stack([code // width, code % width], axis=1).astype(np.int64)


def gh(m: FloatArray, s: FloatArray, softplus: bool = True, stein: bool = False) -> tuple[FloatArray, ...]:
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


def gh_softplus(m: FloatArray, s: FloatArray) -> FloatArray:
    eta = m[:, None] + s[:, None] * _GH_Z[None, :]
    return _softplus(eta) @ _GH_W


def spread(a_o: FloatArray, slot_cov: FloatArray) -> FloatArray:
    """Posterior standard deviation of a_j . theta_i per response, from its slots' covariance block."""
    var = np.einsum("ol,ol->o", np.einsum("olm,om->ol", slot_cov, a_o), a_o)
    return np.sqrt(np.maximum(var, MIN_VAR), dtype=np.float64)


@dataclass(frozen=True)
class Chunk:
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

    @functools.cached_property
    def slot_dims(self) -> IntArray:
        """responses x L: the dimension each slot loads on (0 on padding)."""
        return np.asarray(self.vec_cells - (self.local * self.k)[:, None], dtype=np.int64)

    @functools.cached_property
    def pair_free(self) -> BoolArray:
        """responses x L x L: which slot pairs are both loaded."""
        return np.asarray(self.free[:, :, None] & self.free[:, None, :], dtype=np.bool_)

    @functools.cached_property
    def last_slot(self) -> IntArray:
        """per response, its last loaded slot (the general dimension's, where there is one)."""
        return np.asarray(self.free.sum(axis=1) - 1, dtype=np.int64)

    def eta(self, theta: FloatArray, a_o: FloatArray, d_o: FloatArray) -> FloatArray:
        return np.einsum("ol,ol->o", a_o, theta[:, : self.k].ravel()[self.vec_cells]) + d_o

    def elbo_part(
        self, theta: FloatArray, m: FloatArray, e_sp: FloatArray, w_o: FloatArray, precision: Precision
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
        prior: Prior,
        precision: Precision,
    ) -> tuple[FloatArray, Local | Arrow, FloatArray]:
        """One step of the Gaussian variational posterior N(theta, cov) of every person in the chunk.

        The covariance takes its fixed point cov = (prior precision + sum_j E[sigmoid'] a_j a_j^T)^-1 and the
        mean a Newton step, both with expectations over each response's current spread ``s``. Under a
        covariance the data term lives on the dimensions the person's responses load on, so the covariance is
        computed there (`Local`); under the factor prior ``theta`` holds the extended coordinates (theta, z),
        ``precision`` is theirs and the covariance is an arrow (`Arrow`). Returns the new mean, the new
        covariance and the bound's per-person part at the old mean.
        """
        n, k = self.n, self.k
        m = self.eta(theta, a_o, d_o)
        e_sp, e_p, e_f = gh(m, s)
        value = self.elbo_part(theta, m, e_sp, w_o, precision)
        resid = w_o * (self.y - e_p)
        grad = -(theta @ precision)
        grad[:, :k] += np.bincount(
            self.vec_cells.ravel(), (resid[:, None] * a_o).ravel(), minlength=n * k
        ).reshape(n, k)
        post: Local | Arrow
        if isinstance(prior, Factors):
            post = Arrow.solve(self, w_o * e_f, a_o, prior)
            step = post.times_cov(grad)
        else:
            outer = (w_o * e_f)[:, None, None] * a_o[:, :, None] * a_o[:, None, :]
            width = self.dims_p.shape[1]
            summed = np.bincount(self.mat_cells.ravel(), outer.ravel(), minlength=n * width * width)
            post = Local.solve(self, np.asarray(summed, dtype=np.float64).reshape(n, width, width), prior)
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
        precision: Precision,
    ) -> FloatArray:
        """Take the step where it raises the bound, halving it per person where not.

        For a fixed covariance the bound is concave in the mean, so halving always ends in an increase; the
        cap keeps a first step from a flat start sane for persons with all answers right (or wrong).
        """
        step = step * np.minimum(1.0, _MAX_STEP / np.maximum(np.abs(step).max(axis=1), MIN_VAR))[:, None]
        out = theta.copy()
        todo = np.ones(self.n, dtype=bool)
        t = 1.0
        for _ in range(8):
            cand = theta + t * step
            m = self.eta(cand, a_o, d_o)
            ok = todo & (self.elbo_part(cand, m, gh_softplus(m, s), w_o, precision) >= value - 1e-9)
            out[ok] = cand[ok]
            todo &= ~ok
            if not todo.any():
                break
            t *= 0.5
        return out

    def slot_cov(self, cov: FloatArray) -> FloatArray:
        """responses x L x L: the posterior covariance of the dimensions each response's slots load on."""
        return cov.ravel()[self.mat_cells] * self.pair_free

    def prior_slot_cov(self, sigma: FloatArray) -> FloatArray:
        dims, k = self.slot_dims, len(sigma)
        return np.take(sigma, dims[:, :, None] * k + dims[:, None, :]) * self.pair_free


@dataclass(frozen=True)
class Local:
    """Posterior covariances of a chunk's persons, each computed on the S dimensions its responses load on.

    With prior covariance Sigma and data precision D on those dimensions (zero elsewhere), the posterior
    covariance is C = (Sigma^-1 + D)^-1 = Sigma - Sigma_.S G Sigma_S. with G = (Sigma_SS + D^-1)^-1
    = D - D C_SS D (Woodbury), so only S x S matrices are factorised: C_SS = L (I + L^T D L)^-1 L^T with
    Sigma_SS = L L^T, and log det C = log det Sigma - log det (I + L^T D L). A person answering half the skills
    costs an eighth of the full factorisation; an unanswered dimension keeps the prior given the answered ones.
    Arrays are persons x width x width over ``Chunk.dims_p``, padded with identity (``cov``) and zero (``gain``).
    """

    cov: FloatArray  # C_SS
    gain: FloatArray  # G
    logdet: FloatArray  # log det C

    @staticmethod
    def solve(c: Chunk, data: FloatArray, sigma: FloatArray) -> Local:
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
        return Local(cov, gain, logdet + np.linalg.slogdet(sigma)[1])

    def times_cov(self, r: FloatArray, sigma: FloatArray, c: Chunk) -> FloatArray:
        """C r per person: Sigma r - Sigma_.S G (Sigma r)_S."""
        sr = r @ sigma
        v = np.einsum("pij,pj->pi", self.gain, np.take_along_axis(sr, c.dims_p, axis=1))
        spread = np.zeros_like(r)
        np.put_along_axis(spread, c.dims_p, v, axis=1)
        return np.asarray(sr - spread @ sigma, dtype=np.float64)

    def cov_sum(self, sigma: FloatArray, c: Chunk) -> FloatArray:
        """sum of C over the chunk's persons: n Sigma - Sigma (sum of G scattered onto the full dims) Sigma."""
        k = len(sigma)
        cells = c.dims_p[:, :, None] * k + c.dims_p[:, None, :]
        scattered = np.bincount(cells.ravel(), self.gain.ravel(), minlength=k * k).reshape(k, k)
        return np.asarray(c.n * sigma - sigma @ scattered @ sigma, dtype=np.float64)

    def entries(
        self, sigma: FloatArray, c: Chunk, rows: IntArray, cols: IntArray, middle: FloatArray | None = None
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
class Factors:
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

    def scale(self) -> FloatArray:
        """The standard deviations of theta's dimensions."""
        return np.sqrt(np.diag(self.covariance())[: self.k])

    def rescaled(self, scale: FloatArray) -> Factors:
        """The same prior in units where theta_k is divided by scale[k]."""
        own = scale[: self.n_own]
        general = None if self.general_var is None else self.general_var / scale[-1] ** 2
        return Factors(self.loadings / own[:, None], self.psi / own**2, general)

    @staticmethod
    def start(n_own: int, rank: int, general: bool, rng: np.random.Generator) -> Factors:
        """The dimensions start strongly correlated through the first factor, the other factors small and random.

        EM grows a factor from a small start slowly (measured on ASSIST2017: 8 factors started at loadings 0.1
        still gained 10^-3 nats per response at iteration 12; one factor started at 0.5 stalled for five
        iterations, at 0.8 and above it converged in 8-9)."""
        loadings = 0.1 * rng.standard_normal((n_own, rank))
        loadings[:, :1] = _FACTOR_START
        psi = np.maximum(1.0 - np.sum(loadings**2, axis=1), _FACTOR_START_UNIQUENESS)
        factors = Factors(loadings, psi, 1.0 if general else None)
        return factors.rescaled(factors.scale())


@dataclass(frozen=True)
class Arrow:
    """Posterior covariances of a chunk's persons under the factor prior, on the extended coordinates.

    The posterior precision is the prior's (`Factors.precision`) plus the data's. Keeping every coupling the
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
    own: FloatArray  # persons x extended coordinates: the diagonal part of each covariance
    w: FloatArray  # persons x extended coordinates x H: the low-rank part, C = diag(own) + w w^T

    @staticmethod
    def solve(c: Chunk, f: FloatArray, a_o: FloatArray, factors: Factors) -> Arrow:
        """From the data's weights f = w E[sigmoid'] per response and its slots' loadings ``a_o``."""
        n, k, n_own = c.n, c.k, factors.n_own
        r = factors.loadings.shape[1]
        h = factors.ext - n_own
        cells = c.vec_cells.ravel()
        fa = f[:, None] * a_o
        # an item of several skills couples them; the coupling is dropped and, so that the precision stays
        # positive definite, bounded by each skill's share: 2 a_l a_m t_l t_m <= |a_l a_m| (t_l^2 + t_m^2)
        own = np.abs(a_o) * ((c.slot_dims < n_own) & c.free)
        split = f[:, None] * own * (own.sum(axis=1, keepdims=True) - own)
        diag = np.bincount(cells, (fa * a_o + split).ravel(), minlength=n * k).reshape(n, k)
        lp = factors.loadings / factors.psi[:, None]
        coupling = np.empty((n, n_own, h))
        coupling[:, :, h - r :] = -lp
        q_hh = np.zeros((n, h, h))
        q_hh[:, h - r :, h - r :] = np.eye(r) + factors.loadings.T @ lp
        if factors.general_var is not None:
            # the general dimension is each item's last loaded slot
            a_g = np.take_along_axis(a_o, c.last_slot[:, None], axis=1)[:, 0]
            column = np.bincount(cells, (fa * a_g[:, None]).ravel(), minlength=n * k).reshape(n, k)
            coupling[:, :, 0] = column[:, :n_own]
            q_hh[:, 0, 0] = 1.0 / factors.general_var + diag[:, n_own]
        inv_d = 1.0 / (1.0 / factors.psi + diag[:, :n_own])
        u = coupling * inv_d[:, :, None]
        chol = np.linalg.cholesky(q_hh - np.swapaxes(coupling, 1, 2) @ u)
        half = np.swapaxes(np.linalg.inv(chol), 1, 2)
        logdet = np.log(inv_d).sum(axis=1) - 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        own = np.concatenate([inv_d, np.zeros((n, h))], axis=1)
        return Arrow(u, inv_d, half, logdet, own, np.concatenate([u @ half, -half], axis=1))

    def times_cov(self, g: FloatArray) -> FloatArray:
        """C g per person, by blocks."""
        n_own = self.inv_d.shape[1]
        g_own, g_h = g[:, :n_own], g[:, n_own:]
        rhs = g_h - (g_own[:, None, :] @ self.u)[:, 0]
        x_h = (self.half @ (np.swapaxes(self.half, 1, 2) @ rhs[:, :, None]))[:, :, 0]
        x_own = g_own * self.inv_d - (self.u @ x_h[:, :, None])[:, :, 0]
        return np.concatenate([x_own, x_h], axis=1)

    def entries(self, rows: IntArray, cols: IntArray) -> FloatArray:
        w = self.w
        own = np.where(rows == cols, self.own[:, rows], 0.0)
        return np.asarray(own + np.sum(w[:, rows] * w[:, cols], axis=2), dtype=np.float64)

    def cov_sum(self) -> FloatArray:
        w = self.w
        flat = np.swapaxes(w, 0, 1).reshape(w.shape[1], -1)
        return np.asarray(flat @ flat.T + np.diag(self.own.sum(axis=0)), dtype=np.float64)

    def slots(self, c: Chunk) -> tuple[FloatArray, FloatArray, IntArray]:
        """Per response and slot: the low-rank rows w (H x responses x L) and the diagonal parts ``own``
        (responses x L), zero on padding, and their positions in the (persons x extended coordinates) block."""
        w = self.w
        pos = c.vec_cells + (c.local * (w.shape[1] - c.k))[:, None]
        # (H first: each coordinate's gather and the products below run over contiguous responses x L blocks)
        ws = np.take(np.moveaxis(w, 2, 0).reshape(w.shape[2], w.shape[0] * w.shape[1]), pos, axis=1)
        ws *= c.free
        return ws, np.take(self.own, pos) * c.free, pos

    def slot_cov(self, c: Chunk) -> FloatArray:
        """responses x L x L, as `Chunk.slot_cov`."""
        ws, own, _ = self.slots(c)
        cov = np.zeros(own.shape + own.shape[1:]) if not len(ws) else ws[0][:, :, None] * ws[0][:, None, :]
        for wh in ws[1:]:
            cov += wh[:, :, None] * wh[:, None, :]
        diagonal = np.arange(own.shape[1])
        cov[:, diagonal, diagonal] += own
        return cov

    def spread(self, c: Chunk, a_o: FloatArray) -> FloatArray:
        """`spread` of each response under these posteriors, without forming the slots' covariances:
        Var(a . theta) = sum_l own_l a_l^2 + |sum_l a_l w_l|^2."""
        ws, own, _ = self.slots(c)
        beta = np.einsum("hol,ol->oh", ws, a_o)
        var = np.einsum("oh,oh->o", beta, beta) + np.einsum("ol,ol->o", own, a_o * a_o)
        return np.sqrt(np.maximum(var, MIN_VAR), dtype=np.float64)

    def calibration(
        self, c: Chunk, v: FloatArray, a_o: FloatArray, rows: IntArray, cols: IntArray
    ) -> FloatArray:
        """Entries of C (sum_j v_j a_j a_j^T) C, what the items' calibration error adds (`_calibration_middle`):
        with C's column of response o's predictor b_o(x) = own_x a_o(x) + w_x . beta_o, beta_o = sum of its
        slots' a w, the sum over responses of v b_o(x) b_o(y) is taken by its parts per person."""
        n, k = c.n, c.k
        w = self.w
        ext, h = w.shape[1], w.shape[2]
        ws, own_o, pos = self.slots(c)
        beta = np.einsum("hol,ol->oh", ws, a_o)
        e = own_o * a_o
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
        dims = c.slot_dims
        cells = c.local[:, None, None] * (n_asked + 1) + where[dims[:, :, None], dims[:, None, :]]
        pairs = (v[:, None, None] * e[:, :, None] * e[:, None, :]).ravel()
        own_part = np.bincount(cells.ravel(), pairs, minlength=n * (n_asked + 1)).reshape(n, -1)
        own_part = own_part[:, where[rows, cols]]
        wr, wc = w[:, rows], w[:, cols]
        return np.asarray(
            own_part + np.sum(wr * cross[:, cols] + cross[:, rows] * wc + (wr @ m) * wc, axis=2),
            dtype=np.float64,
        )


def split_chunks(resp: Responses, layout: Layout, k: int) -> Iterator[Chunk]:
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
        yield Chunk(p0, p1, rows, local, item, resp.score[rows], free, vec, dims_p, touched_p, mat, groups, k)


@dataclass(frozen=True)
class Posteriors:
    """Gaussian variational posteriors N(theta_i, C_i) of all persons, kept in the summaries EM needs; under the
    factor prior on the extended coordinates (theta, z)."""

    theta: FloatArray
    cov_sum: FloatArray  # sum_i C_i
    logdet: FloatArray  # log det C_i per person
    slot_cov: FloatArray  # responses x L x L blocks of C_i

    @staticmethod
    def prior(resp: Responses, chunks: list[Chunk], cov: FloatArray, n_slots: int) -> Posteriors:
        """Every person at the prior, whose covariance (of theta or of the extended coordinates) is ``cov``."""
        n = resp.n_persons
        slot_cov = np.empty((resp.item.size, n_slots, n_slots))
        for c in chunks:
            slot_cov[c.rows] = c.prior_slot_cov(cov[: c.k, : c.k])
        logdet = np.full(n, np.linalg.slogdet(cov)[1])
        return Posteriors(np.zeros((n, len(cov))), n * cov, logdet, slot_cov)

    def rescaled(self, scale: FloatArray, slot_scale: FloatArray) -> Posteriors:
        """The same posteriors in units where coordinate k is divided by scale[k]."""
        return self.mapped(np.diag(1.0 / scale), slot_scale)

    def mapped(self, transform: FloatArray, slot_scale: FloatArray | None) -> Posteriors:
        """The same posteriors in the coordinates ``transform`` @ old, under which the responses' slots are
        divided by ``slot_scale`` (None: they do not move)."""
        slot_cov = self.slot_cov
        if slot_scale is not None:
            slot_cov = slot_cov / (slot_scale[:, :, None] * slot_scale[:, None, :])
        diagonal = not np.any(transform - np.diag(np.diag(transform)))
        return Posteriors(
            # (a rescaling alone: each coordinate times its scale, which is what the product gives)
            self.theta * np.diag(transform) if diagonal else self.theta @ transform.T,
            transform @ self.cov_sum @ transform.T,
            self.logdet + 2.0 * np.linalg.slogdet(transform)[1],
            slot_cov,
        )


Prior = FloatArray | Factors  # the covariance of theta, or its factor form
Precision: TypeAlias = (
    "FloatArray | sp.csr_matrix"  # a prior's precision, dense or (the factor prior's) sparse
)


def prior_terms(prior: Prior) -> tuple[FloatArray, float]:
    """Precision and log det covariance of the coordinates a posterior lives on."""
    if isinstance(prior, Factors):
        return prior.precision(), prior.logdet()
    return np.asarray(np.linalg.inv(prior), dtype=np.float64), float(np.linalg.slogdet(prior)[1])


def _acting(precision: FloatArray, prior: Prior) -> Precision:
    """The precision as the persons' updates multiply by it: the factor prior's is a diagonal plus the few rows and
    columns of the general dimension and the factors, so it is kept sparse (the product costs K (1 + r) per person,
    not (K + r)^2)."""
    return sp.csr_matrix(precision) if isinstance(prior, Factors) else precision


def _slot_cov(c: Chunk, post: Local | Arrow) -> FloatArray:
    """The responses' slot covariances under a chunk's posteriors of either form."""
    return post.slot_cov(c) if isinstance(post, Arrow) else c.slot_cov(post.cov)


def _spread_of(c: Chunk, post: Local | Arrow, a_o: FloatArray) -> FloatArray:
    """`spread` of the responses under a chunk's posteriors of either form."""
    return post.spread(c, a_o) if isinstance(post, Arrow) else spread(a_o, c.slot_cov(post.cov))


def e_step(
    chunks: list[Chunk], a: FloatArray, d: FloatArray, w: FloatArray, prior: Prior, post: Posteriors
) -> tuple[Posteriors, float]:
    """One variational update of every person's posterior; also returns the evidence lower bound before it."""
    n, k = post.theta.shape
    precision, logdet = prior_terms(prior)
    acting = _acting(precision, prior)
    elbo = 0.5 * (post.logdet.sum() - np.sum(precision * post.cov_sum) + n * (k - logdet))
    new = Posteriors(np.empty_like(post.theta), np.zeros((k, k)), np.empty(n), np.empty_like(post.slot_cov))
    cov_sum = new.cov_sum
    for c in chunks:
        a_o = np.take(a, c.item, axis=0)  # (take: a fast row gather)
        s = spread(a_o, post.slot_cov[c.rows])
        theta, local, value = c.update(post.theta[c.p0 : c.p1], s, a_o, d[c.item], w[c.item], prior, acting)
        elbo += float(value.sum())
        new.theta[c.p0 : c.p1], new.logdet[c.p0 : c.p1] = theta, local.logdet
        if isinstance(local, Arrow):
            cov_sum += local.cov_sum()
        else:
            assert not isinstance(prior, Factors)
            cov_sum += local.cov_sum(prior, c)
        new.slot_cov[c.rows] = _slot_cov(c, local)
    return new, elbo


def converged_posterior(
    chunks: Iterable[Chunk],
    a: FloatArray,
    d: FloatArray,
    w: FloatArray,
    prior: Prior,
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
    precision = _acting(prior_terms(prior)[0], prior)
    k = prior.k if isinstance(prior, Factors) else len(prior)
    sigma = prior.covariance()[:k, :k] if isinstance(prior, Factors) else prior
    theta = theta0.copy()
    se = np.empty((n_persons, k))
    pair_cov = np.empty((n_persons, len(pairs)))
    rows, cols = np.concatenate([np.arange(k), pairs[:, 0]]), np.concatenate([np.arange(k), pairs[:, 1]])
    for c in chunks:
        a_o, d_o, w_o, th = np.take(a, c.item, axis=0), d[c.item], w[c.item], theta[c.p0 : c.p1]
        s = spread(a_o, c.prior_slot_cov(sigma) if slot_cov0 is None else slot_cov0[c.rows])
        active = np.ones(c.n, dtype=bool)
        kept: Local | Arrow | None = None
        for _ in range(max_steps):
            new, local = c.update(th, s, a_o, d_o, w_o, prior, precision)[:2]
            new_s = _spread_of(c, local, a_o)
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
        if isinstance(kept, Arrow):
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
    c: Chunk,
    theta: FloatArray,
    s: FloatArray,
    a_o: FloatArray,
    d_o: FloatArray,
    w_o: FloatArray,
    item_cov_o: FloatArray,
) -> FloatArray:
    """Per response, v_j = (w_j p'_j)^2 x_j^T V_j x_j of `_calibration_middle`."""
    slope = gh(c.eta(theta, a_o, d_o), s, softplus=False)[1]
    x = np.concatenate([theta[:, : c.k].ravel()[c.vec_cells] * c.free, np.ones((len(a_o), 1))], axis=1)
    quad = np.sum(np.sum(item_cov_o * x[:, None, :], axis=2) * x, axis=1)
    return np.asarray((w_o * slope) ** 2 * quad, dtype=np.float64)


def _calibration_middle(c: Chunk, v: FloatArray, a_o: FloatArray) -> FloatArray:
    """What the error of the estimated item parameters adds to each person's posterior covariance (delta method).

    The person's estimate solves sum_j w_j (y_j - p_j) a_j = prior term. Moving item j's slots and intercept
    psi_j = (a_j, d_j) by delta moves that score by -w_j p'_j a_j (theta_j, 1) . delta in expectation, so the
    estimate moves by C (that), with C the posterior covariance. Items are calibrated independently of each
    other, so the added covariance is C (sum_j v_j a_j a_j^T) C with v_j = (w_j p'_j)^2 x_j^T V_j x_j,
    x_j = (theta on item j's slots, 1) and V_j the covariance of psi_j. On a bank whose items have a handful of
    respondents each this is what makes the intervals of the most-assessed persons honest.

    Takes v per response (`_calibration_weights`); returns the middle matrix, which lives on the person's
    answered dimensions (persons x width x width over ``dims_p``; `Local.entries` adds the sandwich).
    """
    n = c.n
    outer = v[:, None, None] * a_o[:, :, None] * a_o[:, None, :]
    width = c.dims_p.shape[1]
    summed = np.bincount(c.mat_cells.ravel(), outer.ravel(), minlength=n * width * width)
    return np.asarray(summed, dtype=np.float64).reshape(n, width, width)
