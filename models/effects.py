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

Method `adjusted` (TDR's), per competency: the post score is regressed on the pre score, the covariates, the
elapsed years and one indicator per unit (a teacher may have taken several), by least squares corrected for the
pre score's known measurement error (errors-in-variables: X'X less the summed error variance of the pre column).
Conditioning on the pre score, the teacher's overall level, stage and subject adjusts for who chose the course
(selection on ability and need); the error correction keeps the noise in the pre score from reappearing as
regression to the mean; intercept and elapsed years absorb the time trend. Standard errors are sandwich
(heteroskedasticity-robust) ones. The raw unit effects are then shrunk (empirical Bayes) toward their
competency's mean unit effect, with the between-unit variance pooled over competencies (method of moments,
DerSimonian–Laird), so a small course borrows from the others; the interval is the posterior one. A unit with
fewer than `min_treated` teachers assessed before and after gets no number (effect NaN, `known` False).

Baselines for the benchmark (same inputs, same output): `naive` — the takers' mean pre→post change; `did` —
that change minus the mean change of every teacher assessed twice without the unit (difference in differences,
unmatched comparisons). `bench/effects.py` compares them, and the same estimator fed true competencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.stats import norm

FloatArray = NDArray[np.float64]

Method = Literal["adjusted", "naive", "did"]
METHODS: tuple[Method, ...] = ("adjusted", "naive", "did")
# fewer takers assessed before and after than this: no number (a handful of teachers says little about a course)
MIN_TREATED = 5
# interval level of ci_low / ci_high
LEVEL = 0.9
# the regression needs at least this many comparison teachers (assessed twice, none of the units) per competency
MIN_COMPARISON = 20
# a between-unit spread below this (points) is treated as this, so no unit is shrunk all the way to the mean
MIN_BETWEEN_SD = 0.25
_YEAR_DAYS = 365.25

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


def _exposure_matrix(rows: pd.DataFrame, exposures: pd.DataFrame, units: pd.Index) -> sp.csr_matrix:
    """rows × units, 1 where the row's teacher completed the unit inside its (pre_date, post_date]."""
    pos = pd.Series(np.arange(len(rows)), index=rows["teacher_id"].to_numpy())
    e = exposures[exposures["unit_id"].isin(units)]
    e = e[e["teacher_id"].isin(pos.index)]
    r = pos.reindex(e["teacher_id"]).to_numpy(dtype=np.int64)
    d = e["date"].to_numpy(dtype="datetime64[ns]")
    inside = (d > rows["pre_date"].to_numpy(dtype="datetime64[ns]")[r]) & (
        d <= rows["post_date"].to_numpy(dtype="datetime64[ns]")[r]
    )
    c = units.get_indexer(pd.Index(e["unit_id"]))
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
    the unit coefficients and their sandwich standard errors; None when the design is singular.

    Teachers are measured with very different precision (a few items or many, a test or a self-rating): a first
    unweighted fit gives the pre score's slope and the spread the measurements do not explain; the second
    weighs each teacher by the inverse of their residual's variance (that spread + post error + slope² × pre
    error)."""
    z = _covariates(rows, groups, numeric)
    p = z.shape[1]
    x = sp.hstack([sp.csr_matrix(z), t], format="csr")
    y = rows["post"].to_numpy(dtype=np.float64)
    errors = _error_variances(rows, numeric)
    first = _eiv_wls(x, y, np.ones(len(y)), errors)
    if first is None:
        return None
    beta, _, resid = first
    noise = rows["post_se"].to_numpy(dtype=np.float64) ** 2 + beta[1] ** 2 * errors[0][1]
    spread = max(float(np.mean(resid**2) - np.mean(noise)), 1.0)
    fit = _eiv_wls(x, y, 1.0 / (spread + noise), errors)
    if fit is None:
        return None
    beta, cov, _ = fit
    return beta[p:], np.sqrt(np.clip(np.diag(cov)[p:], 0.0, None))


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
) -> pd.DataFrame:
    """Each unit's effect on each competency it teaches (see the module docstring): EFFECT_COLUMNS, one row per
    (unit, competency) of `teaches` whose competency appears in `changes`, sorted by unit and competency."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    groups = [g for g in groups if g in changes.columns]
    numeric = [c for c in numeric if c in changes.columns]
    teaches = teaches[["unit_id", "competency"]].astype(str).drop_duplicates()
    exposures = exposures.assign(
        teacher_id=exposures["teacher_id"].astype(str),
        unit_id=exposures["unit_id"].astype(str),
        date=pd.to_datetime(exposures["date"]),
    )
    parts = []
    for comp, rows in changes.groupby(changes["competency"].astype(str), sort=True):
        units = pd.Index(np.sort(teaches.loc[teaches["competency"] == comp, "unit_id"].unique()))
        if units.empty:
            continue
        rows = rows.assign(teacher_id=rows["teacher_id"].astype(str)).reset_index(drop=True)
        t = _exposure_matrix(rows, exposures, units)
        fit = _fit(rows, t, method, groups, numeric)
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
        effect, sd = _shrink(raw, known)
        name = "ancova_eiv_eb"
    else:
        effect = np.where(known, raw["raw_effect"], np.nan)
        sd = np.where(known, raw["raw_std_error"], np.nan)
        name = method
    z = float(norm.ppf(0.5 + level / 2.0))
    out = raw.assign(
        effect=effect,
        std_error=sd,
        ci_low=effect - z * sd,
        ci_high=effect + z * sd,
        known=known & np.isfinite(effect),
        method=np.where(known, name, "unknown"),
    )
    return out[EFFECT_COLUMNS].sort_values(["unit_id", "competency"], kind="stable").reset_index(drop=True)


def _fit(
    rows: pd.DataFrame, t: sp.csr_matrix, method: Method, groups: Sequence[str], numeric: Sequence[str]
) -> _Fit:
    if method != "adjusted":
        return _simple_fit(rows, t, method)
    treated = np.asarray(t.sum(axis=0)).ravel().astype(np.int64)
    n_comparison = int((np.asarray(t.sum(axis=1)).ravel() == 0).sum())
    # columns of units nobody here took carry no information (and would make X'X singular)
    used = np.flatnonzero(treated > 0)
    effect = np.full(t.shape[1], np.nan)
    se = np.full(t.shape[1], np.nan)
    if n_comparison >= MIN_COMPARISON and len(used):
        fit = _adjusted_fit(rows, t[:, used], groups, numeric)
        if fit is not None:
            effect[used], se[used] = fit
    return _Fit(effect, se, treated, n_comparison)


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
