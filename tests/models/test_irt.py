"""The diagnostic IRT model (models/irt.py): parameter recovery, honest intervals, partial credit, the API."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.irt import (
    _OVER_RELAX,
    MIRT,
    _expanded,
    _ItemPrior,
    _over_relaxed,
    _recentred,
    _responses,
    _sigma_log_prior,
    _SkillMeans,
)
from models.irt_persons import Factors, Layout, Posteriors, e_step, gh_softplus, split_chunks, spread

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Simulated:
    theta: FloatArray
    a: FloatArray
    d: FloatArray
    sigma: FloatArray
    q: NDArray[np.bool_]
    X: FloatArray


def simulate(n: int = 1200, seed: int = 0, points: int = 1, missing: float = 0.25) -> Simulated:
    """Three correlated competencies, 24 items loading on one or two of them, a quarter of cells not taken.
    Items score 0..points (binomial), scaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    sigma = np.array([[1.0, 0.5, 0.3], [0.5, 1.0, 0.4], [0.3, 0.4, 1.0]])
    theta = rng.multivariate_normal(np.zeros(3), sigma, n)
    n_items = 24
    q = np.zeros((n_items, 3), dtype=bool)
    q[np.arange(n_items), np.arange(n_items) % 3] = True
    q[np.arange(0, n_items, 4), (np.arange(0, n_items, 4) + 1) % 3] = True
    a = np.where(q, rng.uniform(0.8, 2.0, q.shape), 0.0)
    d = rng.normal(0.0, 1.0, n_items)
    p = 1.0 / (1.0 + np.exp(-(theta @ a.T + d)))
    X = rng.binomial(points, p) / points
    X[rng.random(X.shape) < missing] = np.nan
    return Simulated(theta, a, d, sigma, q, X)


@pytest.fixture(scope="module")
def binary() -> tuple[Simulated, MIRT]:
    sim = simulate()
    return sim, MIRT(random_state=0).fit(sim.X, sim.q)


def test_fit_recovers_loadings_intercepts_and_correlations(binary: tuple[Simulated, MIRT]) -> None:
    sim, model = binary
    assert np.corrcoef(model.a_[sim.q], sim.a[sim.q])[0, 1] > 0.8
    assert np.corrcoef(model.d_, sim.d)[0, 1] > 0.95
    assert np.all(model.a_[~sim.q] == 0.0)
    off = ~np.eye(3, dtype=bool)
    assert np.max(np.abs(model.sigma_[off] - sim.sigma[off])) < 0.2


def test_person_estimates_track_the_true_competencies(binary: tuple[Simulated, MIRT]) -> None:
    sim, model = binary
    for k in range(3):
        assert np.corrcoef(model.theta_[:, k], sim.theta[:, k])[0, 1] > 0.75


def test_95_percent_intervals_cover_between_90_and_98_percent(binary: tuple[Simulated, MIRT]) -> None:
    sim, model = binary
    covered = np.abs(model.theta_ - sim.theta) <= 1.96 * model.se_
    assert 0.90 <= covered.mean() <= 0.98


def test_transform_of_training_persons_matches_their_fitted_estimates(binary: tuple[Simulated, MIRT]) -> None:
    sim, model = binary
    theta, se = model.transform(sim.X[:200])
    assert np.max(np.abs(theta - model.theta_[:200])) < 0.05
    assert np.max(np.abs(se - model.se_[:200])) < 0.05


def test_a_person_is_scored_the_same_whoever_else_is_scored_with_them(binary: tuple[Simulated, MIRT]) -> None:
    sim, model = binary
    slim = model.items_only()
    assert not hasattr(slim, "theta_") and hasattr(model, "theta_")
    together, se_together = slim.transform(sim.X[:120])
    for lo, hi in ((0, 7), (7, 60), (60, 120)):
        alone, se_alone = slim.transform(sim.X[lo:hi])
        np.testing.assert_allclose(alone, together[lo:hi], rtol=0, atol=1e-12)
        np.testing.assert_allclose(se_alone, se_together[lo:hi], rtol=0, atol=1e-12)


def test_a_person_without_responses_gets_the_prior(binary: tuple[Simulated, MIRT]) -> None:
    _, model = binary
    theta, se = model.transform_long([0], [3], [1.0], n_persons=2)
    assert np.allclose(theta[1], 0.0)
    assert np.allclose(se[1], 1.0)
    assert theta[0, 0] > 0.0


