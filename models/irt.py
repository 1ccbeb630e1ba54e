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
load on, so only those are factorised (`models.irt_persons.Local`, batched by their number) and C_i is never
formed. With ``corr_rank`` the correlations are factor-analytic instead (rank r plus each dimension's own
variance, `models.irt_persons.Factors`) and each person's posterior is an arrow over (theta, the r factors)
costing K (1 + r)^2 (`models.irt_persons.Arrow`); the person side lives in `models.irt_persons`, this module
holds the items' M-step and the model. Expectations over each response's linear predictor use Gauss-Hermite
quadrature. The M-step updates Sigma under its
shrinkage prior (over-relaxed where that keeps the bound, `_over_relaxed`; parameter-expanded: each
dimension's scale moves into its loadings; under the factor prior, whose loadings' prior holds on the
unit-variance scale so that this costs nothing, always, and the persons' mean moves into the intercepts,
`_recentred`), takes one Newton step
per item on the expected log-likelihood plus the item prior, and refits the prior's skill means. The monitored
objective is the ELBO plus every log prior, the one all these steps raise; iterations stop when it gains less
than ``tol`` per response. Unlike the Laplace approximation (posterior mode and curvature), the variational
posterior keeps the estimated correlations and the interval coverage honest when a competency has only one or
two items. The reported standard errors also carry the calibration error of the person's items and of the
scale (`models.irt_persons`), which dominates on a bank whose items have few respondents each.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from models.irt_persons import (
    MIN_VAR,
    Factors,
    Layout,
    Posteriors,
    Prior,
    Responses,
    converged_posterior,
    e_step,
    gh,
    gh_softplus,
    split_chunks,
    spread,
)

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# estimated response weights stay within [1/_MAX_WEIGHT, _MAX_WEIGHT]
_MAX_WEIGHT = 10.0
_WEIGHT_ITERATIONS = 10
# The covariance step goes this many times as far as plain EM's along the same line, where that keeps the bound
# (checked): the skill correlations are EM's slow part, since each person's few answers per skill leave the
# posteriors close to the prior (measured on ASSIST2017: the plateau of validation AUC in 19 iterations, not 26).
_OVER_RELAX = 1.9
# the factor prior's residual variances stay above this (a dimension its factors explain wholly is degenerate)
_MIN_UNIQUENESS = 1e-2


def _responses(
    person_idx: ArrayLike, item_idx: ArrayLike, score01: ArrayLike, n_persons: int, n_items: int
) -> Responses:
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
    return Responses(person, item, score, n_persons, starts)


def _dense_to_long(X: ArrayLike) -> tuple[IntArray, IntArray, FloatArray, int]:
    dense = np.asarray(X, dtype=np.float64)
    if dense.ndim != 2:
        raise ValueError("X must be a (persons x items) array with NaN for missing cells")
    person, item = np.nonzero(~np.isnan(dense))
    return person.astype(np.int64), item.astype(np.int64), dense[person, item], dense.shape[0]


