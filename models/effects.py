"""Training effects (训后成效): what completing a course or a project changed in the competencies it teaches.

`estimate_effects(changes, exposures, teaches)` is the pure heart. Its inputs are measurements, not portraits:

- `changes`: one row per teacher and competency assessed twice — `pre`, `post` (0–100), their standard errors
  `pre_se`, `post_se` (classical measurement error: the measurement scatters around the truth, as an unshrunk
  estimate does; `features.growth` turns shrunk posterior means into such measurements), the dates `pre_date`,
  `post_date`, and covariates (`groups`: categorical, e.g. stage and subject; `numeric`: e.g. the teacher's
  overall level).
- `exposures`: (teacher_id, unit_id, date) — a completed course or project; it counts as treatment for a
  teacher and competency when its date lies in (pre_date, post_date].
- `teaches`: (unit_id, competency) — which competencies a unit is estimated on.

Method `adjusted` (TDR's), per competency, imputation on the comparison teachers (those assessed twice who
completed none of the competency's units in between): their post score is regressed on the pre score, the
covariates and the elapsed years by least squares corrected for the pre score's known measurement error
(errors-in-variables: X'X less the summed error variance of the pre column), precision-weighted; each taker's
gain is their post score less that counterfactual, and a unit's effect is the mean gain of its takers (gains of
teachers who took several units are split by least squares). Conditioning on the pre score, stage and subject
adjusts for who chose the course (selection on ability and need); the error correction keeps the noise in the
pre score from reappearing as regression to the mean; intercept and elapsed years absorb the time trend;
fitting the counterfactual on the untreated alone keeps effects that differ between takers (by level fit, by
gap) out of the counterfactual, so the estimand is the mean effect over the takers. Standard errors are
sandwich ones (the takers' scatter and the counterfactual's error), widened by the error the negative controls
show: every unit that does NOT teach the competency, estimated on it the same way, should show nothing, and
their scatter beyond their standard errors is added to every estimate's variance (`_systematic_variance`). The
raw unit effects are then shrunk (empirical Bayes) toward their competency's mean unit effect, with the
between-unit variance pooled over competencies (method of moments, DerSimonian–Laird), so a small course
borrows from the others; the interval is the posterior one. A unit with fewer than `min_treated` teachers
assessed before and after gets no number (effect NaN, `known` False).

Weights `precision` (instead of `equal`): each taker's gain counts by the inverse of its variance — its
measurement noise (post_se² + slope² · pre_se²) plus the spread of the gains beyond it — in the split among the
units (`_precision`): teachers are measured with very different precision (pre_se 5–34 points), so the
estimate is less noisy, but the estimand tilts toward the teachers the instrument measures best. Kept for the
benchmark: on the synthetic provinces it raises the correlation in every world and, with a linear instrument,
keeps the coverage, but the real instrument measures best where its scale is stretched (mid-range scores,
about 1.3 measured points per true point against 0.4 near the ceiling), so it adds that bias and loses coverage
(bench/results/effects.json, `tdr_precision`).

Method `ancova`: one errors-in-variables regression of post on pre, covariates and every unit's indicator over
all teachers, same shrinkage, no negative controls (TDR's estimator before the imputation one; kept for the
benchmark, where it has the higher correlation but the lower coverage and larger bias).

Prior `spike_slab` (instead of the per-competency normal): the raw effects are shrunk under a spike at nil
and one normal slab over all rows, with a systematic error that the nil effects show (`_spike_and_slab`) —
the prior for units estimated on every competency, most of which they do not teach. Kept for the benchmark:
on the synthetic provinces a project's effect on one competency is measured to about ±7 points against true
effects of 1–2, so the data cannot tell the competencies a project teaches from the others; the posterior puts
most of the taught ones at nil with an interval of [0, 0] (covering 0.00–0.74 of them by world, against the
normal prior's 0.89–0.99), and projects keep the normal prior, whose wide intervals say how little is known.

Baselines for the benchmark (same inputs, same output): `naive` — the takers' mean pre→post change; `did` —
that change minus the mean change of every teacher assessed twice without the unit (difference in differences,
unmatched comparisons). `bench/effects.py` compares them, and the same estimator fed true competencies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.stats import norm

FloatArray = NDArray[np.float64]
log = logging.getLogger(__name__)

Method = Literal["adjusted", "ancova", "naive", "did"]
METHODS: tuple[Method, ...] = ("adjusted", "ancova", "naive", "did")
# the prior the raw effects are shrunk under: one normal per competency (units tagged with what they teach), or
# a spike at nil and a normal slab over every competency (units estimated on every competency: projects)
Prior = Literal["normal", "spike_slab"]
PRIORS: tuple[Prior, ...] = ("normal", "spike_slab")
# how the takers' gains are averaged into a unit's effect: each taker alike (the mean effect over the takers), or
# by the precision of their gain (measurement noise plus the takers' spread: less noise, an estimand tilted
# toward the teachers the instrument measures best)
Weights = Literal["equal", "precision"]
WEIGHTS: tuple[Weights, ...] = ("equal", "precision")
# a spread of gains or residuals (points²) below this, beyond their measurement noise, is taken as this
MIN_SPREAD = 1.0
# fewer takers assessed before and after than this: no number (a handful of teachers says little about a course)
MIN_TREATED = 5
# interval level of ci_low / ci_high
LEVEL = 0.9
# the regression needs at least this many comparison teachers (assessed twice, none of the units) per competency
MIN_COMPARISON = 20
# a negative control (a unit on a competency it does not teach) needs this many takers among the comparison rows
MIN_PLACEBO_TAKERS = 30
# a between-unit spread below this (points) is treated as this, so no unit is shrunk all the way to the mean
MIN_BETWEEN_SD = 0.25
_YEAR_DAYS = 365.25
# the spike-and-slab prior's EM: iterations (each costs a pass over the raw effects) and the bounds of the share
# of effects in the slab (a share of exactly 0 or 1 would be a degenerate prior)
MIXTURE_ITERATIONS = 500
MIXTURE_TOL = 1e-8
SLAB_SHARE_BOUNDS = (1e-3, 1.0 - 1e-3)
# interval ends of a posterior with a spike are found by bisection to this fraction of a point
QUANTILE_TOL = 1e-4

EFFECT_COLUMNS = [
    "unit_id", "competency", "effect", "ci_low", "ci_high", "std_error", "raw_effect", "raw_std_error",
    "n_treated", "n_comparison", "known", "method",
]  # fmt: skip


@dataclass(frozen=True)
class _Fit:
    """Raw per-unit effects of one competency: estimates, standard errors, counts."""

    effect: FloatArray
    se: FloatArray
    n_treated: NDArray[np.int64]
    n_comparison: int
    # negative controls (`_placebos`): effects and standard errors of units that do not teach the competency
    placebo: tuple[FloatArray, FloatArray] = (np.zeros(0), np.zeros(0))


@dataclass(frozen=True)
class _Exposed:
    """The exposures encoded once for every competency: each one's teacher (position in `teachers`), unit
    (position in `units`) and date (ns)."""

    teachers: pd.Index
    units: pd.Index
    teacher: NDArray[np.int64]
    unit: NDArray[np.int64]
    date: NDArray[np.int64]


def _encode(exposures: pd.DataFrame, teachers: pd.Index) -> _Exposed:
    """`exposures` (teacher_id, unit_id, date) of the `teachers` (str ids), as positions."""
    units = pd.Index(np.sort(exposures["unit_id"].astype(str).unique()))
    teacher = teachers.get_indexer(pd.Index(exposures["teacher_id"].astype(str)))
    mine = teacher >= 0
    return _Exposed(
        teachers,
        units,
        teacher[mine].astype(np.int64),
        units.get_indexer(exposures["unit_id"].astype(str))[mine].astype(np.int64),
        pd.to_datetime(exposures["date"]).to_numpy(dtype="datetime64[ns]")[mine].view(np.int64),
    )


def _exposure_matrix(rows: pd.DataFrame, ex: _Exposed, units: pd.Index) -> sp.csr_matrix:
    """rows × units, 1 where the row's teacher completed the unit inside its (pre_date, post_date]
    (`rows["teacher"]`: the teacher's position in `ex.teachers`, one row per teacher)."""
    pos = np.full(len(ex.teachers), -1, dtype=np.int64)
    pos[rows["teacher"].to_numpy()] = np.arange(len(rows))
    col = np.full(len(ex.units), -1, dtype=np.int64)
    at = ex.units.get_indexer(units)
    col[at[at >= 0]] = np.flatnonzero(at >= 0)
    r, c = pos[ex.teacher], col[ex.unit]
    mine = (r >= 0) & (c >= 0)
    r, c, d = r[mine], c[mine], ex.date[mine]
    inside = (d > rows["pre_date"].to_numpy(dtype="datetime64[ns]").view(np.int64)[r]) & (
        d <= rows["post_date"].to_numpy(dtype="datetime64[ns]").view(np.int64)[r]
    )
    m = sp.csr_matrix((np.ones(int(inside.sum())), (r[inside], c[inside])), shape=(len(rows), len(units)))
    m.data[:] = 1.0  # a unit completed twice in the window is one exposure
    return m


def _covariates(rows: pd.DataFrame, groups: Sequence[str], numeric: Sequence[str]) -> FloatArray:
    """Intercept, centred pre score, elapsed years, centred numeric covariates, one-hot groups (first dropped)."""
    pre = rows["pre"].to_numpy(dtype=np.float64)
    years = (rows["post_date"] - rows["pre_date"]).dt.days.to_numpy(dtype=np.float64) / _YEAR_DAYS
    cols = [np.ones(len(rows)), pre - pre.mean(), years - years.mean()]
    for name in numeric:
        v = rows[name].to_numpy(dtype=np.float64)
        cols.append(np.nan_to_num(v - np.nanmean(v)) if len(v) else v)
    for name in groups:
        dummies = pd.get_dummies(rows[name].astype(str), drop_first=True, dtype=np.float64)
        # a level with a single teacher would only fit that teacher's noise
        dummies = dummies.loc[:, dummies.sum(axis=0) >= 2]
        cols.extend(dummies.to_numpy().T)
    return np.column_stack(cols)


def _error_variances(rows: pd.DataFrame, numeric: Sequence[str]) -> list[tuple[int, FloatArray]]:
    """(column of the design, per-row error variance) for the covariates measured with known error: the pre
    score (column 1) and each numeric covariate with a `<name>_se` column (columns 3, 4, …); the errors are
    taken as independent of each other."""
    out = [(1, rows["pre_se"].to_numpy(dtype=np.float64) ** 2)]
    for j, name in enumerate(numeric):
        if f"{name}_se" in rows.columns:
            out.append((3 + j, np.nan_to_num(rows[f"{name}_se"].to_numpy(dtype=np.float64)) ** 2))
    return out


def _eiv_wls(
    x: sp.csr_matrix, y: FloatArray, w: FloatArray, errors: list[tuple[int, FloatArray]]
) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """Weighted errors-in-variables least squares: coefficients, their sandwich covariance and the residuals;
    None when the design is singular."""
    xw = sp.csr_matrix(x.multiply(w[:, None]))
    xtx = np.asarray((xw.T @ x).todense())
    # a covariate's own noise inflates its sum of squares by the summed error variances
    for col, var in errors:
        xtx[col, col] -= float(np.sum(w * var))
    xty = np.asarray(xw.T @ y).ravel()
    ridge = 1e-8 * np.trace(xtx) / len(xtx)
    try:
        a_inv = np.linalg.inv(xtx + ridge * np.eye(len(xtx)))
    except np.linalg.LinAlgError:
        return None
    beta = a_inv @ xty
    resid = y - x @ beta
    # estimating-equation terms per row: w_i (x_i r_i + (error variance) β at each noisy covariate's column)
    psi = sp.csr_matrix(xw.multiply(resid[:, None]))
    rows_i = np.arange(len(y))
    for col, var in errors:
        psi = psi + sp.csr_matrix((w * var * beta[col], (rows_i, np.full(len(y), col))), shape=x.shape)
    meat = np.asarray((psi.T @ psi).todense())
    n, k = x.shape
    return beta, a_inv @ meat @ a_inv * (n / max(n - k, 1)), resid


def _adjusted_fit(
    rows: pd.DataFrame, t: sp.csr_matrix, groups: Sequence[str], numeric: Sequence[str]
) -> tuple[FloatArray, FloatArray] | None:
    """Errors-in-variables least squares of post on covariates and unit indicators (see module docstring):
    the unit coefficients and their sandwich standard errors; None when the design is singular."""
    z = _covariates(rows, groups, numeric)
    p = z.shape[1]
    x = sp.hstack([sp.csr_matrix(z), t], format="csr")
    fit = _weighted_eiv(x, rows["post"].to_numpy(dtype=np.float64), rows, _error_variances(rows, numeric))
    if fit is None:
        return None
    beta, cov = fit
    return beta[p:], np.sqrt(np.clip(np.diag(cov)[p:], 0.0, None))


def _imputation_fit(
    rows: pd.DataFrame,
    t: sp.csr_matrix,
    groups: Sequence[str],
    numeric: Sequence[str],
    placebo: sp.csr_matrix,
    weights: Weights = "equal",
) -> tuple[FloatArray, FloatArray, tuple[FloatArray, FloatArray]] | None:
    """Imputation (regression adjustment on the untreated): the counterfactual post score is fitted on the
    comparison rows alone (errors-in-variables, precision-weighted as in `_adjusted_fit`), each taker's gain is
    their post score less that prediction, and the units' effects are the least-squares split of those gains
    among the units each taker completed (a taker of one unit: the plain mean over its takers, so the estimand
    is the mean effect over the takers, whoever they are; `weights="precision"`: each gain weighted by
    `_precision`). Standard errors add the gains' own scatter
    (HC2 sandwich over the takers: noise and effect heterogeneity alike) and the error of the fitted
    counterfactual (its sandwich covariance carried through). Also the placebo effects of the `placebo` units
    (rows × units that do not teach the competency; `_placebos`). None when the counterfactual is singular."""
    z = _covariates(rows, groups, numeric)
    y = rows["post"].to_numpy(dtype=np.float64)
    took = t.getnnz(axis=1) > 0
    # a group level (e.g. a subject) with fewer than two comparison teachers has no counterfactual of its own:
    # its takers get the reference level's
    z = z[:, (np.arange(z.shape[1]) < 3 + len(numeric)) | (np.count_nonzero(z[~took], axis=0) >= 2)]
    control = rows[~took]
    errors = [(col, var[~took]) for col, var in _error_variances(rows, numeric)]
    counterfactual = _weighted_eiv(sp.csr_matrix(z[~took]), y[~took], control, errors)
    if counterfactual is None:
        return None
    beta, cov_beta = counterfactual
    gain = y[took] - z[took] @ beta
    tt = t[took]
    w = np.ones(len(gain))
    effect, g_inv, wt = _split(tt, gain, w)
    if weights == "precision":
        w = _precision(gain - tt @ effect, _gain_noise(rows[took], float(beta[1])))
        effect, g_inv, wt = _split(tt, gain, w)
    resid = gain - tt @ effect
    leverage = np.minimum(w * _leverage(tt, g_inv), 0.99)
    meat = (wt.T @ sp.diags(resid**2 / (1.0 - leverage)) @ wt).toarray()
    own = np.sum((g_inv @ meat) * g_inv, axis=1)  # diag(G⁺ meat G⁺), G⁺ symmetric
    # units × covariates: the counterfactual's error in each effect
    carried = g_inv @ np.asarray(wt.T @ z[took])
    var = own + np.einsum("ij,jk,ik->i", carried, cov_beta, carried)
    residual = y[~took] - z[~took] @ beta
    placebos = _placebos(residual, sp.csr_matrix(placebo[~took]), z[~took], cov_beta)
    return effect, np.sqrt(np.clip(var, 0.0, None)), placebos


def _split(
    tt: sp.csr_matrix, gain: FloatArray, w: FloatArray
) -> tuple[FloatArray, FloatArray, sp.csr_matrix]:
    """The weighted least-squares split of the takers' gains among the units each completed: the effects,
    G⁺ = (TᵀWT)⁺ and WT (T: takers × units)."""
    wt = sp.csr_matrix(tt.multiply(w[:, None]))
    # units taken by exactly the same teachers cannot be told apart: the pseudo-inverse splits their gain evenly
    g_inv = np.linalg.pinv((wt.T @ tt).toarray(), hermitian=True)
    return g_inv @ np.asarray(wt.T @ gain).ravel(), g_inv, wt


def _gain_noise(rows: pd.DataFrame, slope: float) -> FloatArray:
    """The variance each taker's gain (post less the counterfactual) owes to measurement: post_se² + slope² ·
    pre_se² (slope: the counterfactual's on the pre score)."""
    post_se = rows["post_se"].to_numpy(dtype=np.float64)
    pre_se = rows["pre_se"].to_numpy(dtype=np.float64)
    return np.asarray(post_se**2 + slope**2 * pre_se**2, dtype=np.float64)


def _precision(resid: FloatArray, noise: FloatArray) -> FloatArray:
    """Weights of the takers' gains, 1 / (spread + noise): `noise` their measurement variance, the spread what
    the residuals `resid` of the equal-weight split scatter beyond it (effects that differ between takers, the
    counterfactual's misfit), at least MIN_SPREAD."""
    spread = max(float(np.mean(resid**2) - np.mean(noise)), MIN_SPREAD)
    return np.asarray(1.0 / (spread + noise), dtype=np.float64)


def _leverage(tt: sp.csr_matrix, g_inv: FloatArray) -> FloatArray:
    """Each taker's leverage in the split of gains among units, tt_i G⁺ tt_iᵀ: the sum of G⁺ over the pairs of
    units the taker completed (a handful per taker, so no takers × units matrix is formed)."""
    k = np.diff(tt.indptr)
    row = np.repeat(np.arange(tt.shape[0]), k)  # row of each completed unit
    rep = k[row]  # each completed unit meets every unit of its row
    a = np.repeat(tt.indices, rep)
    first = np.repeat(tt.indptr[row], rep)
    offset = np.arange(int(rep.sum())) - np.repeat(np.cumsum(rep) - rep, rep)
    b = tt.indices[first + offset]
    h = np.bincount(np.repeat(row, rep), weights=g_inv[a, b], minlength=tt.shape[0])
    return np.asarray(h, dtype=np.float64)


def _placebos(
    residual: FloatArray, p: sp.csr_matrix, z: FloatArray, cov_beta: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Negative controls: the effect on this competency of each unit that does not teach it, as the mean
    residual of its takers among the comparison rows (the counterfactual's own fit), with its standard error;
    units with fewer than MIN_PLACEBO_TAKERS such takers are left out. Their true effect is taken to be nil,
    so their scatter beyond their standard errors measures what the model gets wrong (`_systematic_variance`)."""
    n = np.asarray(p.sum(axis=0)).ravel()
    keep = np.flatnonzero(n >= MIN_PLACEBO_TAKERS)
    if not len(keep):
        return np.zeros(0), np.zeros(0)
    p, n = sp.csr_matrix(p[:, keep]), n[keep]
    mean = np.asarray(p.T @ residual).ravel() / n
    var = (np.asarray(p.T @ residual**2).ravel() - n * mean**2) / (n - 1)
    zbar = np.asarray(p.T @ z) / n[:, None]
    return mean, np.sqrt(var / n + np.einsum("ij,jk,ik->i", zbar, cov_beta, zbar))


def _systematic_variance(placebo_effect: FloatArray, placebo_se: FloatArray) -> float:
    """The variance of the error a unit's estimate has beyond its standard error (selection the covariates
    miss, measurement error the correction misses), from the negative controls: their effects are nil, so
    E[Σ w e²] = Σ w (se² + σ²) with w = 1/se² (method of moments, as DerSimonian–Laird with the mean held at
    0: a bias common to all counts as error); 0 without negative controls."""
    ok = np.isfinite(placebo_effect) & np.isfinite(placebo_se) & (placebo_se > 0)
    if not ok.any():
        return 0.0
    w = 1.0 / placebo_se[ok] ** 2
    return max(float(np.sum(w * placebo_effect[ok] ** 2) - ok.sum()) / float(np.sum(w)), 0.0)


def _weighted_eiv(
    x: sp.csr_matrix, y: FloatArray, rows: pd.DataFrame, errors: list[tuple[int, FloatArray]]
) -> tuple[FloatArray, FloatArray] | None:
    """`_eiv_wls` twice: unweighted, then weighing each row by the inverse of its residual's variance (the
    spread the measurements do not explain + post error + slope² × pre error; teachers are measured with very
    different precision: a few items or many, a test or a self-rating). Coefficients and their covariance."""
    first = _eiv_wls(x, y, np.ones(len(y)), errors)
    if first is None:
        return None
    beta, _, resid = first
    noise = rows["post_se"].to_numpy(dtype=np.float64) ** 2 + beta[1] ** 2 * errors[0][1]
    fit = _eiv_wls(x, y, _precision(resid, noise), errors)
    return None if fit is None else fit[:2]


def _simple_fit(rows: pd.DataFrame, t: sp.csr_matrix, method: Method) -> _Fit:
    """`naive` (takers' mean change) or `did` (that minus the never-exposed rows' mean change)."""
    delta = (rows["post"] - rows["pre"]).to_numpy(dtype=np.float64)
    tc = t.tocsc()
    n_treated = np.diff(tc.indptr).astype(np.int64)
    sums = np.asarray(tc.T @ delta).ravel()
    squares = np.asarray(tc.T @ (delta**2)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / n_treated
        var = (squares - n_treated * mean**2) / np.maximum(n_treated - 1, 1)
        se = np.sqrt(np.clip(var, 0.0, None) / n_treated)
    control = np.asarray(t.sum(axis=1)).ravel() == 0
    n_comparison = int(control.sum())
    if method == "did" and n_comparison > 1:
        c = delta[control]
        mean = mean - c.mean()
        se = np.sqrt(se**2 + c.var(ddof=1) / n_comparison)
    return _Fit(mean, se, n_treated, n_comparison)


def _spike_and_slab(
    est: FloatArray, se: FloatArray, ok: NDArray[np.bool_], level: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, float]:
    """Posterior means, standard deviations and `level` interval ends of the raw effects `est` (standard errors
    `se`; only `ok` rows) under a spike-and-slab prior, and the systematic variance it found: a unit's effect on
    a competency is nil with probability 1 − π (it does not teach it) and N(μ, τ²) otherwise, and every raw
    effect errs by its standard error and a systematic error of variance σ² (what the nil effects scatter beyond
    their standard errors: they are the negative controls here, as the untaught units are for a course).
    π, μ, τ² and σ² are fitted by EM on the marginal likelihood of all rows at once (most units teach a few of
    the competencies they are estimated on, so the data say how many and how large), τ at least MIN_BETWEEN_SD.
    Each effect's posterior is the spike, with its posterior probability, plus the slab's normal posterior: an
    estimate the slab explains no better than noise around nil is pulled to nil, a clear one keeps nearly its
    slab estimate. The interval is the mixture's equal-tailed one ([0, 0] where the spike holds enough)."""
    n = len(est)
    mean, sd, lo, hi = (np.full(n, np.nan) for _ in range(4))
    if not ok.any():
        return mean, sd, lo, hi, 0.0
    x, s2 = est[ok], se[ok] ** 2
    pi, mu, tau2, sys2 = 0.5, float(np.mean(x)), max(float(np.var(x)), MIN_BETWEEN_SD**2), 0.0
    for _ in range(MIXTURE_ITERATIONS):
        slab = _slab_odds(x, s2 + sys2, pi, mu, tau2)
        v, e2 = tau2 + s2 + sys2, s2 + sys2
        new_pi = float(np.clip(np.mean(slab), *SLAB_SHARE_BOUNDS))
        new_mu = float(np.sum(slab * x / v) / np.sum(slab / v))
        # fixed points of the weighted normal likelihoods for the slab's spread and the spike's excess scatter
        new_tau2 = float(np.sum(slab * ((x - new_mu) ** 2 - e2) / v**2) / np.sum(slab / v**2))
        new_sys2 = float(np.sum((1 - slab) * (x**2 - s2) / e2**2) / np.sum((1 - slab) / e2**2))
        new_tau2, new_sys2 = max(new_tau2, MIN_BETWEEN_SD**2), max(new_sys2, 0.0)
        change = abs(new_pi - pi) + abs(new_mu - mu) + abs(new_tau2 - tau2) + abs(new_sys2 - sys2)
        pi, mu, tau2, sys2 = new_pi, new_mu, new_tau2, new_sys2
        if change < MIXTURE_TOL:
            break
    log.info(
        "effects: spike-and-slab prior, %.1f%% of effects in the slab N(%.2f, %.2f²), systematic error %.2f",
        100 * pi, mu, tau2**0.5, sys2**0.5,
    )  # fmt: skip
    e2 = s2 + sys2
    w = _slab_odds(x, e2, pi, mu, tau2)
    b = tau2 / (tau2 + e2)
    m1, s1 = mu + b * (x - mu), np.sqrt(b * e2)
    mean[ok] = w * m1
    sd[ok] = np.sqrt(np.clip(w * (s1**2 + m1**2) - (w * m1) ** 2, 0.0, None))
    tail = (1.0 - level) / 2.0
    lo[ok], hi[ok] = _mixture_quantile(w, m1, s1, tail), _mixture_quantile(w, m1, s1, 1.0 - tail)
    return mean, sd, lo, hi, sys2


def _slab_odds(x: FloatArray, e2: FloatArray, pi: float, mu: float, tau2: float) -> FloatArray:
    """Posterior probability that each raw effect (error variance `e2`) comes from the slab N(μ, τ²) rather
    than the spike at nil."""
    log_slab = np.log(pi) + norm.logpdf(x, mu, np.sqrt(tau2 + e2))
    log_spike = np.log1p(-pi) + norm.logpdf(x, 0.0, np.sqrt(e2))
    return np.asarray(1.0 / (1.0 + np.exp(np.clip(log_spike - log_slab, -700, 700))), dtype=np.float64)


def _mixture_quantile(w: FloatArray, m: FloatArray, s: FloatArray, p: float) -> FloatArray:
    """The p-quantile (the least t with F(t) ≥ p) of w N(m, s²) + (1 − w) δ₀: nil where p falls in the spike's
    jump of F at 0, else found by bisection on the slab's part."""
    below_nil = w * norm.cdf(-m / s)
    at_nil = (below_nil < p) & (p <= below_nil + 1.0 - w)
    lo = np.minimum(m - 10.0 * s, 0.0) - 1.0
    hi = np.maximum(m + 10.0 * s, 0.0) + 1.0
    while np.max(hi - lo, initial=0.0) > QUANTILE_TOL:
        mid = (lo + hi) / 2.0
        enough = w * norm.cdf((mid - m) / s) + (1.0 - w) * (mid >= 0.0) >= p
        hi, lo = np.where(enough, mid, hi), np.where(enough, lo, mid)
    return np.where(at_nil, 0.0, hi)


def _shrink(raw: pd.DataFrame, known: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Empirical-Bayes posterior means and standard deviations of the raw unit effects: the prior of each is
    N(its competency's precision-weighted mean effect, tau²), tau² by DerSimonian–Laird over all competencies."""
    est = raw["raw_effect"].to_numpy(dtype=np.float64)
    se = raw["raw_std_error"].to_numpy(dtype=np.float64)
    ok = known & np.isfinite(est) & np.isfinite(se) & (se > 0)
    post_mean = np.full(len(raw), np.nan)
    post_sd = np.full(len(raw), np.nan)
    if not ok.any():
        return post_mean, post_sd
    w = np.where(ok, 1.0 / np.where(ok, se, 1.0) ** 2, 0.0)
    comp = raw["competency"].to_numpy()
    frame = pd.DataFrame({"c": comp, "w": w, "wx": w * np.nan_to_num(est), "n": ok.astype(np.float64)})
    g = frame.groupby("c")[["w", "wx", "n"]].sum()
    mu_c = (g["wx"] / g["w"].where(g["w"] > 0)).reindex(comp).to_numpy()
    w_c = g["w"].reindex(comp).to_numpy()
    n_c = g["n"].reindex(comp).to_numpy()
    # DerSimonian–Laird: Q = Σ w (x − μ_c)², E[Q] = (k − #competencies) + τ² (Σ w − Σ w² / W_c)
    q = float(np.sum(w[ok] * (est[ok] - mu_c[ok]) ** 2))
    dof = float(ok.sum() - np.count_nonzero(g["n"] > 0))
    denom = float(np.sum(w[ok] - w[ok] ** 2 / w_c[ok]))
    tau2 = max((q - dof) / denom, 0.0) if denom > 0 else 0.0
    tau2 = max(tau2, MIN_BETWEEN_SD**2)
    # a competency with a single unit has no mean of its own: its unit keeps its raw estimate under the prior
    # of all units (grand mean)
    grand = float(np.sum(w[ok] * est[ok]) / np.sum(w[ok]))
    mu = np.where(n_c >= 2, mu_c, grand)
    mu_var = np.where(n_c >= 2, 1.0 / np.where(w_c > 0, w_c, np.inf), 1.0 / np.sum(w[ok]))
    b = tau2 / (tau2 + se**2)
    post_mean[ok] = (mu + b * (est - mu))[ok]
    post_sd[ok] = np.sqrt(b * se**2 + (1.0 - b) ** 2 * mu_var)[ok]
    return post_mean, post_sd


def estimate_effects(
    changes: pd.DataFrame,
    exposures: pd.DataFrame,
    teaches: pd.DataFrame,
    method: Method = "adjusted",
    groups: Sequence[str] = ("stage", "subject"),
    numeric: Sequence[str] = (),
    min_treated: int = MIN_TREATED,
    level: float = LEVEL,
    prior: Prior = "normal",
    weights: Weights = "equal",
) -> pd.DataFrame:
    """Each unit's effect on each competency it teaches (see the module docstring): EFFECT_COLUMNS, one row per
    (unit, competency) of `teaches` whose competency appears in `changes`, sorted by unit and competency."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; one of {', '.join(PRIORS)}")
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; one of {', '.join(WEIGHTS)}")
    groups = [g for g in groups if g in changes.columns]
    numeric = [c for c in numeric if c in changes.columns]
    teaches = teaches[["unit_id", "competency"]].astype(str).drop_duplicates()
    teacher_ids = changes["teacher_id"].astype(str)
    teachers = pd.Index(teacher_ids.unique())
    ex = _encode(exposures, teachers)
    changes = changes.assign(teacher=teachers.get_indexer(pd.Index(teacher_ids)))
    parts = []
    placebos: list[tuple[FloatArray, FloatArray]] = []
    teaches_of = {c: pd.Index(np.sort(g["unit_id"].unique())) for c, g in teaches.groupby("competency")}
    for comp, rows in changes.groupby(changes["competency"].astype(str), sort=True):
        if comp not in teaches_of:
            continue
        units = teaches_of[comp]
        rows = rows.reset_index(drop=True)
        t = _exposure_matrix(rows, ex, units)
        others = ex.units.difference(units)
        placebo = (
            _exposure_matrix(rows, ex, others) if method == "adjusted" else sp.csr_matrix((len(rows), 0))
        )
        fit = _fit(rows, t, method, groups, numeric, placebo, weights)
        placebos.append(fit.placebo)
        parts.append(
            pd.DataFrame(
                {
                    "unit_id": units.to_numpy(),
                    "competency": comp,
                    "raw_effect": fit.effect,
                    "raw_std_error": fit.se,
                    "n_treated": fit.n_treated,
                    "n_comparison": fit.n_comparison,
                }
            )
        )
    raw = _with_unseen(parts, teaches, changes)
    known = (raw["n_treated"].to_numpy() >= min_treated) & np.isfinite(raw["raw_effect"].to_numpy())
    if method == "adjusted":
        # the error the negative controls show beyond their standard errors is every estimate's too
        systematic = _systematic_variance(*(np.concatenate(a) for a in zip(*placebos, strict=True)))
        log.info("effects: negative controls add %.2f points of systematic error", np.sqrt(systematic))
        raw["raw_std_error"] = np.sqrt(raw["raw_std_error"] ** 2 + systematic)
    z = float(norm.ppf(0.5 + level / 2.0))
    if method in ("adjusted", "ancova") and prior == "spike_slab":
        est, se = (
            raw["raw_effect"].to_numpy(dtype=np.float64),
            raw["raw_std_error"].to_numpy(dtype=np.float64),
        )
        usable = known & np.isfinite(est) & np.isfinite(se) & (se > 0)
        effect, sd, ci_low, ci_high, systematic = _spike_and_slab(est, se, usable, level)
        raw["raw_std_error"] = np.sqrt(raw["raw_std_error"] ** 2 + systematic)
        name = "imputation_eiv_spike_slab" if method == "adjusted" else "ancova_eiv_spike_slab"
    else:
        if method in ("adjusted", "ancova"):
            effect, sd = _shrink(raw, known)
            name = "imputation_eiv_eb" if method == "adjusted" else "ancova_eiv_eb"
            if method == "adjusted" and weights == "precision":
                name = "imputation_eiv_precision_eb"
        else:
            effect = np.where(known, raw["raw_effect"], np.nan)
            sd = np.where(known, raw["raw_std_error"], np.nan)
            name = method
        ci_low, ci_high = effect - z * sd, effect + z * sd
    out = raw.assign(
        effect=effect,
        std_error=sd,
        ci_low=ci_low,
        ci_high=ci_high,
        known=known & np.isfinite(effect),
        method=np.where(known, name, "unknown"),
    )
    return out[EFFECT_COLUMNS].sort_values(["unit_id", "competency"], kind="stable").reset_index(drop=True)


def _fit(
    rows: pd.DataFrame,
    t: sp.csr_matrix,
    method: Method,
    groups: Sequence[str],
    numeric: Sequence[str],
    placebo: sp.csr_matrix,
    weights: Weights = "equal",
) -> _Fit:
    if method not in ("adjusted", "ancova"):
        return _simple_fit(rows, t, method)
    treated = np.asarray(t.sum(axis=0)).ravel().astype(np.int64)
    n_comparison = int((np.asarray(t.sum(axis=1)).ravel() == 0).sum())
    # columns of units nobody here took carry no information (and would make X'X singular)
    used = np.flatnonzero(treated > 0)
    effect = np.full(t.shape[1], np.nan)
    se = np.full(t.shape[1], np.nan)
    if n_comparison < MIN_COMPARISON or not len(used):
        return _Fit(effect, se, treated, n_comparison)
    if method == "ancova":
        fit = _adjusted_fit(rows, t[:, used], groups, numeric)
        if fit is not None:
            effect[used], se[used] = fit
        return _Fit(effect, se, treated, n_comparison)
    imputed = _imputation_fit(rows, t[:, used], groups, numeric, placebo, weights)
    if imputed is None:
        return _Fit(effect, se, treated, n_comparison)
    effect[used], se[used], placebos = imputed
    return _Fit(effect, se, treated, n_comparison, placebos)


def _with_unseen(parts: list[pd.DataFrame], teaches: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """The fitted rows, plus every (unit, competency) of `teaches` on a competency nobody was assessed on twice
    (no takers, no number)."""
    fitted = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=EFFECT_COLUMNS[:2])
    seen = set(changes["competency"].astype(str).unique())
    unseen = teaches[~teaches["competency"].isin(seen)]
    rest = unseen.assign(raw_effect=np.nan, raw_std_error=np.nan, n_treated=0, n_comparison=0)
    out = pd.concat([fitted, rest], ignore_index=True) if len(rest) else fitted
    return out.astype(
        {
            "n_treated": np.int64,
            "n_comparison": np.int64,
            "raw_effect": np.float64,
            "raw_std_error": np.float64,
        }
    )