def test_predicted_probabilities_follow_the_scores(binary: tuple[Simulated, MIRT]) -> None:
    sim, model = binary
    person, item = np.nonzero(~np.isnan(sim.X))
    proba = model.predict_proba(person, item)
    assert np.all((proba > 0.0) & (proba < 1.0))
    right = sim.X[person, item] == 1.0
    assert proba[right].mean() > proba[~right].mean() + 0.2


def test_partial_credit_items_get_weight_from_their_dispersion() -> None:
    sim = simulate(n=800, seed=1, points=4)
    plain = MIRT(random_state=0).fit(sim.X, sim.q)
    weighted = MIRT(dispersion=True, random_state=0).fit(sim.X, sim.q)
    # four binomial points scatter like a quarter of a 0/1 answer: the weights land near 4
    assert 2.5 < np.median(weighted.weights_) < 5.5
    assert np.all(plain.weights_ == 1.0)
    assert weighted.se_.mean() < plain.se_.mean()
    covered = np.abs(weighted.theta_ - sim.theta) <= 1.96 * weighted.se_
    assert 0.90 <= covered.mean() <= 0.98


def test_dispersion_leaves_right_wrong_items_at_weight_one() -> None:
    sim = simulate(n=400, seed=2)
    model = MIRT(dispersion=True, random_state=0).fit(sim.X, sim.q)
    assert np.all(model.weights_ == 1.0)


def test_general_factor_adds_an_uncorrelated_last_dimension() -> None:
    sim = simulate(n=400, seed=3)
    model = MIRT(general_factor=True, random_state=0).fit(sim.X, sim.q)
    assert model.a_.shape == (24, 4)
    assert np.all(model.a_[:, 3] != 0.0)
    assert np.allclose(model.sigma_[3, :3], 0.0)


def test_a_competency_of_the_general_factor_model_reads_its_general_and_own_dimensions(
    binary: tuple[Simulated, MIRT],
) -> None:
    sim, plain = binary
    theta, se = plain.per_competency()
    assert theta is plain.theta_ and se is plain.se_
    model = MIRT(general_factor=True, random_state=0).fit(sim.X, sim.q)
    estimate, error = model.per_competency()
    assert estimate.shape == error.shape == (len(sim.X), 3)
    for k in range(3):
        # the own dimension alone misses the general level the competency shares with the others
        assert (
            np.corrcoef(estimate[:, k], sim.theta[:, k])[0, 1]
            > np.corrcoef(model.theta_[:, k], sim.theta[:, k])[0, 1]
        )
        assert np.corrcoef(estimate[:, k], sim.theta[:, k])[0, 1] > 0.8
    assert np.all((error > 0.0) & (error < 1.0))
    post = model.posterior_long(*np.nonzero(~np.isnan(sim.X)), sim.X[~np.isnan(sim.X)], len(sim.X))
    np.testing.assert_allclose(model.per_competency(post)[0], estimate, atol=0.05)


def test_estimator_clones_and_refits_identically() -> None:
    sim = simulate(n=300, seed=4)
    model = MIRT(item_l2=2.0, random_state=5)
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    assert np.allclose(model.fit(sim.X, sim.q).theta_, twin.fit(sim.X, sim.q).theta_)


@pytest.mark.parametrize(
    "params",
    [{"max_iter": 0}, {"tol": 0.0}, {"item_l2": 0.0}, {"corr_shrinkage": 1.5}, {"covariance": "free"}],
)
def test_invalid_settings_are_refused_at_fit(params: dict[str, Any]) -> None:
    sim = simulate(n=50)
    with pytest.raises(ValueError):
        MIRT(**params).fit(sim.X, sim.q)


def test_bad_inputs_are_refused() -> None:
    sim = simulate(n=50)
    with pytest.raises(ValueError, match="score01"):
        MIRT().fit(sim.X * 2.0, sim.q)
    with pytest.raises(ValueError, match="Q-matrix rows"):
        MIRT().fit_long([0], [24], [1.0], 1, sim.q)
    with pytest.raises(ValueError, match="at least one competency"):
        MIRT().fit(sim.X, np.zeros_like(sim.q))
    with pytest.raises(ValueError, match="same length"):
        MIRT().fit_long([0, 1], [0], [1.0], 2, sim.q)


def test_scoring_before_fitting_is_refused_the_scikit_learn_way() -> None:
    with pytest.raises(NotFittedError):
        MIRT().transform(np.ones((2, 3)))
    with pytest.raises(NotFittedError):
        MIRT().predict_proba([0], [0])
    with pytest.raises(NotFittedError):
        MIRT().posterior_long([0], [0], [1.0], 1)


