"""The compiled forest against LightGBM itself: small real boosters (LambdaRank, regression with every missing type,
single-leaf trees, no trees) scored on rows built to sit on the edges of every split — NaN, ±inf, zeros, values
read as zero, each threshold exactly and one ulp either side — must give the booster's scores bit for bit."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.forest import ZERO_THRESHOLD, compile_forest, effective_threshold
from models.ranker import Ranker

N_FEATURES = 6
N_TREES = 30


def _data(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Features with NaNs in most columns (none in column 0), many exact zeros, a few tiny values and a target
    that depends on all of them, missingness included."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 1] = np.round(X[:, 1])  # many exact zeros
    X[rng.random(n) < 0.05, 2] = rng.choice([-1e-36, 1e-36, -ZERO_THRESHOLD, ZERO_THRESHOLD])
    for j in range(1, N_FEATURES):
        X[rng.random(n) < 0.1, j] = np.nan
    filled = np.nan_to_num(X, nan=-0.7)
    y = (
        filled[:, 0]
        + 0.8 * filled[:, 1] ** 2
        - filled[:, 2] * filled[:, 3]
        + np.isnan(X[:, 4])
        + filled[:, 5]
    )
    return X, y + 0.1 * rng.normal(size=n)


def _params(**extra: Any) -> dict[str, Any]:
    return {"n_estimators": N_TREES, "num_leaves": 31, "min_child_samples": 5, "verbose": -1, **extra}


def _regressor(**extra: Any) -> lgb.Booster:
    X, y = _data(1)
    return lgb.LGBMRegressor(**_params(**extra)).fit(X, y).booster_


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "leaf_value" in node:
        return []
    return [node, *_walk(node["left_child"]), *_walk(node["right_child"])]


def _splits(booster: lgb.Booster) -> list[dict[str, Any]]:
    return [s for info in booster.dump_model()["tree_info"] for s in _walk(info["tree_structure"])]


def _missing_types(booster: lgb.Booster) -> set[str]:
    return {s["missing_type"] for s in _splits(booster)}


def _edge_rows(booster: lgb.Booster, seed: int, n: int = 3000) -> np.ndarray:
    """Rows from fresh data where half the cells are replaced by edge values of that feature's splits."""
    X, _ = _data(seed, n)
    rng = np.random.default_rng(seed)
    z = ZERO_THRESHOLD
    special = [
        np.nan,
        np.inf,
        -np.inf,
        0.0,
        -0.0,
        1e-40,
        -1e-40,
        z,
        -z,
        np.nextafter(z, 1),
        np.nextafter(-z, -1),
    ]
    for j in range(N_FEATURES):
        thresholds = [s["threshold"] for s in _splits(booster) if s["split_feature"] == j]
        near = [np.nextafter(t, d) for t in thresholds for d in (-np.inf, np.inf)]
        pool = np.array(thresholds + near + special, dtype=np.float64)
        mask = rng.random(n) < 0.5
        X[mask, j] = rng.choice(pool, int(mask.sum()))
    return X


def _assert_same(booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None) -> None:
    forest = compile_forest(booster, num_iteration)
    expected = booster.predict(X, num_iteration=num_iteration)
    got = forest.predict(X)
    assert got.dtype == np.float64
    assert np.array_equal(got, expected), np.abs(got - expected).max()


@pytest.fixture(scope="module")
def lambdarank() -> lgb.Booster:
    X, y = _data(2)
    grade = np.digitize(y, np.quantile(y, [0.5, 0.8, 0.95]))
    group = np.full(100, 20)
    model = lgb.LGBMRanker(**_params(objective="lambdarank")).fit(X, grade, group=group)
    return model.booster_


@pytest.fixture(scope="module")
def regressor() -> lgb.Booster:
    return _regressor()


def test_lambdarank_matches_lightgbm(lambdarank: lgb.Booster) -> None:
    assert {"None", "NaN"} <= _missing_types(lambdarank)
    _assert_same(lambdarank, _edge_rows(lambdarank, 10))
    _assert_same(lambdarank, _data(11)[0])


def test_regressor_matches_lightgbm(regressor: lgb.Booster) -> None:
    assert {"None", "NaN"} <= _missing_types(regressor)
    _assert_same(regressor, _edge_rows(regressor, 12))


def test_zero_as_missing_matches_lightgbm() -> None:
    booster = _regressor(zero_as_missing=True)
    assert "Zero" in _missing_types(booster)
    assert {s["default_left"] for s in _splits(booster) if s["missing_type"] == "Zero"} == {False, True}
    _assert_same(booster, _edge_rows(booster, 13))


