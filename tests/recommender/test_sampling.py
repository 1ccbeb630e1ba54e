"""The stratified training sample (recommender.sampling)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recommender.sampling import stratified_sample


def _teachers(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "teacher_id": [f"T{i:05d}" for i in range(n)],
            "stage": rng.choice(["primary", "junior", "senior"], n, p=[0.6, 0.3, 0.1]),
            "subject": rng.choice(["语文", "数学", "英语", "物理"], n),
            "county": rng.choice(["修水县", "武宁县", "永修县"], n, p=[0.5, 0.45, 0.05]),
        }
    )


def test_a_province_no_larger_than_the_sample_trains_on_everybody() -> None:
    t = _teachers(300)
    assert list(stratified_sample(t, 300)) == sorted(t["teacher_id"])
    assert len(stratified_sample(t, 10_000)) == 300


def test_each_stratum_keeps_its_share_of_the_sample() -> None:
    t = _teachers(5000)
    picked = t[t["teacher_id"].isin(stratified_sample(t, 500, seed=3))]
    assert len(picked) == 500
    key = ["stage", "subject", "county"]
    share = picked.groupby(key).size() / 500
    expected = t.groupby(key).size() / 5000
    assert (share.reindex(expected.index).fillna(0) - expected).abs().max() < 1.5 / 500 + 1e-12


def test_a_rare_stratum_is_never_left_out() -> None:
    t = _teachers(2000)
    t.loc[0, ["stage", "subject", "county"]] = ["kindergarten", "学前教育", "庐山市"]
    assert "T00000" in set(stratified_sample(t, 50, seed=1))


def test_the_sample_is_seeded_and_sorted() -> None:
    t = _teachers(3000)
    a, b = stratified_sample(t, 400, seed=7), stratified_sample(t, 400, seed=7)
    assert np.array_equal(a, b) and np.array_equal(a, np.sort(a))
    assert not np.array_equal(a, stratified_sample(t, 400, seed=8))
