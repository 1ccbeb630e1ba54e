"""Effect estimation (models.effects) on small simulated frames whose true effects are known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import norm

from models.effects import EFFECT_COLUMNS, _leverage, _mixture_quantile, _spike_and_slab, estimate_effects

PRE = pd.Timestamp("2024-03-01")
POST = pd.Timestamp("2025-03-01")


@dataclass(frozen=True)
class World:
    changes: pd.DataFrame
    exposures: pd.DataFrame
    teaches: pd.DataFrame
    truth: pd.Series  # true effect by unit_id (each unit teaches one competency)


def simulate(
    n: int = 3000,
    units: int = 12,
    noise: float | np.ndarray = 6.0,
    selection: float = 1.5,
    seed: int = 0,
    takers: int | None = None,
) -> World:
    """Teachers assessed before and after; the weaker a teacher truly is, the likelier they take a course
    (selection on need); true growth regresses toward the mean and drifts upward (time trend); measurements
    carry classical error of sd `noise` (one for all, or one per teacher). Units 0..units-1 teach competency C{u % 3}."""
    rng = np.random.default_rng(seed)
    comps = ["C0", "C1", "C2"]
    stage = rng.choice(["primary", "junior"], n)
    level = rng.normal(60, 8, n) + np.where(stage == "junior", 4.0, 0.0)
    theta1 = level[:, None] + rng.normal(0, 6, (n, 3))
    effect = rng.normal(4.0, 2.5, units)
    comp_of = np.arange(units) % 3
    # selection on the true gap of the unit's competency
    rows = []
    taken = np.zeros((n, 3))
    for u in range(units):
        gap = (70 - theta1[:, comp_of[u]]) / 10
        p = 1 / (1 + np.exp(-(selection * gap - 3.0)))
        who = np.flatnonzero(rng.random(n) < p)
        if takers is not None:
            who = who[:takers]
        taken[who, comp_of[u]] += effect[u]
        days = rng.integers(30, 330, len(who))
        rows.append(
            pd.DataFrame(
                {"teacher_id": who.astype(str), "unit_id": f"U{u}", "date": PRE + pd.to_timedelta(days, "D")}
            )
        )
    theta2 = theta1 + 2.0 + 0.2 * (60 - theta1) + taken + rng.normal(0, 2, (n, 3))
    sd = np.broadcast_to(np.asarray(noise, dtype=np.float64).reshape(-1, 1), (n, 3))
    pre = theta1 + rng.normal(0, 1, (n, 3)) * sd
    post = theta2 + rng.normal(0, 1, (n, 3)) * sd
    changes = pd.DataFrame(
        {
            "teacher_id": np.repeat(np.arange(n).astype(str), 3),
            "competency": np.tile(comps, n),
            "pre": pre.ravel(),
            "post": post.ravel(),
            "pre_se": sd.ravel(),
            "post_se": sd.ravel(),
            "pre_date": PRE,
            "post_date": POST,
            "stage": np.repeat(stage, 3),
            # the teacher's level from the other competencies (its error independent of the pre score's)
            "level": ((pre.sum(axis=1)[:, None] - pre) / 2).ravel(),
            "level_se": sd.ravel() / np.sqrt(2),
        }
    )
    teaches = pd.DataFrame(
        {"unit_id": [f"U{u}" for u in range(units)], "competency": [comps[c] for c in comp_of]}
    )
    return World(
        changes,
        pd.concat(rows, ignore_index=True),
        teaches,
        pd.Series(effect, index=[f"U{u}" for u in range(units)]),
    )


def _run(w: World, method: str = "adjusted", **kw: object) -> pd.DataFrame:
    e = estimate_effects(w.changes, w.exposures, w.teaches, method=method, **kw)  # type: ignore[arg-type]
    return e.set_index("unit_id").assign(truth=w.truth)


def test_adjusted_recovers_effects_that_naive_and_did_overstate_under_selection_on_need() -> None:
    w = simulate()
    bias = {}
    for m in ("adjusted", "naive", "did"):
        e = _run(w, m)
        bias[m] = float((e["effect"] - e["truth"]).mean())
    assert abs(bias["adjusted"]) < 1.0
    # the takers were weaker: their growth toward the mean is mistaken for the course's effect
    assert bias["naive"] > 2.0 and bias["did"] > 1.0


def test_adjusted_intervals_cover_about_ninety_percent() -> None:
    hits = []
    for seed in range(4):
        w = simulate(seed=seed, units=15)
        e = _run(w)
        hits.extend(((e["ci_low"] <= e["truth"]) & (e["truth"] <= e["ci_high"])).tolist())
    assert 0.75 <= np.mean(hits) <= 1.0


def test_precision_weights_are_equal_weights_when_every_teacher_is_measured_alike() -> None:
    w = simulate(n=1500, units=8)
    equal, precision = _run(w), _run(w, weights="precision")
    assert np.allclose(precision["raw_effect"], equal["raw_effect"], atol=1e-8)
    assert (precision["method"] == "imputation_eiv_precision_eb").all()


def test_precision_weights_trust_the_teachers_measured_best() -> None:
    """Half the teachers measured to 2 points, half to 14: weighting their gains by precision gives smaller
    standard errors and errors, and the intervals still cover."""
    errors: dict[str, list[float]] = {"equal": [], "precision": []}
    se: dict[str, list[float]] = {"equal": [], "precision": []}
    hits = []
    for seed in range(3):
        noise = np.where(np.arange(3000) % 2 == 0, 2.0, 14.0)
        w = simulate(seed=seed, units=15, noise=noise)
        for weights in ("equal", "precision"):
            e = _run(w, weights=weights)
            errors[weights].extend((e["raw_effect"] - e["truth"]).tolist())
            se[weights].extend(e["raw_std_error"].tolist())
            if weights == "precision":
                hits.extend(((e["ci_low"] <= e["truth"]) & (e["truth"] <= e["ci_high"])).tolist())
    assert np.mean(se["precision"]) < 0.8 * np.mean(se["equal"])
    assert np.sqrt(np.mean(np.square(errors["precision"]))) < np.sqrt(np.mean(np.square(errors["equal"])))
    assert 0.75 <= np.mean(hits) <= 1.0


def test_output_has_the_contract_columns_and_one_row_per_unit_and_competency() -> None:
    w = simulate(n=800, units=6)
    e = estimate_effects(w.changes, w.exposures, w.teaches)
    assert list(e.columns) == EFFECT_COLUMNS
    assert len(e) == len(w.teaches)
    assert (e["ci_low"] <= e["effect"]).all() and (e["effect"] <= e["ci_high"]).all()


def test_a_unit_with_too_few_takers_assessed_twice_gets_no_number() -> None:
    w = simulate(n=800, units=6)
    few = w.exposures[w.exposures["unit_id"] != "U0"]
    few = pd.concat([few, w.exposures[w.exposures["unit_id"] == "U0"].head(2)])
    e = estimate_effects(w.changes, few, w.teaches).set_index("unit_id")
    u0 = e.loc["U0"]
    assert not u0["known"] and pd.isna(u0["effect"]) and pd.isna(u0["ci_low"])
    assert u0["n_treated"] == 2 and u0["method"] == "unknown"
    assert e.drop(index="U0")["known"].all()


def test_a_unit_teaching_a_competency_nobody_was_assessed_on_twice_gets_no_number() -> None:
    w = simulate(n=800, units=6)
    teaches = pd.concat([w.teaches, pd.DataFrame({"unit_id": ["U0"], "competency": ["C9"]})])
    e = estimate_effects(w.changes, w.exposures, teaches)
    row = e[(e["unit_id"] == "U0") & (e["competency"] == "C9")].iloc[0]
    assert row["n_treated"] == 0 and not row["known"] and pd.isna(row["effect"])


def test_training_outside_the_pre_post_window_is_not_treatment() -> None:
    w = simulate(n=800, units=3)
    late = w.exposures.assign(date=POST + pd.Timedelta(days=10))
    e = estimate_effects(w.changes, late, w.teaches)
    assert (e["n_treated"] == 0).all() and not e["known"].any()


def test_small_courses_are_shrunk_toward_their_competency_mean() -> None:
    w = simulate(n=3000, units=12, takers=8, seed=3)
    e = _run(w)
    raw_spread = float(e["raw_effect"].std())
    assert float(e["effect"].std()) < raw_spread
    assert (e["ci_high"] - e["ci_low"]).lt(2 * 1.645 * e["raw_std_error"] + 1e-9).all()


@pytest.mark.parametrize("method", ["ancova", "naive", "did"])
def test_baselines_give_a_number_with_an_interval_for_every_supported_unit(method: str) -> None:
    w = simulate(n=800, units=6)
    e = estimate_effects(w.changes, w.exposures, w.teaches, method=method)  # type: ignore[arg-type]
    name = "ancova_eiv_eb" if method == "ancova" else method
    assert e["known"].all() and (e["method"] == name).all() and (e["ci_high"] > e["ci_low"]).all()


def test_unknown_weights_are_refused() -> None:
    w = simulate(n=300, units=3)
    with pytest.raises(ValueError, match="unknown weights"):
        estimate_effects(w.changes, w.exposures, w.teaches, weights="median")  # type: ignore[arg-type]


def test_unknown_method_is_refused() -> None:
    w = simulate(n=200, units=3)
    with pytest.raises(ValueError, match="unknown method"):
        estimate_effects(w.changes, w.exposures, w.teaches, method="magic")  # type: ignore[arg-type]


def test_units_that_move_a_competency_they_are_not_tagged_with_widen_every_interval() -> None:
    """Negative controls: a unit estimated on a competency it does not teach should show nothing; when such
    units do show effects (here: untagged courses that raise C0 by 6 points), the model is missing something,
    and every interval widens by that error."""
    w = simulate(n=3000, units=6, seed=1)
    rng = np.random.default_rng(5)
    taken = [rng.choice(3000, 200, replace=False) for _ in range(8)]
    untagged = pd.concat(
        [
            pd.DataFrame(
                {"teacher_id": who.astype(str), "unit_id": f"X{j}", "date": PRE + pd.Timedelta(days=90)}
            )
            for j, who in enumerate(taken)
        ],
        ignore_index=True,
    )
    moved = w.changes.copy()
    for j, who in enumerate(taken):
        hit = moved["teacher_id"].isin(who.astype(str)) & (moved["competency"] == "C0")
        moved.loc[hit, "post"] += 6.0 if j % 2 else -6.0
    plain = estimate_effects(w.changes, pd.concat([w.exposures, untagged]), w.teaches)
    missed = estimate_effects(moved, pd.concat([w.exposures, untagged]), w.teaches)
    width = (plain["ci_high"] - plain["ci_low"]).mean()
    assert ((missed["ci_high"] - missed["ci_low"]) > (plain["ci_high"] - plain["ci_low"])).all()
    assert (missed["ci_high"] - missed["ci_low"]).mean() > 1.2 * width


def test_a_taker_of_several_units_has_the_leverage_of_the_dense_least_squares_split() -> None:
    rng = np.random.default_rng(0)
    tt = sp.csr_matrix((rng.random((300, 12)) < 0.15).astype(np.float64))
    tt = sp.csr_matrix(tt[tt.getnnz(axis=1) > 0])
    g_inv = np.linalg.pinv((tt.T @ tt).toarray(), hermitian=True)
    dense = tt.toarray()
    assert np.allclose(_leverage(tt, g_inv), np.einsum("ij,jk,ik->i", dense, g_inv, dense))


def test_the_gain_of_teachers_who_took_two_units_is_split_by_least_squares() -> None:
    """U3 (teaching C0, no effect) was taken only by teachers who also took U0: their gain is U0's, and the
    split gives it to U0, not half to each."""
    w = simulate(n=4000, units=3, seed=2)
    u0 = w.exposures[w.exposures["unit_id"] == "U0"]
    u3 = u0.head(len(u0) // 2).assign(unit_id="U3")
    teaches = pd.concat([w.teaches, pd.DataFrame({"unit_id": ["U3"], "competency": ["C0"]})])
    e = estimate_effects(w.changes, pd.concat([w.exposures, u3]), teaches).set_index("unit_id")
    effect, se = e["raw_effect"].astype(float), e["raw_std_error"].astype(float)
    assert abs(effect["U3"]) < 3 * se["U3"]
    assert abs(effect["U0"] - w.truth["U0"]) < 3 * se["U0"]


def test_the_spike_and_slab_prior_pulls_untaught_competencies_to_nil_and_keeps_a_strong_taught_effect() -> (
    None
):
    """Units estimated on every competency (as projects are): each teaches one of three, so two thirds of the
    pairs have a nil effect. Under the spike-and-slab prior those are pulled to nil, with intervals that hold
    it, narrower than the normal prior's; the taught effects (4 ± 2.5 points, measured to about ±1) stay."""
    w = simulate(n=3000, units=9, seed=2)
    every = pd.DataFrame(
        {"unit_id": np.repeat(w.teaches["unit_id"], 3), "competency": np.tile(["C0", "C1", "C2"], 9)}
    )
    taught = every.merge(w.teaches.assign(taught=True), how="left")["taught"].fillna(False).to_numpy(bool)
    normal = estimate_effects(w.changes, w.exposures, every)
    mixed = estimate_effects(w.changes, w.exposures, every, prior="spike_slab")
    assert (mixed["method"] == "imputation_eiv_spike_slab").all()
    untaught = mixed[~taught]
    assert untaught["effect"].abs().mean() < 0.5 * normal[~taught]["effect"].abs().mean()
    assert ((untaught["ci_low"] <= 0) & (untaught["ci_high"] >= 0)).mean() >= 0.9
    width = mixed["ci_high"] - mixed["ci_low"]
    assert width[~taught].mean() < (normal["ci_high"] - normal["ci_low"])[~taught].mean()
    strong = mixed[taught].set_index("unit_id").assign(truth=w.truth)
    strong = strong[strong["truth"] > 3.0]
    assert len(strong) >= 3 and (strong["effect"] - strong["truth"]).abs().max() < 2.0