def test_use_missing_false_matches_lightgbm() -> None:
    booster = _regressor(use_missing=False)
    assert _missing_types(booster) == {"None"}
    _assert_same(booster, _edge_rows(booster, 14))


def test_threshold_inside_the_zero_band_matches_lightgbm() -> None:
    """Values ±1e-36 and ±kZeroThreshold are binned with zero, so splits land exactly on ±kZeroThreshold."""
    rng = np.random.default_rng(3)
    X = rng.choice(
        [-1e-30, -ZERO_THRESHOLD, -1e-36, 0.0, 1e-36, ZERO_THRESHOLD, 1e-30, -2.0, 2.0], size=(2000, 1)
    )
    y = (X[:, 0] > 0) + 2.0 * (X[:, 0] < 0) + 5.0 * (X[:, 0] == 0) + 0.01 * rng.normal(size=2000)
    booster = lgb.LGBMRegressor(**_params(n_estimators=3)).fit(X, y).booster_
    assert {abs(s["threshold"]) for s in _splits(booster)} >= {ZERO_THRESHOLD}
    z = ZERO_THRESHOLD
    edges = [np.nan, 0.0, -0.0, 1e-40, -1e-40, z, -z, np.nextafter(z, 1), np.nextafter(-z, -1), 1e-30, -1e-30]
    _assert_same(booster, np.array(edges)[:, None])


@pytest.mark.parametrize("n", [0, 1, 3, 5])
def test_row_counts_not_divisible_by_four(regressor: lgb.Booster, n: int) -> None:
    X = _edge_rows(regressor, 15, 600)
    forest = compile_forest(regressor, None)
    assert forest.predict(X[:0]).shape == (0,)
    chunks = [forest.predict(X[i : i + n]) for i in range(0, len(X), n)] if n else []
    _assert_same(regressor, X[:n])
    if n:
        assert np.array_equal(np.concatenate(chunks), regressor.predict(X))


def _stumps_model(thresholds: list[str], decision_types: list[int]) -> str:
    """LightGBM model text with one stump per (threshold, decision type) on feature 0; stump t adds 2**-t when it
    sends the row right, so the (exact) sum records every decision."""
    header = (
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=0\n"
        "objective=regression\nfeature_names=x\nfeature_infos=none\n\n"
    )
    trees = [
        f"Tree={t}\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\nthreshold={threshold}\n"
        f"decision_type={decision}\nleft_child=-1\nright_child=-2\nleaf_value=0 {2.0**-t!r}\nleaf_weight=1 1\n"
        "leaf_count=1 1\ninternal_value=0\ninternal_weight=2\ninternal_count=2\nis_linear=0\nshrinkage=1\n\n"
        for t, (threshold, decision) in enumerate(itertools.product(thresholds, decision_types))
    ]
    return header + "".join(trees) + "end of trees\n"


@pytest.mark.parametrize("missing", [0, 4, 8], ids=["None", "Zero", "NaN"])
def test_handmade_stumps_on_every_edge(missing: int) -> None:
    """Thresholds LightGBM may hold but training rarely produces (0, ±inf, |t| >= 1e300, inside the zero band),
    each with both default sides (decision type bit 2), against every edge value."""
    z = ZERO_THRESHOLD
    thresholds = [repr(t) for t in (0.0, -0.0, z, -z, 5e-36, -5e-36, float(np.nextafter(z, 1)), 1.0, -1.0)]
    thresholds += ["inf", "-inf", "1.5e+300", "-1e+300"]
    booster = lgb.Booster(model_str=_stumps_model(thresholds, [missing, missing + 2]))
    tiny = [1e-40, 5e-36, z, float(np.nextafter(z, 1)), 1e-30, 1.0, 1e300, 1.5e300, 1.7e308, np.inf]
    values = np.array([np.nan, 0.0, -0.0, *tiny, *(-np.array(tiny))])
    _assert_same(booster, values[:, None])
    forest = compile_forest(booster, None)
    singles = [forest.predict(values[i : i + 1, None])[0] for i in range(len(values))]
    assert np.array_equal(singles, booster.predict(values[:, None]))


def test_fewer_iterations_than_trained(regressor: lgb.Booster) -> None:
    X = _edge_rows(regressor, 16, 101)
    for num_iteration in (1, 7, N_TREES):
        _assert_same(regressor, X, num_iteration)
    assert compile_forest(regressor, 7).n_trees == 7


