"""Diagnostic model (诊断模型): a multidimensional compensatory IRT model (M2PL) over a Q-matrix.

Turns item responses into per-competency estimates with standard errors, which the teacher portraits read.

Model: P(x_ij = 1 | theta_i) = sigmoid(sum_k a_jk theta_ik + d_j), with a_jk free only where the Q-matrix says
item j measures competency k (plus, optionally, a general factor every item loads on). Scores in [0, 1]
(partial credit divided by the full score) enter as fractional Bernoulli outcomes. theta_i ~ N(0, Sigma) with
unit variances; the correlations are estimated, which lets a competency with few items borrow strength from
the correlated ones.

Estimation is variational EM with a Laplace posterior per person: the E-step finds every person's MAP theta
and the inverse Hessian (vectorised Newton over all persons at once); the M-step updates Sigma from the
posterior moments and the item parameters by Newton on the expected log-likelihood under those Gaussian
posteriors (one-dimensional Gauss-Hermite quadrature per response, Stein's lemma for the gradients). Using the
posterior spread, not only the modes, keeps the item estimates and Sigma close to marginal maximum likelihood
and the standard errors honest; ``method="jml"`` drops the spread (joint MAP), for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Expectations over eta ~ N(m, s^2) with probabilists' Gauss-Hermite nodes; 11 nodes are exact to well below
# the sampling noise of any item for the spreads met here (s < 3).
_GH_Z, _GH_W = np.polynomial.hermite_e.hermegauss(11)
_GH_W = _GH_W / np.sqrt(2.0 * np.pi)
# Persons are processed in chunks so that the (persons x K x K) Hessian block stays near 64 MB.
_CHUNK_FLOATS = 8_000_000
_MIN_VAR = 1e-12


def _sigmoid(x: FloatArray) -> FloatArray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0.0, 1.0, e) / (1.0 + e)


def _softplus(x: FloatArray) -> FloatArray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid_softplus(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0.0, 1.0, e) / (1.0 + e), np.maximum(x, 0.0) + np.log1p(e)


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


def _responses(
    person_idx: ArrayLike, item_idx: ArrayLike, score01: ArrayLike, n_persons: int, n_items: int
) -> _Responses:
    person = np.asarray(person_idx, dtype=np.int64).ravel()
    item = np.asarray(item_idx, dtype=np.int64).ravel()
    score = np.asarray(score01, dtype=np.float64).ravel()
    if not (person.shape == item.shape == score.shape):
        raise ValueError("person_idx, item_idx and score01 must have the same length")
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


def _gh_moments(m: FloatArray, s: FloatArray) -> tuple[FloatArray, ...]:
    """E[softplus], E[sigmoid], E[sigmoid'], E[sigmoid' z], E[sigmoid' z^2] for eta = m + s z, z ~ N(0, 1)."""
    prob, soft = _sigmoid_softplus(m[:, None] + s[:, None] * _GH_Z[None, :])
    slope = prob * (1.0 - prob)
    return (
        soft @ _GH_W,
        prob @ _GH_W,
        slope @ _GH_W,
        slope @ (_GH_W * _GH_Z),
        slope @ (_GH_W * _GH_Z**2),
    )


# ----------------------------------------------------------------------------------------------- persons


def _scatter_vectors(local: IntArray, values: FloatArray, dims: IntArray, n: int, k: int) -> FloatArray:
    flat = (local[:, None] * k + dims).ravel()
    return np.bincount(flat, values.ravel(), minlength=n * k).reshape(n, k)


def _scatter_outer(
    local: IntArray, w: FloatArray, a: FloatArray, dims: IntArray, n: int, k: int
) -> FloatArray:
    flat = (local[:, None, None] * (k * k) + dims[:, :, None] * k + dims[:, None, :]).ravel()
    vals = (w[:, None, None] * a[:, :, None] * a[:, None, :]).ravel()
    return np.bincount(flat, vals, minlength=n * k * k).reshape(n, k, k)


def _response_spread(cov: FloatArray, local: IntArray, a: FloatArray, dims: IntArray) -> FloatArray:
    """Standard deviation of a_j . theta_i under person i's Gaussian posterior, for every response."""
    c_obs = cov[local[:, None, None], dims[:, :, None], dims[:, None, :]]
    return np.sqrt(np.maximum(np.einsum("ol,olm,om->o", a, c_obs, a), _MIN_VAR))


def _person_chunk(
    local: IntArray,
    y: FloatArray,
    a: FloatArray,
    d: FloatArray,
    dims: IntArray,
    precision: FloatArray,
    theta: FloatArray,
    cov: FloatArray,
    variational: bool,
    max_newton: int,
    tol: float,
) -> tuple[FloatArray, FloatArray]:
    """Gaussian posterior N(theta, cov) for one chunk of persons; ``a``, ``d``, ``dims`` are per response.

    Variational: the Gaussian maximising the evidence lower bound (ELBO), by the fixed point
    cov = (prior precision + sum_j E[sigmoid'(eta)] a_j a_j^T)^-1 and Newton steps on the mean with
    expectations over eta ~ N(m, s^2). Laplace: the same with s = 0, i.e. the mode and the inverse Hessian.
    Every step is checked against the bound per person (step halving), so the chunk never gets worse.
    """
    n, k = theta.shape

    def expectations(th: FloatArray, cv: FloatArray) -> tuple[FloatArray, ...]:
        m = np.einsum("ol,ol->o", a, th[local[:, None], dims]) + d
        if variational:
            e_sp, e_p, e_f = _gh_moments(m, _response_spread(cv, local, a, dims))[:3]
            return m, e_sp, e_p, e_f
        e_p, e_sp = _sigmoid_softplus(m)
        return m, e_sp, e_p, e_p * (1.0 - e_p)

    def bound(
        th: FloatArray, cv: FloatArray, logdet: FloatArray, m: FloatArray, e_sp: FloatArray
    ) -> FloatArray:
        value = np.bincount(local, y * m - e_sp, minlength=n) - 0.5 * np.einsum(
            "pk,kl,pl->p", th, precision, th
        )
        if variational:
            value += 0.5 * (logdet - np.einsum("kl,plk->p", precision, cv))
        return value

    theta = theta.copy()
    m, e_sp, e_p, e_f = expectations(theta, cov)
    for it in range(max_newton + 1):
        hess = precision + _scatter_outer(local, e_f, a, dims, n, k)
        cov = np.linalg.inv(hess)
        if it == max_newton:
            break
        if variational:
            # The covariance moved, so the expectations at the current mean move with it.
            m, e_sp, e_p, e_f = expectations(theta, cov)
        grad = _scatter_vectors(local, (y - e_p)[:, None] * a, dims, n, k) - theta @ precision
        step = np.einsum("pkl,pl->pk", cov, grad)
        if np.max(np.abs(step), initial=0.0) < tol:
            break
        logdet = -np.linalg.slogdet(hess)[1]
        value = bound(theta, cov, logdet, m, e_sp)
        gain = np.einsum("pk,pk->p", grad, step)
        # With the covariance fixed the bound is concave in the mean, so halving always finds an increase.
        t = np.ones(n)
        todo = np.ones(n, dtype=bool)
        for _ in range(30):
            cand = theta + t[:, None] * step
            cm, c_sp, c_p, c_f = expectations(cand, cov)
            cand_value = bound(cand, cov, logdet, cm, c_sp)
            # Near the optimum the predicted gain is below rounding error: take the step as it is.
            ok = todo & ((cand_value >= value + 1e-4 * t * gain) | (gain < 1e-10))
            theta[ok] = cand[ok]
            ok_obs = ok[local]
            m[ok_obs], e_sp[ok_obs], e_p[ok_obs], e_f[ok_obs] = (
                cm[ok_obs],
                c_sp[ok_obs],
                c_p[ok_obs],
                c_f[ok_obs],
            )
            todo &= ~ok
            if not todo.any():
                break
            t[todo] *= 0.5
    return theta, cov


def _person_posterior(
    resp: _Responses,
    a: FloatArray,
    d: FloatArray,
    layout: _Layout,
    sigma: FloatArray,
    theta0: FloatArray,
    cov0: FloatArray,
    variational: bool,
    max_newton: int,
    tol: float,
) -> tuple[FloatArray, FloatArray]:
    """Gaussian posterior N(theta, cov) of every person given fixed item parameters and prior N(0, sigma)."""
    n_persons, k = theta0.shape
    precision = np.linalg.inv(sigma)
    theta = np.empty((n_persons, k))
    cov = np.empty((n_persons, k, k))
    chunk = max(1, _CHUNK_FLOATS // (k * k))
    for p0 in range(0, n_persons, chunk):
        p1 = min(n_persons, p0 + chunk)
        o0, o1 = resp.starts[p0], resp.starts[p1]
        item = resp.item[o0:o1]
        theta[p0:p1], cov[p0:p1] = _person_chunk(
            resp.person[o0:o1] - p0,
            resp.score[o0:o1],
            a[item],
            d[item],
            layout.dims[item],
            precision,
            theta0[p0:p1],
            cov0[p0:p1],
            variational,
            max_newton,
            tol,
        )
    return theta, cov


# ------------------------------------------------------------------------------------------------- items


def _item_newton(
    resp: _Responses,
    theta: FloatArray,
    cov: FloatArray,
    a: FloatArray,
    d: FloatArray,
    layout: _Layout,
    l2_a: float,
    l2_d: float,
    n_steps: int,
) -> tuple[FloatArray, FloatArray]:
    """Newton steps on each item's expected penalised log-likelihood under the persons' Gaussian posteriors.

    Items are independent given the posteriors, so the Hessian is block-diagonal (one (L+1)^2 block per item)
    and every block is solved at once.
    """
    n_items, n_slots = a.shape
    n_par = n_slots + 1
    item, y = resp.item, resp.score
    dims, free = layout.dims[item], layout.free[item]
    # Padding slots get zero mean and covariance, so their gradient and curvature vanish.
    mu = np.where(free, theta[resp.person[:, None], dims], 0.0)
    s_obs = cov[resp.person[:, None, None], dims[:, :, None], dims[:, None, :]]
    s_obs *= free[:, :, None] & free[:, None, :]
    to_item = sp.csr_matrix((np.ones(item.size), (item, np.arange(item.size))), shape=(n_items, item.size))
    ridge = np.concatenate([np.full(n_slots, l2_a), [l2_d]])
    pad_fix = np.concatenate([~layout.free, np.zeros((n_items, 1), dtype=bool)], axis=1)

    def terms(a_: FloatArray, d_: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        a_o = a_[item]
        c = np.einsum("olm,om->ol", s_obs, a_o)
        s = np.sqrt(np.maximum(np.einsum("ol,ol->o", a_o, c), _MIN_VAR))
        m = np.einsum("ol,ol->o", a_o, mu) + d_[item]
        e_sp, e_p, e_f, e_fz, e_fz2 = _gh_moments(m, s)
        return m, c, s, np.stack([e_sp, e_p, e_f, e_fz, e_fz2], axis=1)

    def objective(a_: FloatArray, d_: FloatArray) -> FloatArray:
        m, _, _, e = terms(a_, d_)
        per_item = np.asarray(to_item @ (e[:, 0] - y * m)).ravel()
        return per_item + 0.5 * (l2_a * np.sum(a_**2, axis=1) + l2_d * d_**2)

    a, d = a.copy(), d.copy()
    value = objective(a, d)
    for _ in range(n_steps):
        m, c, s, e = terms(a, d)
        e_p, e_f, e_fz, e_fz2 = e[:, 1], e[:, 2], e[:, 3], e[:, 4]
        g_obs = np.concatenate([(e_p - y)[:, None] * mu + e_f[:, None] * c, (e_p - y)[:, None]], axis=1)
        # Exact Hessian E[sigmoid'(eta) (theta,1)(theta,1)^T] from theta | eta = mu + c z / s + independent rest.
        fz_s, ff = e_fz / s, (e_fz2 - e_f) / s**2
        h_aa = (
            e_f[:, None, None] * (s_obs + mu[:, :, None] * mu[:, None, :])
            + fz_s[:, None, None] * (mu[:, :, None] * c[:, None, :] + c[:, :, None] * mu[:, None, :])
            + ff[:, None, None] * c[:, :, None] * c[:, None, :]
        )
        h_ad = e_f[:, None] * mu + fz_s[:, None] * c
        h_obs = np.empty((item.size, n_par, n_par))
        h_obs[:, :n_slots, :n_slots] = h_aa
        h_obs[:, :n_slots, n_slots] = h_ad
        h_obs[:, n_slots, :n_slots] = h_ad
        h_obs[:, n_slots, n_slots] = e_f
        grad = np.asarray(to_item @ g_obs) + ridge * np.concatenate([a, d[:, None]], axis=1)
        hess = np.asarray(to_item @ h_obs.reshape(item.size, -1)).reshape(n_items, n_par, n_par)
        hess += np.eye(n_par) * ridge
        grad[pad_fix] = 0.0
        hess[pad_fix] = 0.0
        hess += np.eye(n_par)[None] * pad_fix[:, :, None]
        step = -np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        decrease = -np.einsum("jp,jp->j", grad, step)
        t = np.ones(n_items)
        todo = np.ones(n_items, dtype=bool)
        for _ in range(30):
            a_c, d_c = a + t[:, None] * step[:, :n_slots], d + t * step[:, n_slots]
            cand = objective(a_c, d_c)
            ok = todo & ((cand <= value - 1e-4 * t * decrease) | (decrease < 1e-10))
            a[ok], d[ok], value[ok] = a_c[ok], d_c[ok], cand[ok]
            todo &= ~ok
            if not todo.any():
                break
            t[todo] *= 0.5
    return a, d


# ------------------------------------------------------------------------------------------------- model


class MIRT(BaseEstimator):  # type: ignore[misc]
    """Compensatory multidimensional 2PL over a Q-matrix, scikit-learn style.

    Parameters
    ----------
    max_iter: EM iterations at most.
    tol: stop when no item parameter moves more than this in one EM iteration.
    item_l2: ridge penalty on the loadings (a Gaussian prior N(0, 1/item_l2) on each a_jk).
    intercept_l2: ridge penalty on the intercepts d_j.
    covariance: "estimate" learns the correlations of theta (borrowing strength across competencies);
        "identity" keeps the competencies independent a priori.
    corr_shrinkage: weight of the identity in the estimated correlation matrix (keeps it well conditioned when
        a competency has few items).
    general_factor: add a dimension every item loads on (last column of ``a_`` and ``theta_``), kept
        uncorrelated with the Q-matrix dimensions (bifactor structure).
    method: "vem" (variational EM, approximates marginal ML) or "jml" (joint MAP, ignores posterior spread).
    max_newton: Newton steps per person in each E-step (warm-started, so few are needed).
    random_state: seed of the jitter on the starting loadings.

    Learned state: ``a_`` (items x dims), ``d_`` (items), ``sigma_`` (dims x dims correlation), ``theta_``,
    ``se_`` and ``theta_cov_`` (posterior mean, standard error and covariance of the training persons),
    ``n_iter_``, ``converged_``.
    """

    def __init__(
        self,
        max_iter: int = 200,
        tol: float = 1e-3,
        item_l2: float = 1.0,
        intercept_l2: float = 0.01,
        covariance: Literal["estimate", "identity"] = "estimate",
        corr_shrinkage: float = 0.05,
        general_factor: bool = False,
        method: Literal["variational", "laplace"] = "variational",
        max_newton: int = 3,
        random_state: int | None = 0,
    ) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.item_l2 = item_l2
        self.intercept_l2 = intercept_l2
        self.covariance = covariance
        self.corr_shrinkage = corr_shrinkage
        self.general_factor = general_factor
        self.method = method
        self.max_newton = max_newton
        self.random_state = random_state

    # -------------------------------------------------------------------------------------------- fitting

    def fit(self, X: ArrayLike, Q: ArrayLike) -> MIRT:
        """Fit on a dense (persons x items) score array in [0, 1], NaN for cells not taken."""
        person, item, score, n_persons = _dense_to_long(X)
        return self.fit_long(person, item, score, n_persons, Q)

    def fit_long(
        self, person_idx: ArrayLike, item_idx: ArrayLike, score01: ArrayLike, n_persons: int, Q: ArrayLike
    ) -> MIRT:
        """Fit on long-form responses: one row per (person, item) with the score scaled to [0, 1]."""
        self._validate_params()
        pattern = self._pattern(Q)
        n_items, k = pattern.shape
        resp = _responses(person_idx, item_idx, score01, n_persons, n_items)
        layout = _Layout.from_pattern(pattern)
        rng = np.random.default_rng(self.random_state)

        counts = np.bincount(resp.item, minlength=n_items)
        mean = (np.bincount(resp.item, resp.score, minlength=n_items) + 0.5) / (counts + 1.0)
        d = np.log(mean / (1.0 - mean))
        # Start with the loading mass of ~1 spread over an item's dimensions; the jitter breaks ties between
        # dimensions that measure the same items.
        n_loaded = np.maximum(layout.free.sum(axis=1, keepdims=True), 1)
        a = np.where(
            layout.free, (1.0 + 0.1 * rng.standard_normal(layout.free.shape)) / np.sqrt(n_loaded), 0.0
        )
        sigma = np.eye(k)
        theta = np.zeros((n_persons, k))
        cov = np.broadcast_to(sigma, (n_persons, k, k)).copy()
        variational = self.method == "variational"

        self.converged_ = False
        for it in range(1, self.max_iter + 1):
            theta, cov = _person_posterior(
                resp, a, d, layout, sigma, theta, cov, variational, self.max_newton, 1e-4
            )
            sigma, theta, cov, a_scaled = self._update_sigma(theta, cov, a, layout)
            a_new, d_new = _item_newton(
                resp, theta, cov, a_scaled, d, layout, self.item_l2, self.intercept_l2, n_steps=1
            )
            change = max(np.max(np.abs(a_new - a), initial=0.0), np.max(np.abs(d_new - d), initial=0.0))
            a, d = a_new, d_new
            self.n_iter_ = it
            print(it, change, np.abs(a).max(), sigma[0, 1])
            if change < self.tol:
                self.converged_ = True
                break

        theta, cov = _person_posterior(
            resp, a, d, layout, sigma, theta, cov, variational, 4 * self.max_newton, 1e-8
        )
        a_dense = np.zeros((n_items, k))
        rows = np.broadcast_to(np.arange(n_items)[:, None], layout.dims.shape)
        a_dense[rows[layout.free], layout.dims[layout.free]] = a[layout.free]
        # A dimension and its loadings can flip sign together; report the one where loadings are positive.
        sign = np.where(a_dense.sum(axis=0) < 0.0, -1.0, 1.0)
        self.a_ = a_dense * sign
        self.d_ = d
        self.sigma_ = sigma * np.outer(sign, sign)
        self.theta_ = theta * sign
        self.theta_cov_ = cov * np.outer(sign, sign)
        self.se_ = np.sqrt(np.diagonal(self.theta_cov_, axis1=1, axis2=2))
        self.pattern_ = pattern
        self.n_items_, self.n_dims_ = n_items, k
        return self

    def _validate_params(self) -> None:
        if self.max_iter < 1 or self.max_newton < 1:
            raise ValueError("max_iter and max_newton must be at least 1")
        if self.tol <= 0.0:
            raise ValueError("tol must be positive")
        if self.item_l2 <= 0.0 or self.intercept_l2 <= 0.0:
            raise ValueError("item_l2 and intercept_l2 must be positive (they keep unseen items finite)")
        if self.covariance not in ("estimate", "identity"):
            raise ValueError("covariance must be 'estimate' or 'identity'")
        if not 0.0 <= self.corr_shrinkage <= 1.0:
            raise ValueError("corr_shrinkage must lie in [0, 1]")
        if self.method not in ("variational", "laplace"):
            raise ValueError("method must be 'variational' or 'laplace'")

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

    def _update_sigma(
        self, theta: FloatArray, cov: FloatArray, a: FloatArray, layout: _Layout
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Population covariance from the posterior moments, rescaled to unit variances.

        The rescaling moves each dimension's scale into its loadings (parameter-expanded EM), which leaves the
        likelihood unchanged and speeds EM up a lot.
        """
        k = theta.shape[1]
        second = (theta.T @ theta + cov.sum(axis=0)) / theta.shape[0]
        scale = np.sqrt(np.maximum(np.diag(second), _MIN_VAR))
        corr = second / np.outer(scale, scale)
        if self.covariance == "identity":
            corr = np.eye(k)
        elif self.general_factor:
            corr[-1, :-1] = corr[:-1, -1] = 0.0
        sigma = (1.0 - self.corr_shrinkage) * corr + self.corr_shrinkage * np.eye(k)
        np.fill_diagonal(sigma, 1.0)
        a_scaled = np.where(layout.free, a * scale[layout.dims], 0.0)
        return sigma, theta / scale, cov / np.outer(scale, scale), a_scaled

    # -------------------------------------------------------------------------------------------- scoring

    def transform(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Posterior mode and standard error of theta for new persons (rows of X), items held fixed."""
        person, item, score, n_persons = _dense_to_long(X)
        return self.transform_long(person, item, score, n_persons)

    def transform_long(
        self, person_idx: ArrayLike, item_idx: ArrayLike, score01: ArrayLike, n_persons: int
    ) -> tuple[FloatArray, FloatArray]:
        """Long-form ``transform``: persons 0..n_persons-1 with no response get the prior (0, 1)."""
        theta, cov = self._posterior(person_idx, item_idx, score01, n_persons)
        return theta, np.sqrt(np.diagonal(cov, axis1=1, axis2=2))

    def _posterior(
        self, person_idx: ArrayLike, item_idx: ArrayLike, score01: ArrayLike, n_persons: int
    ) -> tuple[FloatArray, FloatArray]:
        resp = _responses(person_idx, item_idx, score01, n_persons, self.n_items_)
        layout = _Layout.from_pattern(self.pattern_)
        a = np.take_along_axis(self.a_, layout.dims, axis=1) * layout.free
        theta0 = np.zeros((n_persons, self.n_dims_))
        cov0 = np.broadcast_to(self.sigma_, (n_persons, self.n_dims_, self.n_dims_)).copy()
        return _person_posterior(
            resp,
            a,
            self.d_,
            layout,
            self.sigma_,
            theta0,
            cov0,
            self.method == "variational",
            4 * self.max_newton,
            1e-8,
        )

    def predict_proba(self, person_idx: ArrayLike, item_idx: ArrayLike) -> FloatArray:
        """Posterior predictive probability of success (expected score in [0, 1]) for training persons."""
        person = np.asarray(person_idx, dtype=np.int64).ravel()
        item = np.asarray(item_idx, dtype=np.int64).ravel()
        a = self.a_[item]
        m = np.einsum("ok,ok->o", a, self.theta_[person]) + self.d_[item]
        s2 = np.einsum("ok,okl,ol->o", a, self.theta_cov_[person], a)
        return _gh_moments(m, np.sqrt(np.maximum(s2, 0.0)))[1]
