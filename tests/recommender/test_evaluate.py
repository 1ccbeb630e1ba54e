"""Offline evaluation: NDCG against the hidden truth, baselines, portrait recovery, tagging and menu checks."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from data.workspace import Workspace
from recommender.evaluate import (
    BASELINES,
    MENU_TEACHERS,
    METHODS,
    evaluate,
    ndcg_at_k,
    top_k_frame,
    write_report,
)


@pytest.fixture(scope="module")
def report(province: Path, province_ws: Workspace) -> dict[str, Any]:
    return evaluate(province_ws, province / "input" / "_truth")


def _ranked(rows: list[tuple[str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["teacher_id", "course_id"])
    return df.assign(rank=df.groupby("teacher_id").cumcount() + 1)


def _numbers(tree: Any) -> list[float]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _numbers(v)]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [float(tree)]
    return []


UTILITY = pd.DataFrame(
    {
        "teacher_id": ["a", "a", "a", "b", "b"],
        "course_id": ["c1", "c2", "c3", "c1", "c2"],
        "utility": [3.0, 2.0, 1.0, 0.0, 0.0],
    }
)


def test_ideal_ranking_scores_one_and_reversed_scores_less() -> None:
    best = ndcg_at_k(_ranked([("a", "c1"), ("a", "c2"), ("a", "c3")]), UTILITY, k=3)
    worst = ndcg_at_k(_ranked([("a", "c3"), ("a", "c2"), ("a", "c1")]), UTILITY, k=3)
    assert best["a"] == pytest.approx(1.0)
    assert 0 < worst["a"] < best["a"]


def test_courses_without_utility_gain_nothing_and_teachers_without_any_are_left_out() -> None:
    ndcg = ndcg_at_k(_ranked([("a", "x"), ("a", "y"), ("b", "c1")]), UTILITY, k=2)
    assert ndcg["a"] == 0.0
    assert "b" not in ndcg.index


def test_top_k_frame_lists_only_eligible_courses_best_first() -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.2, 0.4, 0.3, 0.8]])
    eligible = np.array([[False, True, True, True], [True, False, False, False]])
    top = top_k_frame(scores, eligible, np.array(["a", "b"]), np.array(["c0", "c1", "c2", "c3"]), k=2)
    assert top[top["teacher_id"] == "a"]["course_id"].tolist() == ["c2", "c1"]
    assert top[top["teacher_id"] == "b"]["course_id"].tolist() == ["c0"]


def test_tdr_beats_popularity_and_random_by_a_generous_margin(report: dict[str, Any]) -> None:
    methods = report["ranking"]["methods"]
    assert methods["tdr"]["mean"] > 1.1 * max(methods["popularity"]["mean"], methods["random"]["mean"])


def test_every_method_is_scored_on_the_same_teachers(report: dict[str, Any]) -> None:
    methods = report["ranking"]["methods"]
    assert set(methods) == set(METHODS)
    assert {m["teachers"] for m in methods.values()} == {report["ranking"]["teachers"]}
    assert report["ranking"]["best_baseline"] in BASELINES


def test_rates_shares_and_ndcg_lie_in_the_unit_interval(report: dict[str, Any]) -> None:
    ranking = report["ranking"]
    values = [m["mean"] for m in ranking["methods"].values()]
    for groups in (ranking["by_school_type"], ranking["by_career_stage"], ranking["by_assessed"]):
        values += [v for g in groups.values() for name, v in g.items() if name != "teachers"]
    for part in report["portraits"].values():
        values.append(part["coverage_95"])
        values += [abs(part["corr_overall"]), *map(abs, part["corr_per_competency"].values())]
    tagging = report["tagging"]
    values += [tagging[key] for key in ("precision", "recall", "top_code_precision", "top_code_is_main")]
    values += [v for key, v in report["menus"].items() if key.startswith("share_")]
    values += _numbers(report["menus"]["composition"]["hours_share_by_format"])
    assert values and all(0.0 <= v <= 1.0 for v in values)


def test_rural_and_urban_teachers_are_reported_apart(report: dict[str, Any]) -> None:
    groups = report["ranking"]["by_school_type"]
    assert {"rural", "urban"} <= set(groups)
    assert all(g["teachers"] >= 20 for g in groups.values())


def test_a_shuffled_ranking_scores_lower(province: Path, province_ws: Workspace) -> None:
    utility = pd.read_parquet(province / "input" / "_truth" / "utility.parquet")
    best = (
        utility.sort_values(["teacher_id", "utility"], ascending=[True, False]).groupby("teacher_id").head(10)
    )
    ideal = best.assign(rank=best.groupby("teacher_id").cumcount() + 1)
    rng = np.random.default_rng(0)
    # the same courses in a random order within each teacher, and each teacher given another's list
    within = ideal.assign(
        rank=ideal.groupby("teacher_id")["rank"].transform(lambda r: rng.permutation(r.to_numpy()))
    )
    ids = ideal["teacher_id"].unique()
    swap = dict(zip(ids, np.roll(ids, 1), strict=True))
    across = ideal.assign(teacher_id=ideal["teacher_id"].map(swap))
    scores = {
        name: ndcg_at_k(r, utility, 10).mean()
        for name, r in (("ideal", ideal), ("within", within), ("across", across))
    }
    assert scores["ideal"] == pytest.approx(1.0)
    assert scores["within"] < scores["ideal"]
    assert scores["across"] < scores["within"]


def test_portraits_of_assessed_teachers_track_the_truth_better_than_priors(report: dict[str, Any]) -> None:
    portraits = report["portraits"]
    assert portraits["assessed"]["corr_overall"] > 0.5
    assert portraits["assessed"]["corr_overall"] > portraits["prior_teachers"]["corr_overall"]
    assert (
        portraits["assessed"]["teachers"] + portraits["prior_teachers"]["teachers"]
        == report["teachers_in_workspace"]
    )


def test_inferred_tags_mostly_name_a_true_competency(report: dict[str, Any]) -> None:
    assert report["tagging"]["inferred_courses"] > 0
    assert report["tagging"]["top_code_precision"] > 0.5


def test_no_recommendation_or_menu_repeats_a_completed_course_or_is_closed(report: dict[str, Any]) -> None:
    for pairs in (report["recommendations"], report["menus"]["pairs"]):
        assert pairs["pairs"] > 0
        assert pairs["completed_already"] == 0
        assert pairs["closed_to_teacher"] == 0
    assert report["menus"]["share_breaking_a_rule"] == 0.0
    assert report["menus"]["teachers"] == min(report["teachers_evaluated"], MENU_TEACHERS)


def test_without_truth_only_the_truth_free_figures_are_reported(province_ws: Workspace) -> None:
    result = evaluate(province_ws, None, max_teachers=60)
    assert {"ranking", "portraits", "tagging"}.isdisjoint(result)
    assert result["teachers_evaluated"] == 60
    assert result["menus"]["teachers"] == 60
    assert result["ranker"]["validation"]
    assert result["recommendations"]["completed_already"] == 0


def test_truth_of_another_province_is_refused(province: Path, province_ws: Workspace, tmp_path: Path) -> None:
    other = tmp_path / "_truth"
    shutil.copytree(province / "input" / "_truth", other)
    courses = pd.read_parquet(other / "courses.parquet")
    courses.iloc[: len(courses) // 2].to_parquet(other / "courses.parquet")
    with pytest.raises(ValueError, match="_truth"):
        evaluate(province_ws, other, max_teachers=10)


def test_report_is_written_as_json_with_missing_figures_as_null(tmp_path: Path) -> None:
    path = write_report(
        {"ndcg": np.float64(0.5), "n": np.int64(3), "corr": math.nan, "ok": np.bool_(True)},
        tmp_path / "r.json",
    )
    assert json.loads(path.read_text(encoding="utf-8")) == {"ndcg": 0.5, "n": 3, "corr": None, "ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