def test_single_leaf_trees() -> None:
    booster = _regressor(min_child_samples=5000, n_estimators=4)
    assert all("leaf_value" in info["tree_structure"] for info in booster.dump_model()["tree_info"])
    _assert_same(booster, _edge_rows(booster, 17, 9))


def test_no_trees_scores_zero() -> None:
    X, y = _data(4, 300)
    booster = lgb.Booster(params={"verbose": -1}, train_set=lgb.Dataset(X, y))
    forest = compile_forest(booster, None)
    assert forest.n_trees == 0
    assert np.array_equal(forest.predict(X[:7]), np.zeros(7))
    _assert_same(booster, X[:7])


def test_input_conversion_and_shape_check(regressor: lgb.Booster) -> None:
    forest = compile_forest(regressor, None)
    X = _data(5, 40)[0]
    expected = forest.predict(X)
    assert np.array_equal(forest.predict(np.asfortranarray(X)), expected)
    assert np.array_equal(forest.predict(X.tolist()), expected)
    with pytest.raises(ValueError, match="matrix"):
        forest.predict(X[:, :-1])


def test_categorical_split_is_refused() -> None:
    rng = np.random.default_rng(6)
    X = np.c_[rng.integers(0, 6, 2000), rng.normal(size=2000)]
    y = 3.0 * np.isin(X[:, 0], [1, 4]) + X[:, 1]
    booster = lgb.LGBMRegressor(**_params(n_estimators=3)).fit(X, y, categorical_feature=[0]).booster_
    assert any(s["decision_type"] == "==" for s in _splits(booster))
    with pytest.raises(NotImplementedError, match="categorical"):
        compile_forest(booster, None)


def test_linear_tree_is_refused() -> None:
    X, y = _data(7, 500)
    booster = lgb.LGBMRegressor(**_params(n_estimators=2, linear_tree=True)).fit(X, y).booster_
    with pytest.raises(NotImplementedError, match="linear"):
        compile_forest(booster, None)


@given(
    threshold=st.one_of(
        st.floats(allow_nan=False), st.sampled_from([ZERO_THRESHOLD, -ZERO_THRESHOLD, 1e-36, -1e-36])
    ),
    value=st.one_of(st.floats(allow_nan=False), st.floats(-2 * ZERO_THRESHOLD, 2 * ZERO_THRESHOLD)),
)
def test_effective_threshold_matches_reading_tiny_values_as_zero(threshold: float, value: float) -> None:
    read = 0.0 if abs(value) <= ZERO_THRESHOLD else value
    assert (read > threshold) == (value > effective_threshold(threshold))


def _ranking_frame(seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    X, y = _data(seed, 1200)
    grade = np.digitize(y, np.quantile(y, [0.5, 0.8, 0.95]))
    return pd.DataFrame(X, columns=[f"f{j}" for j in range(N_FEATURES)]), grade, np.full(60, 20)


def test_ranker_scores_through_the_forest(tmp_path: Path) -> None:
    X, y, group = _ranking_frame(8)
    ranker = Ranker(n_estimators=20, min_child_samples=5, n_jobs=1).fit(
        X, y, group, eval_set=_ranking_frame(9)
    )
    expected = ranker.booster_.predict(X.to_numpy(), num_iteration=ranker.best_iteration_)
    assert ranker.forest_.n_trees == ranker.best_iteration_
    assert np.array_equal(ranker.predict(X), expected)
    ranker.save(tmp_path)
    assert np.array_equal(Ranker.load(tmp_path).predict(X), expected)
    with pytest.raises(ValueError, match="expects features"):
        ranker.predict(X[X.columns[::-1]])


def test_an_outcome_regression_scores_through_the_forest_and_keeps_its_objective(tmp_path: Path) -> None:
    X, y = _data(10, 800)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(N_FEATURES)])
    Xv, yv = _data(11, 300)
    model = Ranker(objective="regression", n_estimators=20, min_child_samples=5, n_jobs=1).fit(
        frame, y, None, eval_set=(pd.DataFrame(Xv, columns=frame.columns), yv, None)
    )
    expected = model.booster_.predict(X, num_iteration=model.best_iteration_)
    assert np.array_equal(model.predict(frame), expected)
    assert np.corrcoef(expected, y)[0, 1] > 0.5  # it learnt the target, not a ranking of groups
    model.save(tmp_path)
    loaded = Ranker.load(tmp_path)
    assert loaded.objective == "regression" and np.array_equal(loaded.predict(frame), expected)