def test_the_monitored_bound_never_falls_with_correlation_shrinkage() -> None:
    sim = simulate(n=500, seed=5)
    for general_factor in (False, True):
        model = MIRT(corr_shrinkage=0.3, general_factor=general_factor, tol=1e-10, max_iter=40).fit(
            sim.X, sim.q
        )
        steps = np.diff(model.objective_)
        assert len(steps) >= 20
        assert steps.min() >= -1e-9 * abs(model.objective_[-1])


def test_em_stops_at_the_first_iteration_that_gains_less_than_tol_per_response(
    binary: tuple[Simulated, MIRT],
) -> None:
    sim, model = binary
    gains = np.diff(model.objective_) / np.count_nonzero(~np.isnan(sim.X))
    assert model.converged_
    assert gains[-1] < model.tol <= gains[:-1].min()


def test_the_over_relaxed_covariance_step_keeps_the_bound_and_falls_back_to_em() -> None:
    rng = np.random.default_rng(0)
    n, nu = 200, 10.0
    x = rng.standard_normal((n, 3)) @ np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 1.0]])
    second = x.T @ x / n
    target = (n * second + nu * np.eye(3)) / (n + nu)

    def part(s: FloatArray) -> float:
        return float(
            -0.5 * n * (np.sum(np.linalg.inv(s) * second) + np.linalg.slogdet(s)[1]) + _sigma_log_prior(s, nu)
        )

    near = 0.03 * np.eye(3) + 0.97 * target  # one small EM step away, as late in a fit
    step = _over_relaxed(near, target, second, n, nu)
    np.testing.assert_allclose(step, near + _OVER_RELAX * (target - near))
    assert part(step) >= part(near)
    # from the identity, going 1.9 times as far would leave the positive-definite matrices: the EM update is taken
    assert np.array_equal(_over_relaxed(np.eye(3), target, second, n, nu), target)


def sparse_bank(seed: int, n: int = 150, n_items: int = 1500, taken: int = 300) -> tuple[FloatArray, Any]:
    """A bank of many items with about thirty respondents each, every person answering `taken` random items:
    the persons' own errors are small, so the items' calibration error and the sampled scale show."""
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((n, 1))
    a = rng.uniform(0.8, 2.0, n_items)
    d = rng.normal(0.0, 1.0, n_items)
    person = np.repeat(np.arange(n), taken)
    item = np.concatenate([rng.choice(n_items, taken, replace=False) for _ in range(n)])
    p = 1.0 / (1.0 + np.exp(-(theta[person, 0] * a[item] + d[item])))
    return theta, (person, item, (rng.random(p.size) < p).astype(np.float64), n, np.ones((n_items, 1), bool))


def test_intervals_carry_the_calibration_error_of_a_sparse_bank() -> None:
    covered, conditional = [], []
    for seed in (0, 1, 2):
        theta, data = sparse_bank(seed)
        model = MIRT(random_state=0).fit_long(*data)
        items_known = MIRT(random_state=0, calibration_error=False).fit_long(*data)
        covered.append(np.abs(model.theta_ - theta) <= 1.96 * model.se_)
        conditional.append(np.abs(items_known.theta_ - theta) <= 1.96 * items_known.se_)
    assert 0.92 <= np.mean(covered) <= 0.98
    assert np.mean(conditional) < np.mean(covered) - 0.04


def test_intercepts_of_rarely_answered_items_are_shrunk_toward_their_skills_mean() -> None:
    # skill 0's items are easy, skill 1's hard; the last item of each skill has three respondents, all right
    rng = np.random.default_rng(6)
    n, n_items = 600, 20
    q = np.zeros((n_items, 2), dtype=bool)
    q[np.arange(n_items), np.arange(n_items) % 2] = True
    d = np.where(q[:, 0], 1.5, -1.5) + rng.normal(0.0, 0.3, n_items)
    theta = rng.standard_normal((n, 2))
    p = 1.0 / (1.0 + np.exp(-(theta @ q.T + d)))
    X = (rng.random(p.shape) < p).astype(np.float64)
    X[3:, -2:] = np.nan
    X[:3, -2:] = 1.0
    shrunk = MIRT(random_state=0).fit(X, q)
    loose = MIRT(random_state=0, intercept_l2=1e-4).fit(X, q)
    easy, hard = n_items - 2, n_items - 1
    assert abs(loose.d_[hard]) > 3.0
    assert abs(shrunk.d_[hard] - d[q[:, 1]][:-1].mean()) < 2.0 < abs(loose.d_[hard] - d[q[:, 1]][:-1].mean())
    assert shrunk.d_[easy] > shrunk.d_[hard]


