"""Competency diagnostics (features/diagnostics.py): cold start, fusion weights, self-rating bias, recency,
scale linking, and the whole path on a small synthetic province."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.ingest import ingest
from data.synthetic import generate, load_truth
from data.workspace import Workspace
from features.diagnostics import (
    MAX_AGE_YEARS,
    estimate_competencies,
    fuse,
    link_scales,
    peer_priors,
    self_bias,
)
from features.history import career_stage

ASOF = pd.Timestamp("2025-01-01")
ITEM_COLUMNS = ["teacher_id", "competency", "estimate", "std_error"]


def scores(rows: list[tuple[str, str, float, str, str]]) -> pd.DataFrame:
    """(teacher_id, competency, score, source, taken_at) rows as a competency_scores table."""
    frame = pd.DataFrame(rows, columns=["teacher_id", "competency", "score", "source", "taken_at"])
    return frame.assign(taken_at=pd.to_datetime(frame["taken_at"]))


def no_items() -> pd.DataFrame:
    return pd.DataFrame(columns=ITEM_COLUMNS)


def one(table: pd.DataFrame, teacher: str, competency: str) -> pd.Series:
    hit = table[(table["teacher_id"] == teacher) & (table["competency"] == competency)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_unassessed_teacher_gets_the_peer_mean_flagged_as_prior_with_a_wide_error() -> None:
    ids = [f"T{i:02d}" for i in range(12)]
    teachers = pd.DataFrame(
        {"teacher_id": ids, "stage": "primary", "subject": "数学", "years_teaching": 12, "title": "second"}
    ).assign(roles=pd.Series([[] for _ in ids], dtype=object))
    teachers["career_stage"] = career_stage(teachers)
    measured = [(t, "A1", 40.0 + 2 * i, "test", "2024-06-01") for i, t in enumerate(ids[:10])]
    items = pd.DataFrame(columns=["item_id", "competencies", "max_score"])
    responses = pd.DataFrame(columns=["teacher_id", "item_id", "score", "taken_at"])
    out, model = estimate_competencies(teachers, items, responses, scores(measured), ["A1"], ASOF)
    assert model is None
    newcomer = one(out, "T11", "A1")
    assert newcomer["is_prior"] and newcomer["source"] == "prior"
    assert newcomer["estimate"] == pytest.approx(np.mean([40.0 + 2 * i for i in range(10)]))
    assessed = out[~out["is_prior"]]
    assert set(assessed["teacher_id"]) == set(ids[:10])
    assert newcomer["std_error"] > assessed["std_error"].max()


def test_peer_priors_fall_back_to_a_broader_group_when_peers_are_few() -> None:
    teachers = pd.DataFrame(
        {
            "teacher_id": ["A", "B", "C", "D", "E", "F"],
            "stage": "junior",
            "subject": ["语文"] * 5 + ["物理"],
            "career_stage": "backbone",
        }
    )
    measured = pd.DataFrame(
        {
            "teacher_id": list("ABCDE"),
            "competency": "B1",
            "estimate": [50.0, 60, 70, 80, 90],
            "std_error": 5.0,
        }
    )
    prior = peer_priors(measured, teachers, ["B1"])
    assert list(prior["teacher_id"]) == ["F"]
    assert prior["estimate"].iloc[0] == pytest.approx(70.0)


@pytest.mark.parametrize("test_age_years", [0.0, 1.0, MAX_AGE_YEARS, 10.0])
def test_a_self_rating_alone_never_outweighs_a_test(test_age_years: float) -> None:
    test_day = ASOF - pd.Timedelta(days=round(365.25 * test_age_years) + 1)
    rows = [
        ("T1", "C1", 40.0, "test", str(test_day.date())),
        ("T1", "C1", 90.0, "self", str((ASOF - pd.Timedelta(days=1)).date())),
    ]
    fused = one(fuse(no_items(), scores(rows), ASOF), "T1", "C1")
    assert abs(fused["estimate"] - 40.0) < abs(fused["estimate"] - 90.0)
    assert fused["source"] == "scores"


def test_newer_evidence_counts_more_until_the_age_cap() -> None:
    def estimate(test_age_years: float) -> float:
        test_day = ASOF - pd.Timedelta(days=round(365.25 * test_age_years) + 1)
        rows = [
            ("T1", "C1", 30.0, "test", str(test_day.date())),
            ("T1", "C1", 70.0, "observation", str((ASOF - pd.Timedelta(days=1)).date())),
        ]
        return float(one(fuse(no_items(), scores(rows), ASOF), "T1", "C1")["estimate"])

    by_age = [estimate(age) for age in (0.0, 1.0, 2.0, MAX_AGE_YEARS)]
    assert by_age == sorted(by_age) and by_age[0] < 50.0 < by_age[-1]
    assert estimate(10.0) == pytest.approx(estimate(MAX_AGE_YEARS), abs=0.05)


def _linked_population(seed: int = 0, n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Item estimates on the IRT display scale (centre 50, 15 per SD) for two competencies whose teachers
    truly stand at 60 ± 18 and 45 ± 15; self-ratings 10 points inflated, tests for a third of the teachers."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"T{i:04d}" for i in range(n)])
    z = rng.standard_normal((n, 2))
    truth = np.stack([60.0 + 18.0 * z[:, 0], 45.0 + 15.0 * z[:, 1]], axis=1)
    # a posterior mean: the truth's standardised value, shrunk, with error
    shrink = 0.8
    est = 50.0 + 15.0 * (shrink * z + np.sqrt(shrink * (1 - shrink)) * rng.standard_normal((n, 2)))
    items = pd.DataFrame(
        {
            "teacher_id": np.repeat(ids, 2),
            "competency": np.tile(["C1", "C2"], n),
            "estimate": est.ravel(),
            "std_error": 15.0 * np.sqrt(1 - shrink),
        }
    )
    rows = []
    for i, t in enumerate(ids):
        for k, comp in enumerate(["C1", "C2"]):
            rows.append((t, comp, truth[i, k] + 10.0 + rng.normal(0, 8), "self", "2024-10-01"))
            if i % 3 == 0:
                rows.append((t, comp, truth[i, k] + rng.normal(0, 5), "test", "2024-10-01"))
    return items, scores(rows), truth


def test_self_rating_bias_is_estimated_against_tests_and_item_estimates() -> None:
    items, observed, _ = _linked_population()
    assert self_bias(observed, items) == pytest.approx(10.0, abs=2.0)


def test_a_corrected_self_rating_lands_near_the_truth() -> None:
    items, observed, _ = _linked_population()
    lone = scores([("NEW", "C1", 80.0, "self", "2024-10-01")])
    fused = fuse(items, pd.concat([observed, lone], ignore_index=True), ASOF)
    assert one(fused, "NEW", "C1")["estimate"] == pytest.approx(70.0, abs=2.5)


def test_item_estimates_are_linked_to_the_score_scale() -> None:
    items, observed, truth = _linked_population()
    link = link_scales(items, observed)
    assert link.intercept["C1"] == pytest.approx(60.0, abs=2.5)
    assert link.intercept["C2"] == pytest.approx(45.0, abs=2.5)
    assert link.slope["C1"] == pytest.approx(18.0 / 15.0, abs=0.15)
    fused = fuse(items, observed, ASOF)
    only_items = fused[fused["source"] == "items"]
    assert only_items.empty  # every teacher here has a self-rating too
    merged = fused.assign(k=fused["competency"].map({"C1": 0, "C2": 1}))
    row = merged["teacher_id"].str[1:].astype(int).to_numpy()
    covered = np.abs(merged["estimate"] - truth[row, merged["k"]]) <= 1.96 * merged["std_error"]
    assert 0.9 <= covered.mean() <= 0.99


@pytest.fixture(scope="module")
def small_province(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Workspace]:
    root = tmp_path_factory.mktemp("diag")
    generate(root / "input", n_teachers=1000, seed=5, n_courses=40)
    ws = Workspace.open(root / "ws")
    ingest(root / "input", ws)
    return root / "input", ws


def test_province_estimates_track_the_truth_and_flag_the_unassessed(
    small_province: tuple[Path, Workspace],
) -> None:
    src, ws = small_province
    t = {
        name: pd.read_parquet(ws.tables_dir / f"{name}.parquet")
        for name in ("teachers", "items", "responses")
    }
    t["scores"] = pd.read_parquet(ws.tables_dir / "competency_scores.parquet")
    codes = pd.read_parquet(ws.tables_dir / "taxonomy.parquet")["code"].astype(str).tolist()
    teachers = t["teachers"].assign(career_stage=career_stage(t["teachers"]))
    asof = max(t["responses"]["taken_at"].max(), t["scores"]["taken_at"].max()) + pd.Timedelta(days=1)
    out, model = estimate_competencies(teachers, t["items"], t["responses"], t["scores"], codes, asof)
    assert model is not None
    assert list(out.columns) == ["teacher_id", "competency", "estimate", "std_error", "source", "is_prior"]
    assert len(out) == len(teachers) * len(codes)
    assessed = set(t["responses"]["teacher_id"]) | set(t["scores"]["teacher_id"])
    prior_teachers = set(out.loc[out["is_prior"], "teacher_id"])
    assert prior_teachers == set(teachers["teacher_id"]) - assessed
    truth = load_truth(src).latent
    merged = out[~out["is_prior"]].merge(truth, on=["teacher_id", "competency"])
    assert np.corrcoef(merged["estimate"], merged["score_0_100"])[0, 1] > 0.78
    covered = np.abs(merged["estimate"] - merged["score_0_100"]) <= 1.96 * merged["std_error"]
    assert 0.90 <= covered.mean() <= 0.98