def test_a_clear_effect_among_many_nil_ones_keeps_its_size_and_the_nil_ones_go_to_nil() -> None:
    rng = np.random.default_rng(0)
    est = np.r_[8.0, 7.0, rng.normal(0.0, 1.0, 300)]
    se = np.ones_like(est)
    mean, sd, lo, hi, systematic = _spike_and_slab(est, se, np.ones(len(est), bool), 0.9)
    assert mean[0] > 6.5 and lo[0] > 4.0 and mean[1] > 5.5
    assert np.abs(mean[2:]).mean() < 0.2 and ((lo[2:] <= 0) & (hi[2:] >= 0)).mean() > 0.95
    assert systematic < 0.3  # the nil effects scatter as their standard errors say


def test_the_spike_takes_up_the_excess_scatter_of_the_nil_effects_as_systematic_error() -> None:
    rng = np.random.default_rng(1)
    est = rng.normal(0.0, np.sqrt(1.0 + 2.0**2), 2000)
    _, _, _, _, systematic = _spike_and_slab(est, np.ones(2000), np.ones(2000, bool), 0.9)
    assert abs(np.sqrt(systematic) - 2.0) < 0.3


def test_mixture_quantiles_are_the_least_points_where_the_cdf_reaches_the_level() -> None:
    m, s = np.array([2.0, 2.0, 0.5, -3.0]), np.array([1.0, 1.0, 0.5, 1.0])
    w = np.array([1.0, 0.0, 0.5, 0.6])
    for p in (0.05, 0.5, 0.95):
        q = _mixture_quantile(w, m, s, p)
        assert abs(q[0] - (2.0 + norm.ppf(p))) < 1e-3 and q[1] == 0.0
        cdf = w * norm.cdf((q - m) / s) + (1 - w) * (q >= 0)
        below = w * norm.cdf((q - 1e-3 - m) / s) + (1 - w) * (q - 1e-3 >= 0)
        assert (cdf >= p - 1e-6).all() and (below < p).all()