def test_unseen_items_and_new_persons_are_predicted_from_the_prior() -> None:
    sim = simulate(n=400, seed=7)
    q = np.concatenate([sim.q, sim.q[:1]])  # one more item of the first items' skills that nobody answered
    X = np.concatenate([sim.X, np.full((len(sim.X), 1), np.nan)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MIRT(dispersion=True, random_state=0).fit(X, q)
    unseen = len(q) - 1
    skill_items = np.flatnonzero((sim.q & sim.q[0]).any(axis=1))
    everyone = np.arange(len(X))
    on_unseen = model.predict_proba(everyone, np.full(len(X), unseen))
    assert abs(on_unseen.mean() - np.nanmean(sim.X[:, skill_items])) < 0.05
    assert np.corrcoef(on_unseen, sim.theta[:, :2].sum(axis=1))[0, 1] > 0.5

    # a newcomer without responses is predicted from the population; one with responses from them
    post = model.posterior_long([1] * 6, skill_items[:6], [1.0] * 6, n_persons=2)
    newcomer = model.predict_proba([0] * len(skill_items), skill_items, post)
    population = [model.predict_proba(everyone, np.full(len(X), j)).mean() for j in skill_items]
    np.testing.assert_allclose(newcomer, population, atol=0.03)
    strong = model.predict_proba([1] * len(skill_items), skill_items, post)
    assert np.all(strong > newcomer)


def test_posterior_on_the_answered_dimensions_equals_the_full_inverse() -> None:
    """The covariance computed on each person's answered dimensions (Woodbury) is the full (prior precision +
    data precision)^-1; its log-determinant, sum and products C r match; a person without responses keeps the prior."""
    from models.irt import _responses
    from models.irt_persons import Layout, Local, split_chunks

    rng = np.random.default_rng(3)
    k, n_items, n = 9, 30, 12
    pattern = rng.random((n_items, k)) < 0.25
    pattern[:, -1] = True
    pattern[:, 2] = False  # a dimension nobody's responses touch
    raw = rng.standard_normal((k, k))
    sigma = raw @ raw.T / k + np.eye(k)
    person = np.repeat(np.arange(n), 6)
    item = rng.integers(0, n_items, person.size)
    n += 1
    resp = _responses(person, item, rng.random(person.size), n, n_items)
    layout = Layout.from_pattern(pattern)
    c = next(split_chunks(resp, layout, k))
    width = c.dims_p.shape[1]
    a_o = rng.random(layout.dims.shape)[c.item] * c.free
    outer = a_o[:, :, None] * a_o[:, None, :]
    summed = np.bincount(c.mat_cells.ravel(), outer.ravel(), minlength=n * width * width)
    data: NDArray[np.float64] = summed.reshape(n, width, width).astype(np.float64)
    dims = c.vec_cells - c.local[:, None] * k
    cells = c.local[:, None, None] * k * k + dims[:, :, None] * k + dims[:, None, :]
    full_data = np.bincount(cells.ravel(), outer.ravel(), minlength=n * k * k).reshape(n, k, k)
    local = Local.solve(c, data, sigma)
    expected = np.linalg.inv(np.linalg.inv(sigma) + full_data)
    rows, cols = np.divmod(np.arange(k * k), k)
    np.testing.assert_allclose(local.entries(sigma, c, rows, cols).reshape(n, k, k), expected, atol=1e-10)
    sandwich = local.entries(sigma, c, rows, cols, data) - local.entries(sigma, c, rows, cols)
    np.testing.assert_allclose(sandwich.reshape(n, k, k), expected @ full_data @ expected, atol=1e-10)
    np.testing.assert_allclose(local.logdet, np.linalg.slogdet(expected)[1], atol=1e-10)
    np.testing.assert_allclose(local.cov_sum(sigma, c), expected.sum(axis=0), atol=1e-10)
    r = rng.standard_normal((n, k))
    np.testing.assert_allclose(local.times_cov(r, sigma, c), np.einsum("pkl,pl->pk", expected, r), atol=1e-10)
    # the last person answered nothing: the prior itself
    np.testing.assert_allclose(local.entries(sigma, c, rows, cols)[-1].reshape(k, k), sigma, atol=1e-12)


def _factor_setup(
    two_skill: bool,
) -> tuple[Any, Any, Any, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """A chunk of persons answering single-skill (or also two-skill) items with a general dimension, a factor
    prior of rank 2 over 6 skills, and the exact posterior precision on the extended coordinates (theta, z)."""
    from models.irt import _responses
    from models.irt_persons import Factors, Layout, split_chunks

    rng = np.random.default_rng(7)
    n_own, r, n_items, n = 6, 2, 30, 10
    k = n_own + 1
    pattern = np.zeros((n_items, k), dtype=bool)
    pattern[np.arange(n_items), np.arange(n_items) % n_own] = True
    if two_skill:
        pattern[::3, 0] = True
    pattern[:, -1] = True
    factors = Factors(0.6 * rng.standard_normal((n_own, r)), rng.uniform(0.3, 0.8, n_own), 1.3)
    person = np.repeat(np.arange(n - 1), 8)  # the last person answers nothing
    item = rng.integers(0, n_items, person.size)
    resp = _responses(person, item, rng.random(person.size), n, n_items)
    layout = Layout.from_pattern(pattern)
    c = next(split_chunks(resp, layout, k))
    a_o = rng.uniform(0.5, 1.5, layout.dims.shape)[c.item] * c.free
    f = rng.uniform(0.1, 0.25, len(a_o))
    dims = c.vec_cells - c.local[:, None] * k
    cells = c.local[:, None, None] * factors.ext**2 + dims[:, :, None] * factors.ext + dims[:, None, :]
    outer = f[:, None, None] * a_o[:, :, None] * a_o[:, None, :]
    data = np.bincount(cells.ravel(), outer.ravel(), minlength=n * factors.ext**2)
    precision = factors.precision() + data.reshape(n, factors.ext, factors.ext)
    return c, factors, layout, a_o, f, precision


def test_factor_posterior_is_the_exact_inverse_where_items_measure_one_skill() -> None:
    """Under the factor prior the arrow-form covariance of a person answering single-skill items (plus the general
    dimension) is the full (prior precision + data precision)^-1 on (theta, z): entries, log-determinant, sum,
    products C g and the calibration sandwich; a person without responses keeps the prior."""
    from models.irt_persons import Arrow

    c, factors, _, a_o, f, precision = _factor_setup(two_skill=False)
    ext = factors.ext
    post = Arrow.solve(c, f, a_o, factors)
    expected = np.linalg.inv(precision)
    rows, cols = np.divmod(np.arange(ext * ext), ext)
    np.testing.assert_allclose(post.entries(rows, cols).reshape(-1, ext, ext), expected, atol=1e-10)
    np.testing.assert_allclose(post.logdet, np.linalg.slogdet(expected)[1], atol=1e-10)
    np.testing.assert_allclose(post.cov_sum(), expected.sum(axis=0), atol=1e-10)
    g = np.random.default_rng(1).standard_normal((c.n, ext))
    np.testing.assert_allclose(post.times_cov(g), np.einsum("pkl,pl->pk", expected, g), atol=1e-10)
    np.testing.assert_allclose(expected[-1], factors.covariance(), atol=1e-12)
    # the calibration part: C (sum over responses of v a a^T on their slots) C, at theta's entries
    v = np.random.default_rng(2).uniform(0.0, 0.1, len(a_o))
    k = c.k
    dims = c.vec_cells - c.local[:, None] * k
    cells = c.local[:, None, None] * ext * ext + dims[:, :, None] * ext + dims[:, None, :]
    outer = v[:, None, None] * a_o[:, :, None] * a_o[:, None, :]
    middle = np.bincount(cells.ravel(), outer.ravel(), minlength=c.n * ext * ext).reshape(c.n, ext, ext)
    rows, cols = np.divmod(np.arange(k * k), k)
    sandwich = (expected @ middle @ expected)[:, :k, :k]
    np.testing.assert_allclose(
        post.calibration(c, v, a_o, rows, cols).reshape(c.n, k, k), sandwich, atol=1e-10
    )


def test_factor_posterior_stays_positive_definite_with_two_skill_items() -> None:
    """Two-skill items' coupling of their skills is dropped and bounded on the diagonal: the covariance stays a
    proper one and no variance exceeds the prior's."""
    from models.irt_persons import Arrow

    c, factors, _, a_o, f, precision = _factor_setup(two_skill=True)
    ext = factors.ext
    rows, cols = np.divmod(np.arange(ext * ext), ext)
    cov = Arrow.solve(c, f, a_o, factors).entries(rows, cols).reshape(-1, ext, ext)
    assert np.linalg.eigvalsh(cov).min() > 0.0
    assert np.all(np.diagonal(cov, axis1=1, axis2=2) <= np.diag(factors.covariance()) + 1e-12)
    # the exact posterior is at least as wide: the bound on the coupling adds precision, never removes it
    exact = np.linalg.inv(precision)
    assert np.all(np.diagonal(cov, axis1=1, axis2=2) <= np.diagonal(exact, axis1=1, axis2=2) + 1e-12)


def test_factor_prior_scores_persons_as_its_full_covariance_where_items_measure_one_skill() -> None:
    """The persons' final posteriors (means, SEs with and without the items' calibration error, covariances at
    the model's pairs) under the factor prior equal those under its covariance Sigma = L L^T + diag(psi)."""
    from models.irt import _responses
    from models.irt_persons import converged_posterior, split_chunks

    c, factors, layout, _, _, _ = _factor_setup(two_skill=False)
    rng = np.random.default_rng(4)
    n_items, n_slots = layout.dims.shape
    a = np.where(layout.free, rng.uniform(0.6, 1.4, layout.dims.shape), 0.0)
    d = rng.normal(0.0, 1.0, n_items)
    resp = _responses(c.local, c.item, rng.random(len(c.item)) < 0.6, c.n, n_items)
    k = factors.k
    pairs = layout.pairs()
    item_cov = np.broadcast_to(0.01 * np.eye(n_slots + 1), (n_items, n_slots + 1, n_slots + 1)).copy()
    sigma = factors.covariance()[:k, :k]
    for used in (None, item_cov):
        low, full = (
            converged_posterior(
                split_chunks(resp, layout, k),
                a,
                d,
                np.ones(n_items),
                prior,
                np.zeros((c.n, width)),
                None,
                pairs,
                used,
                500,
                tol=1e-9,
                max_steps=60,
            )
            for prior, width in ((factors, factors.ext), (sigma, k))
        )
        for mine, theirs in zip(low, full, strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-6)


@pytest.fixture(scope="module")
def low_rank() -> tuple[Simulated, MIRT]:
    sim = simulate(n=800, seed=8)
    return sim, MIRT(corr_rank=1, general_factor=True, tol=1e-7, max_iter=60, random_state=0).fit(
        sim.X, sim.q
    )


def test_low_rank_bound_never_falls_where_items_measure_one_skill() -> None:
    """There the persons' posterior is exact in its family and every EM step raises the bound. (With two-skill
    items the bounded coupling makes the covariance step approximate: on `low_rank`'s bank the bound dipped by
    about 1e-5 relative at the last iteration, where the gain is below ``tol`` and EM stops.)"""
    sim = simulate(n=800, seed=8)
    q = sim.q.copy()
    q[np.arange(0, 24, 4), (np.arange(0, 24, 4) + 1) % 3] = False
    for rank in (1, 2):
        model = MIRT(corr_rank=rank, general_factor=True, tol=1e-7, max_iter=40).fit(sim.X, q)
        steps = np.diff(model.objective_)
        assert len(steps) >= 20
        assert steps.min() >= -1e-9 * abs(model.objective_[-1])


def test_low_rank_correlations_fit(low_rank: tuple[Simulated, MIRT]) -> None:
    sim, model = low_rank
    steps = np.diff(model.objective_) / np.count_nonzero(~np.isnan(sim.X))
    assert steps[:-1].min() >= model.tol
    assert steps[-1] > -1e-4
    estimate, _ = model.per_competency()
    assert min(np.corrcoef(estimate[:, j], sim.theta[:, j])[0, 1] for j in range(3)) > 0.7
    # sigma_ is the factor form's correlation matrix; the general dimension stays uncorrelated
    np.testing.assert_allclose(np.diag(model.sigma_), 1.0, atol=1e-9)
    np.testing.assert_allclose(model.sigma_[-1, :-1], 0.0, atol=1e-12)
    factors = model.factor_loadings_ @ model.factor_loadings_.T + np.diag(model.uniqueness_)
    np.testing.assert_allclose(model.sigma_[:-1, :-1], factors, atol=1e-9)


def test_low_rank_model_is_deterministic_and_scores_new_persons_as_its_training_ones(
    low_rank: tuple[Simulated, MIRT],
) -> None:
    sim, model = low_rank
    again = clone(model).fit(sim.X, sim.q)
    np.testing.assert_array_equal(again.theta_, model.theta_)
    np.testing.assert_array_equal(again.se_, model.se_)
    theta, se = model.transform(sim.X[:50])
    assert np.max(np.abs(theta - model.theta_[:50])) < 0.05
    assert np.max(np.abs(se / model.se_[:50] - 1.0)) < 0.05
    newcomer = model.posterior_long([], [], [], 1)
    np.testing.assert_allclose(newcomer.theta, 0.0)
    np.testing.assert_allclose(newcomer.se, 1.0, atol=1e-9)
    p = model.predict_proba([0, 0], [0, 1], newcomer)
    assert np.all((p > 0.0) & (p < 1.0))


def test_rank_zero_without_a_general_factor_has_no_shared_coordinates() -> None:
    """Independent skills under the factor form (rank 0, no general dimension): every person's posterior is
    diagonal, and fitting and scoring still work."""
    sim = simulate(n=200, seed=2)
    model = MIRT(corr_rank=0, general_factor=False).fit(sim.X, sim.q)
    np.testing.assert_allclose(model.sigma_, np.eye(3), atol=1e-9)
    assert np.all(np.isfinite(model.se_)) and np.all(model.se_ < 1.0)
    assert np.all(np.isfinite(model.predict_proba([0, 1], [0, 1])))


def test_negative_rank_is_refused() -> None:
    sim = simulate(n=50)
    with pytest.raises(ValueError, match="corr_rank"):
        MIRT(corr_rank=-1).fit(sim.X, sim.q)


def test_arrow_slot_covariances_and_spreads_equal_its_entries() -> None:
    """The responses' slot covariances of the arrow form (a batched product of its low-rank rows) are its entries
    at the slots' dimensions, zero on padding, and its direct spreads (without forming them) equal `spread` of
    them, with two-skill items."""
    from models.irt_persons import Arrow, spread

    c, factors, _, a_o, f, _ = _factor_setup(two_skill=True)
    post = Arrow.solve(c, f, a_o, factors)
    ext = factors.ext
    rows, cols = np.divmod(np.arange(ext * ext), ext)
    full = post.entries(rows, cols).reshape(-1, ext, ext)
    dims = c.slot_dims
    expected = full[c.local[:, None, None], dims[:, :, None], dims[:, None, :]] * c.pair_free
    slot_cov = post.slot_cov(c)
    np.testing.assert_allclose(slot_cov, expected, atol=1e-12)
    np.testing.assert_allclose(post.spread(c, a_o), spread(a_o, slot_cov), atol=1e-12)


def test_item_step_equals_the_dense_hessian_assembly() -> None:
    """The items' Newton step sums only the upper triangle of each response's expected Hessian; its inverse
    (the items' calibration covariance) equals that of the full per-response matrices summed, as in the
    textbook form E[sigmoid'(eta) (theta, 1)(theta, 1)^T]."""
    from models.irt import _item_newton, _ItemPrior, _responses, _SkillMeans
    from models.irt_persons import Layout, gh

    rng = np.random.default_rng(11)
    n_items, k, n = 12, 4, 60
    pattern = rng.random((n_items, k)) < 0.4
    pattern[:, -1] = True
    layout = Layout.from_pattern(pattern)
    n_slots = layout.dims.shape[1]
    person = np.repeat(np.arange(n), 5)
    item = rng.integers(0, n_items, person.size)
    resp = _responses(person, item, (rng.random(person.size) < 0.5).astype(float), n, n_items)
    a = np.where(layout.free, rng.uniform(0.5, 1.5, layout.dims.shape), 0.0)
    d = rng.normal(0.0, 1.0, n_items)
    free_o = layout.free[resp.item]
    mu = np.where(free_o, rng.normal(0.0, 1.0, free_o.shape), 0.0)
    raw = rng.normal(0.0, 0.3, (person.size, n_slots, n_slots))
    slot_cov = (raw @ np.swapaxes(raw, 1, 2) + 0.1 * np.eye(n_slots)) * (
        free_o[:, :, None] & free_o[:, None, :]
    )
    prior = _ItemPrior.fitted(a, d, layout, _SkillMeans.of(pattern), 10.0, 1.0)
    item_cov = _item_newton(resp, mu, slot_cov, a, d, np.ones(n_items), layout, prior)[3]

    a_o = a[resp.item]
    c = np.einsum("olm,om->ol", slot_cov, a_o)
    s = np.sqrt(np.einsum("ol,ol->o", a_o, c))
    m = np.einsum("ol,ol->o", a_o, mu) + d[resp.item]
    _, _, e_f, e_fz, e_fz2 = gh(m, s, stein=True)
    fz_s, ff = e_fz / s, (e_fz2 - e_f) / s**2
    h = np.empty((person.size, n_slots + 1, n_slots + 1))
    h[:, :n_slots, :n_slots] = (
        e_f[:, None, None] * (slot_cov + mu[:, :, None] * mu[:, None, :])
        + fz_s[:, None, None] * (mu[:, :, None] * c[:, None, :] + c[:, :, None] * mu[:, None, :])
        + ff[:, None, None] * c[:, :, None] * c[:, None, :]
    )
    h[:, :n_slots, n_slots] = h[:, n_slots, :n_slots] = e_f[:, None] * mu + fz_s[:, None] * c
    h[:, n_slots, n_slots] = e_f
    hess = np.zeros((n_items, n_slots + 1, n_slots + 1))
    np.add.at(hess, resp.item, h)
    hess += np.diag(np.concatenate([np.full(n_slots, 10.0), [1.0]]))
    fixed = np.concatenate([~layout.free, np.zeros((n_items, 1), dtype=bool)], axis=1)
    hess[fixed] = 0.0
    hess += np.eye(n_slots + 1)[None] * fixed[:, :, None]
    expected = np.linalg.inv(hess) * ~(fixed[:, :, None] | fixed[:, None, :])
    np.testing.assert_allclose(item_cov, expected, rtol=1e-10, atol=1e-12)


def _factor_state(seed: int = 3) -> dict[str, Any]:
    """A bifactor model mid-fit on `simulate`'s bank, its factor prior off unit variances: the items, the persons'
    posteriors after two E-steps and everything the factor step takes."""
    sim = simulate(n=400, seed=seed)
    person, item = np.nonzero(~np.isnan(sim.X))
    resp = _responses(person, item, sim.X[person, item], len(sim.X), len(sim.q))
    pattern = np.concatenate([sim.q, np.ones((len(sim.q), 1), dtype=bool)], axis=1)
    layout = Layout.from_pattern(pattern)
    rng = np.random.default_rng(seed)
    a = np.where(layout.free, rng.uniform(0.3, 1.2, layout.free.shape), 0.0)
    skills = _SkillMeans.of(sim.q)
    prior = _ItemPrior.fitted(a, sim.d, layout, skills, 10.0, 1.0)
    factors = Factors(np.array([[1.3], [1.1], [0.9]]), np.array([0.4, 0.5, 0.3]), 1.6)
    chunks = list(split_chunks(resp, layout, pattern.shape[1]))
    w = np.ones(len(sim.q))
    post = Posteriors.prior(resp, chunks, factors.covariance(), layout.dims.shape[1])
    for _ in range(2):
        post = e_step(chunks, a, sim.d, w, factors, post)[0]
    return dict(
        resp=resp,
        layout=layout,
        a=a,
        d=sim.d,
        w=w,
        prior=prior,
        skills=skills,
        factors=factors,
        chunks=chunks,
        post=post,
    )


def _expected_loglik(s: dict[str, Any], a: FloatArray, d: FloatArray, post: Posteriors) -> float:
    resp, layout = s["resp"], s["layout"]
    mu = np.take_along_axis(post.theta[resp.person], layout.dims[resp.item], axis=1) * layout.free[resp.item]
    a_o = a[resp.item]
    m = np.einsum("ol,ol->o", a_o, mu) + d[resp.item]
    return float(np.sum(resp.score * m - gh_softplus(m, spread(a_o, post.slot_cov))))


def _objective(
    s: dict[str, Any], factors: Factors, a: FloatArray, d: FloatArray, prior: Any, post: Posteriors
) -> float:
    """The monitored objective: the bound plus the log priors, the loadings' prior in unit-variance units."""
    scaled_a, scaled_prior, _, _ = _expanded(factors.scale(), a, prior, s["layout"])
    elbo = e_step(s["chunks"], a, d, s["w"], factors, post)[1]
    return elbo - float(scaled_prior.penalty(scaled_a, d, s["layout"]).sum())


def test_restandardising_the_factor_prior_keeps_the_likelihood_and_raises_the_objective() -> None:
    """The factor step ends on unit variances, the scales moved into the item loadings: the expected
    log-likelihood of every response is what it was at the factor prior EM's step gives, and the monitored
    objective (bound plus priors, the loadings' prior on the scale-invariant unit-variance loadings) does not
    fall through the factor step and the persons' recentring."""
    s = _factor_state()
    layout, resp, post = s["layout"], s["resp"], s["post"]
    before = _objective(s, s["factors"], s["a"], s["d"], s["prior"], post)
    factors, a, prior, moved = MIRT()._update_factors(post, s["factors"], s["a"], s["prior"], layout, resp)
    np.testing.assert_allclose(factors.scale(), 1.0, atol=1e-12)
    assert _expected_loglik(s, a, s["d"], moved) == pytest.approx(
        _expected_loglik(s, s["a"], s["d"], post), rel=1e-12
    )
    after = _objective(s, factors, a, s["d"], prior, moved)
    assert after >= before - 1e-9 * abs(before)
    d, refitted, centred = _recentred(moved, factors.precision(), a, s["d"], layout, prior, s["skills"])
    assert not np.array_equal(d, s["d"])
    assert _expected_loglik(s, a, d, centred) == pytest.approx(
        _expected_loglik(s, a, s["d"], moved), rel=1e-12
    )
    assert _objective(s, factors, a, d, refitted, centred) >= after - 1e-9 * abs(after)