# ------------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class _ItemPrior:
    """The hierarchical prior of the item parameters: a_jl ~ N(loading_mean[dim], 1/l2_a) for each loaded slot
    and d_j ~ N(intercept_mean_j, 1/l2_d), where intercept_mean_j averages the skill means of item j's skills."""

    loading_mean: FloatArray  # per dimension
    intercept_mean: FloatArray  # per item
    l2_a: float
    l2_d: float

    def centre(self, layout: Layout) -> FloatArray:
        return np.where(layout.free, self.loading_mean[layout.dims], 0.0)

    def penalty(self, a: FloatArray, d: FloatArray, layout: Layout) -> FloatArray:
        """Per item: minus the log prior density, up to a constant."""
        da = np.where(layout.free, a - self.centre(layout), 0.0)
        return 0.5 * (self.l2_a * np.sum(da**2, axis=1) + self.l2_d * (d - self.intercept_mean) ** 2)

    def dimension_penalty(self, a: FloatArray, layout: Layout, k: int) -> FloatArray:
        """Per dimension: the loadings' part of `penalty`, which grows with the square of the dimension's scale."""
        da = (a - self.centre(layout))[layout.free]
        return np.asarray(0.5 * self.l2_a * np.bincount(layout.dims[layout.free], da**2, minlength=k))

    @staticmethod
    def fitted(
        a: FloatArray, d: FloatArray, layout: Layout, skills: _SkillMeans, l2_a: float, l2_d: float
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
        # through the (skills x skills) Gram matrix: a far smaller problem than the design's own SVD; the design
        # has at most a few entries per row, so its products are taken sparse
        sparse_design = sp.csr_matrix(design)
        gram = (sparse_design.T @ sparse_design).toarray()
        with threadpool_limits(limits=1, user_api="blas"):
            inverse = np.linalg.pinv(gram, hermitian=True)
        return _SkillMeans(design, np.asarray((sparse_design @ inverse.T).T, dtype=np.float64))

    def fitted(self, d: FloatArray) -> FloatArray:
        """The per-item averages of the skill intercepts that fit ``d`` best (an orthogonal projection)."""
        return np.asarray(self.design @ (self.pinv @ d), dtype=np.float64)


def _item_newton(
    resp: Responses,
    mu: FloatArray,
    slot_cov: FloatArray,
    a: FloatArray,
    d: FloatArray,
    w: FloatArray,
    layout: Layout,
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

    a_o = np.take(a, item, axis=0)  # (take: a fast row gather)
    c = np.einsum("olm,om->ol", slot_cov, a_o)
    s = np.sqrt(np.maximum(np.einsum("ol,ol->o", a_o, c), MIN_VAR))
    m = np.einsum("ol,ol->o", a_o, mu) + d[item]
    e_sp, e_p, e_f, e_fz, e_fz2 = gh(m, s, stein=True)
    value = np.asarray(to_item @ (e_sp - y * m)).ravel() + prior.penalty(a, d, layout)
    # E[(y - p)^2] = y^2 - 2 y E[p] + E[p] - E[p (1 - p)]
    squared = np.bincount(item, y * y - 2.0 * y * e_p + e_p - e_f, minlength=n_items)
    expected_var = np.bincount(item, e_f, minlength=n_items)
    dispersion = np.where(expected_var > MIN_VAR, squared / np.maximum(expected_var, MIN_VAR), 1.0)
    # Stein's lemma: E[sigmoid(eta) theta] = E[sigmoid] mu + E[sigmoid'] c, with c = Cov(theta, eta).
    g_obs = np.concatenate([(e_p - y)[:, None] * mu + e_f[:, None] * c, (e_p - y)[:, None]], axis=1)
    # Exact Hessian E[sigmoid'(eta) (theta,1)(theta,1)^T] from theta | eta = mu + c z / s + independent rest.
    fz_s, ff = e_fz / s, (e_fz2 - e_f) / s**2
    # The slots' block e_f (S + mu mu^T) + fz_s (mu c^T + c mu^T) + ff c c^T is e_f S + h_ad mu^T + h_c c^T;
    # it is symmetric, so only its upper triangle is summed per item, with the intercept's row (h_ad, e_f).
    h_ad = e_f[:, None] * mu + fz_s[:, None] * c
    h_c = fz_s[:, None] * mu + ff[:, None] * c
    upper, lower = np.triu_indices(n_slots)
    flat = upper * n_slots + lower
    h_obs = np.concatenate(
        [
            e_f[:, None] * np.take(slot_cov.reshape(item.size, -1), flat, axis=1)
            + np.take(h_ad, upper, axis=1) * np.take(mu, lower, axis=1)
            + np.take(h_c, upper, axis=1) * np.take(c, lower, axis=1),
            h_ad,
            e_f[:, None],
        ],
        axis=1,
    )
    summed = np.asarray(to_item @ h_obs)
    hess = np.empty((n_items, n_par, n_par))
    hess[:, upper, lower] = hess[:, lower, upper] = summed[:, : len(flat)]
    hess[:, :n_slots, n_slots] = hess[:, n_slots, :n_slots] = summed[:, len(flat) : -1]
    hess[:, n_slots, n_slots] = summed[:, -1]
    params = np.concatenate([a, d[:, None]], axis=1)
    grad = np.asarray(to_item @ g_obs) + ridge * (params - centre)
    hess += np.eye(n_par) * ridge
    grad[pad_fix] = 0.0
    hess[pad_fix] = 0.0
    hess += np.eye(n_par)[None] * pad_fix[:, :, None]
    item_cov = np.linalg.inv(hess) * ~(pad_fix[:, :, None] | pad_fix[:, None, :])
    step = -np.einsum("ipq,iq->ip", item_cov, grad)
    a, d = a.copy(), d.copy()
    todo = np.ones(n_items, dtype=bool)
    for t in 0.5 ** np.arange(8):
        a_c, d_c = a + t * step[:, :n_slots], d + t * step[:, n_slots]
        a_co = np.take(a_c, item, axis=0)
        m_c = np.einsum("ol,ol->o", a_co, mu) + d_c[item]
        e_c = gh_softplus(m_c, spread(a_co, slot_cov))
        cand = np.asarray(to_item @ (e_c - y * m_c)).ravel() + prior.penalty(a_c, d_c, layout)
        ok = todo & (cand <= value + 1e-9)
        a[ok], d[ok] = a_c[ok], d_c[ok]
        todo &= ~ok
        if not todo.any():
            break
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
    scale: FloatArray, a: FloatArray, prior: _ItemPrior, layout: Layout
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
    if np.linalg.eigvalsh(further)[0] <= MIN_VAR or part(further) < part(sigma):
        return target
    return further


def _penalised_variance(second: FloatArray | float, cost: FloatArray | float) -> FloatArray:
    """The variance v maximising -(second / v + log v + cost v) / 2: a Gaussian's variance, given its mean second
    moment, under a prior cost linear in v (a root of cost v^2 + v - second, in its cancellation-free form)."""
    return np.asarray(2.0 * second / (1.0 + np.sqrt(1.0 + 4.0 * cost * second)), dtype=np.float64)


def _recentred(
    post: Posteriors,
    precision: FloatArray,
    a: FloatArray,
    d: FloatArray,
    layout: Layout,
    prior: _ItemPrior,
    skills: _SkillMeans,
) -> tuple[FloatArray, _ItemPrior, Posteriors]:
    """The persons' mean moved into the intercepts (parameter-expanded EM for the location): theta's prior is let
    have the mean mu of the posterior means, which raises the bound by n mu^T precision mu / 2, and the persons
    are shifted back to mean 0 while each item's intercept takes its loadings' share of mu, which leaves the
    likelihood unchanged. Taken where that gain is at least what the intercepts' prior loses (its skill means
    refitted); returns the intercepts, item prior and posteriors kept."""
    n = len(post.theta)
    mu = post.theta.mean(axis=0)
    shifted = d + np.sum(np.where(layout.free, a * mu[layout.dims], 0.0), axis=1)
    moved = _ItemPrior.fitted(a, shifted, layout, skills, prior.l2_a, prior.l2_d)
    lost = float(moved.penalty(a, shifted, layout).sum() - prior.penalty(a, d, layout).sum())
    if 0.5 * n * float(mu @ precision @ mu) < lost:
        return d, prior, post
    return shifted, moved, dataclasses.replace(post, theta=post.theta - mu)


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
        person's posterior far cheaper on many skills (`Arrow`); "identity" covariance then means r = 0. The
        fitted factors are ``factor_loadings_`` (Q-matrix dimensions x r) and ``uniqueness_`` (psi).
    general_factor: add a dimension every item loads on (last column of ``a_`` and ``theta_``), kept
        uncorrelated with the Q-matrix dimensions (bifactor structure).
    dispersion: estimate, per item with fractional (partial-credit or continuous) scores, how much less its
        scores scatter than 0/1 answers would, and weight its responses by the inverse (quasi-likelihood).
    calibration_error: let the standard errors and predictions carry the error of the estimated item
        parameters (`models.irt_persons`), not only the persons' own.
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
        others held fixed. The parameter expansion (dimension scales moved into the loadings, and under the
        factor prior the persons' mean into the intercepts) leaves the bound unchanged; where it moves the
        priors it is taken only where it does not lower the objective.
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
        layout = Layout.from_pattern(pattern)
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
        chunks = list(split_chunks(resp, layout, k))
        theta_prior: Prior = np.eye(k)
        if self.corr_rank is not None:
            rank = 0 if self.covariance == "identity" else self.corr_rank
            theta_prior = Factors.start(k - int(self.general_factor), rank, self.general_factor, rng)
        cov = theta_prior.covariance() if isinstance(theta_prior, Factors) else theta_prior
        post = Posteriors.prior(resp, chunks, cov, layout.dims.shape[1])
        dims_o, free_o = layout.dims[resp.item], layout.free[resp.item]

        self.converged_ = False
        self.objective_: list[float] = []
        with threadpool_limits(limits=1, user_api="blas"):
            for it in range(1, self.max_iter + 1):
                post, elbo = e_step(chunks, a, d, w, theta_prior, post)
                objective = elbo - float(prior.penalty(a, d, layout).sum())
                self.n_iter_ = it
                if isinstance(theta_prior, Factors):
                    self.objective_.append(objective)
                    theta_prior, a, prior, post = self._update_factors(
                        post, theta_prior, a, prior, layout, resp
                    )
                    d, prior, post = _recentred(post, theta_prior.precision(), a, d, layout, prior, skills)
                else:
                    objective += _sigma_log_prior(theta_prior, nu)
                    self.objective_.append(objective)
                    theta_prior, a, prior, post = self._update_sigma(
                        post, theta_prior, a, prior, layout, resp, nu
                    )
                ext = post.theta.shape[1]
                mu = np.take(post.theta, resp.person[:, None] * ext + dims_o) * free_o
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
            sigma = theta_prior.covariance()[:k, :k] if isinstance(theta_prior, Factors) else theta_prior
            scale = np.sqrt(np.diag(sigma))
            slot_scale = np.where(layout.free, scale[layout.dims], 1.0)
            a, sigma = a * slot_scale, sigma / np.outer(scale, scale)
            if isinstance(theta_prior, Factors):
                theta_prior = theta_prior.rescaled(scale)
                scale = np.concatenate([scale, np.ones(theta_prior.ext - k)])
            else:
                theta_prior = sigma
            post = post.rescaled(scale, np.take(slot_scale, resp.item, axis=0))
            par_scale = np.concatenate([slot_scale, np.ones((n_items, 1))], axis=1)
            item_cov = item_cov * par_scale[:, :, None] * par_scale[:, None, :]
            pairs = layout.pairs()
            used_cov = item_cov if self.calibration_error else None
            theta, se, pair_cov = converged_posterior(
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
        if isinstance(theta_prior, Factors):
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
        post: Posteriors,
        sigma: FloatArray,
        a: FloatArray,
        prior: _ItemPrior,
        layout: Layout,
        resp: Responses,
        nu: float,
    ) -> tuple[FloatArray, FloatArray, _ItemPrior, Posteriors]:
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
        scale = np.sqrt(np.maximum(np.diag(target), MIN_VAR))
        scaled_sigma = target / np.outer(scale, scale)
        scaled_a, scaled_prior, gain, slot_scale = _expanded(scale, a, prior, layout)
        if gain + _sigma_log_prior(scaled_sigma, nu) - _sigma_log_prior(target, nu) < 0.0:
            return target, a, prior, post
        return (
            scaled_sigma,
            scaled_a,
            scaled_prior,
            post.rescaled(scale, np.take(slot_scale, resp.item, axis=0)),
        )

    def _update_factors(
        self,
        post: Posteriors,
        factors: Factors,
        a: FloatArray,
        prior: _ItemPrior,
        layout: Layout,
        resp: Responses,
    ) -> tuple[Factors, FloatArray, _ItemPrior, Posteriors]:
        """The factor prior raising the bound plus the loadings' prior, then rescaled to unit variances.

        Under the factor prior the loadings' prior holds in the units where each dimension has unit variance: a
        dimension of variance v_k costs v_k times its loadings' penalty P_k in the current (unit) units. The
        objective then does not change when a dimension's scale moves into its loadings (parameter-expanded EM),
        so every update ends on unit variances, where the items' step sees the plain penalty. Without it the
        objective rewards ever larger variances with ever smaller loadings, a drift EM crawls along.

        Factor analysis's conditional-maximisation steps on the posterior second moments, each raising that
        objective: the loadings (a ridge regression of theta on z, whose ridge is the cost per unit variance,
        over-relaxed: each dimension's objective is a quadratic in its loadings, symmetric about the step, so any
        step short of twice it raises it), then the residual variances psi and the general dimension's variance.
        Then z is let have covariance E[z z^T] and mapped back to N(0, I) (the loadings take its Cholesky factor)
        where the bound gains more by it than the dimensions' variances cost."""
        n, k, n_own = len(post.theta), factors.k, factors.n_own
        second = (post.theta.T @ post.theta + post.cov_sum) / n
        zz, tz = second[k:, k:], second[:n_own, k:]
        rank = len(zz)
        # twice the loadings' penalty per unit variance of each dimension, per person
        cost = 2.0 * prior.dimension_penalty(a, layout, k) / n
        own_cost = cost[:n_own]
        ridge = zz[None] + (own_cost * factors.psi)[:, None, None] * np.eye(rank)
        best = np.linalg.solve(ridge, tz[:, :, None])[:, :, 0] if rank else tz
        loadings = factors.loadings + _OVER_RELAX * (best - factors.loadings)
        resid = (
            np.diag(second)[:n_own]
            - 2.0 * np.sum(loadings * tz, axis=1)
            + np.einsum("kr,rs,ks->k", loadings, zz, loadings)
        )
        psi = np.maximum(_penalised_variance(resid, own_cost), _MIN_UNIQUENESS)
        general = None
        if factors.general_var is not None:
            general = float(_penalised_variance(second[n_own, n_own], cost[n_own]))
        transform = np.eye(len(second))
        if rank:
            gain = np.trace(zz) - rank - np.linalg.slogdet(zz)[1]
            spent = np.sum(own_cost * np.einsum("kr,rs,ks->k", loadings, zz - np.eye(rank), loadings))
            if gain >= spent:
                chol = np.linalg.cholesky(zz)
                loadings = np.asarray(loadings @ chol, dtype=np.float64)
                transform[k:, k:] = np.linalg.inv(chol)
        target = Factors(loadings, psi, general)
        scale = target.scale()
        scaled_a, scaled_prior, _, slot_scale = _expanded(scale, a, prior, layout)
        transform = np.diag(1.0 / np.concatenate([scale, np.ones(rank)])) @ transform
        return (
            target.rescaled(scale),
            scaled_a,
            scaled_prior,
            post.mapped(transform, np.take(slot_scale, resp.item, axis=0)),
        )

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
        layout = Layout.from_pattern(self.pattern_)
        a = np.take_along_axis(self.a_, layout.dims, axis=1) * layout.free
        item_cov = self.item_cov_ if self.calibration_error else None
        prior = self._theta_prior()
        with threadpool_limits(limits=1, user_api="blas"):
            chunks = split_chunks(resp, layout, self.n_dims_)
            theta0 = np.zeros((n_persons, prior.ext if isinstance(prior, Factors) else self.n_dims_))
            theta, se, pair_cov = converged_posterior(
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

    def _theta_prior(self) -> Prior:
        """The fitted prior of theta: its factor form where ``corr_rank`` was set, else the covariance."""
        if self.corr_rank is None:
            return np.asarray(self.sigma_, dtype=np.float64)
        return Factors(self.factor_loadings_, self.uniqueness_, 1.0 if self.general_factor else None)

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
            layout = Layout.from_pattern(self.pattern_)
            slots = np.take_along_axis(theta, layout.dims[item], axis=1) * layout.free[item]
            x = np.concatenate([slots, np.ones((len(item), 1))], axis=1)
            s2 = s2 + np.einsum("op,opq,oq->o", x, self.item_cov_[item], x)
        return gh(m, np.sqrt(np.maximum(s2, 0.0)), softplus=False)[0]

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
