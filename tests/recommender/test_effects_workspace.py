"""训后成效 of a workspace end to end, on the trained province (two assessment waves): `tdr effects`,
`tdr portraits --history`, the engine's views for the pages, and recovery against the generator's truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from data.synthetic import load_truth
from data.workspace import Workspace
from recommender.effects import (
    OUTPUT_COLUMNS,
    effect_recovery,
    measure_growth,
    read_growth,
    truth_recovery,
)
from recommender.service import Engine
from tdr.cli import app

runner = CliRunner()
CONTRACT = [
    "course_id",
    "project_id",
    "competency",
    "effect",
    "ci_low",
    "ci_high",
    "n_treated",
    "n_comparison",
]


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def ws(province: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A copy of the trained province whose growth is measured (WS/effects/)."""
    root = tmp_path_factory.mktemp("effects") / "ws"
    shutil.copytree(province / "ws", root)
    w = Workspace.open(root)
    measure_growth(w)
    return w


@pytest.fixture(scope="module")
def effects(ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("out") / "effects.csv"
    _cli("effects", "--workspace", str(ws.root), "--out", str(out))
    return pd.read_csv(out, encoding="utf-8-sig", dtype={"course_id": str, "project_id": str})


def test_effects_table_has_the_contract_columns_for_courses_and_projects(effects: pd.DataFrame) -> None:
    assert list(effects.columns) == OUTPUT_COLUMNS
    assert set(CONTRACT) <= set(effects.columns)
    assert effects["course_id"].notna().any() and effects["project_id"].notna().any()
    assert (effects["course_id"].isna() ^ effects["project_id"].isna()).all()


def test_every_number_has_its_interval_and_enough_takers_behind_it(effects: pd.DataFrame) -> None:
    known = effects[effects["known"]]
    assert len(known) > 0
    assert (known["ci_low"] <= known["effect"]).all() and (known["effect"] <= known["ci_high"]).all()
    assert (known["n_treated"] >= 5).all()


def test_a_unit_nobody_took_between_two_assessments_gets_no_number(effects: pd.DataFrame) -> None:
    untaken = effects[effects["n_treated"] == 0]
    assert len(untaken) > 0
    assert (
        untaken["effect"].isna().all()
        and untaken["ci_low"].isna().all()
        and (untaken["method"] == "unknown").all()
    )


def test_effects_by_county_compare_each_county_within_itself(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "by_county.parquet"
    _cli("effects", "--workspace", str(ws.root), "--out", str(out), "--by", "county")
    by = pd.read_parquet(out)
    assert by.columns[0] == "county" and by["county"].nunique() > 1
    teachers = ws.read_table("teachers")
    sizes = read_growth(ws).changes.merge(teachers[["teacher_id"]], on="teacher_id")  # type: ignore[union-attr]
    largest = sizes.groupby("county")["teacher_id"].nunique()
    # a county's takers are its own teachers: never more than it has assessed twice
    assert (by.groupby("county")["n_treated"].max() <= largest.reindex(by["county"].unique())).all()


def test_an_unknown_cohort_column_is_refused_in_words(ws: Workspace, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["effects", "--workspace", str(ws.root), "--out", str(tmp_path / "x.csv"), "--by", "shoe"]
    )
    assert result.exit_code == 2 and "cannot group effects by 'shoe'" in result.output


def test_portrait_history_has_a_date_column_and_both_waves_of_a_teacher_assessed_twice(
    ws: Workspace, tmp_path: Path
) -> None:
    out = tmp_path / "history.parquet"
    _cli("portraits", "--workspace", str(ws.root), "--out", str(out), "--history")
    h = pd.read_parquet(out)
    assert list(h.columns) == ["teacher_id", "date", "competency", "estimate", "std_error", "source"]
    dates = h.groupby("teacher_id")["date"].nunique()
    assert dates.max() >= 2
    assert h["estimate"].between(0, 100).all() and (h["std_error"] > 0).all()


def test_the_xlsx_export_holds_every_row(ws: Workspace, effects: pd.DataFrame, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    out = tmp_path / "effects.xlsx"
    _cli("effects", "--workspace", str(ws.root), "--out", str(out))
    sheet = load_workbook(out, read_only=True)["data"]
    assert sum(1 for _ in sheet.iter_rows()) == len(effects) + 1


def test_a_trainer_sees_the_effects_of_the_teachers_in_scope_only(ws: Workspace) -> None:
    engine = Engine.load(ws)
    county = str(engine.rows["county"].value_counts().index[0])
    whole, local = engine.effects(None), engine.effects(("county", county))
    assert whole is not None and local is not None
    changes = read_growth(ws).changes  # type: ignore[union-attr]
    in_county = engine.rows.loc[engine.rows["county"] == county, "teacher_id"]
    assert (
        local["n_teachers_measured"]
        == changes["teacher_id"].isin(in_county).groupby(changes["teacher_id"]).any().sum()
    )
    assert local["n_teachers_measured"] < whole["n_teachers_measured"]


def test_a_teacher_growth_shows_each_wave_and_the_courses_between(ws: Workspace) -> None:
    engine = Engine.load(ws)
    changes = read_growth(ws).changes  # type: ignore[union-attr]
    teacher = str(changes["teacher_id"].value_counts().index[0])
    g = engine.growth(teacher)
    assert g is not None and len(g["dates"]) >= 2
    assert {p["date"] for p in g["points"]} == set(g["dates"])
    for course in g["courses"]:
        assert g["dates"][0] < course["date"] <= g["dates"][-1]
    assert engine.growth("NOPE-0") is None


def test_evaluate_reports_effect_recovery_and_the_naive_estimate_is_biased_upward(
    ws: Workspace, province: Path
) -> None:
    truth = load_truth(province / "input")
    assert truth.course_effects is not None
    report = truth_recovery(read_growth(ws), truth.course_effects, truth.project_effects)  # type: ignore[arg-type]
    courses = report["courses"]
    assert courses["adjusted"]["takers_ge_5"]["pairs"] > 0
    # everybody grows over the years between waves: the naive pre/post change credits that to the course
    assert courses["naive"]["takers_ge_5"]["bias"] > courses["adjusted"]["takers_ge_5"]["bias"]
    assert np.isfinite(courses["adjusted"]["takers_ge_5"]["correlation"])


def test_recovery_over_every_competency_counts_a_unit_on_one_it_does_not_teach_as_nil() -> None:
    truth = pd.DataFrame(
        {"project_id": ["P1", "P1"], "competency": ["A1", "A2"], "effect_points_between": [4.0, np.nan]}
    )
    rows = [("P1", "A1", 4.5), ("P1", "A2", 9.0), ("P1", "B1", 0.5), ("P1", "B2", -0.5), ("P2", "B1", 7.0)]
    estimates = pd.DataFrame(
        {
            "unit_id": [r[0] for r in rows],
            "competency": [r[1] for r in rows],
            "effect": [r[2] for r in rows],
            "ci_low": [r[2] - 1.0 for r in rows],
            "ci_high": [r[2] + 1.0 for r in rows],
            "n_treated": 40,
            "known": True,
        }
    )
    taught = effect_recovery(estimates, truth, "project_id")["takers_ge_5"]
    every = effect_recovery(estimates, truth, "project_id", untaught_zero=True)["takers_ge_5"]
    assert taught == {"pairs": 1}
    # A1 (taught, 4.0) and B1, B2 (untaught: nil); A2 is taught but has no true value, P2 is not in the truth
    assert (
        every["pairs"] == 3 and every["coverage"] == 1.0 and every["bias"] == pytest.approx(1 / 6, abs=0.01)
    )
