"""Daily updates (recommender.incremental): `tdr train --incremental` refreshes only the teachers whose inputs
changed, and `tdr score --changed` swaps only their rows into the output."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.reference import load_policy
from data.workspace import Workspace
from features.portrait import as_of
from models.bundle import current_bundle_dir, read_manifest
from recommender.batch import score_local
from recommender.config import settings
from recommender.digests import input_digests, load_state
from recommender.incremental import (
    can_score_changed,
    compare,
    score_changed,
    stamp_scored,
    train_incremental,
)
from recommender.portraits import build_workspace_portraits, latest_dates
from recommender.train import load_tables

BLOCK = 150


def _copy(province_ws: Workspace, root: Path) -> Workspace:
    ws = Workspace.open(root)
    for name in ("tables", "portraits", "bundles"):
        shutil.copytree(province_ws.root / name, ws.root / name)
    return ws


def _rewrite(ws: Workspace, name: str, frame: pd.DataFrame) -> None:
    """Replace a table by hand, as any writer might (an ingested table is a folder of parts)."""
    path = ws.table_path(name)
    if path.is_dir():
        shutil.rmtree(path)
    ws.write_table(name, frame)


def _no_full_train() -> Path:
    raise AssertionError("a full train ran where an incremental one was expected")


def _change_some_teachers(ws: Workspace) -> list[str]:
    """A day's new records for four teachers (dated on the latest day, so the as-of date stays), and one
    teacher's years of teaching corrected; returns their ids."""
    records = ws.read_table("training_records")
    ids = sorted(records["teacher_id"].astype(str).unique())[3:7]
    new = records[records["teacher_id"].isin(ids)].groupby("teacher_id").head(1).copy()
    new["record_id"] = new["record_id"].astype(str) + "-day2"
    new["start_date"] = records["start_date"].max()
    new["status"] = "completed"
    _rewrite(ws, "training_records", pd.concat([records, new], ignore_index=True))
    teachers = ws.read_table("teachers")
    corrected = str(teachers["teacher_id"].iloc[-1])
    teachers.loc[teachers.index[-1], "years_teaching"] = teachers["years_teaching"].iloc[-1] + 1
    _rewrite(ws, "teachers", teachers)
    return sorted([*ids, corrected])


@pytest.fixture(scope="module")
def updated(province_ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A copy of the province scored, then changed for five teachers, trained incrementally and rescored."""
    root = tmp_path_factory.mktemp("incremental")
    ws = _copy(province_ws, root / "ws")
    out = root / "scores"
    score_local(ws, out, 20, BLOCK, workers=1)
    stamp_scored(ws, out)
    before = {
        "teachers": pd.read_parquet(ws.portraits_dir / "teachers.parquet"),
        "competencies": pd.read_parquet(ws.portraits_dir / "competencies.parquet"),
        "recommendations": pd.read_parquet(out / "recommendations.parquet"),
        "menus": pd.read_parquet(out / "menus.parquet"),
        "bundle": current_bundle_dir(ws.bundles_dir),
    }
    changed = _change_some_teachers(ws)
    result = train_incremental(ws, settings(), full_train=_no_full_train)
    # blocks of two teachers scored by two worker processes: the pooled path, checked against a full run below
    rescored = score_changed(ws, out, 2, workers=2)
    return {
        "ws": ws,
        "out": out,
        "before": before,
        "changed": changed,
        "result": result,
        "rescored": rescored,
    }


def test_only_the_teachers_whose_inputs_changed_are_refreshed(updated: dict) -> None:
    result = updated["result"]
    assert not result.full
    assert result.changed == len(updated["changed"]) and result.removed == 0
    ws = updated["ws"]
    state = load_state(ws)
    assert state is not None
    assert compare(state[1], input_digests(ws)).changed.size == 0  # the stored digests are the new ones


def test_unchanged_teachers_portrait_rows_are_untouched(updated: dict) -> None:
    ws, changed = updated["ws"], set(updated["changed"])
    for name in ("teachers", "competencies"):
        after = pd.read_parquet(ws.portraits_dir / f"{name}.parquet")
        before = updated["before"][name]
        assert after["teacher_id"].is_monotonic_increasing
        keep_a = after[~after["teacher_id"].isin(changed)].reset_index(drop=True)
        keep_b = before[~before["teacher_id"].isin(changed)].reset_index(drop=True)
        pd.testing.assert_frame_equal(keep_a, keep_b)


def test_refreshed_portraits_equal_a_full_rebuild_to_tolerance(updated: dict, tmp_path: Path) -> None:
    ws, changed = updated["ws"], updated["changed"]
    full = Workspace.open(tmp_path / "ws")
    shutil.copytree(ws.tables_dir, full.tables_dir)
    bundle = current_bundle_dir(ws.bundles_dir)
    courses = pd.read_parquet(bundle / "courses.parquet")
    base = replace(load_tables(full), courses=courses.assign(competencies=courses["competencies_used"]))
    st = settings()
    seed = int(read_manifest(bundle).info["seed"])
    build_workspace_portraits(
        full, base, load_policy(st.policy), as_of(latest_dates(full)), st.target_level, seed, block_size=BLOCK
    )

    def rows(w: Workspace, name: str) -> pd.DataFrame:
        f = pd.read_parquet(w.portraits_dir / f"{name}.parquet")
        keys = ["teacher_id", "competency"] if name == "competencies" else ["teacher_id"]
        return f[f["teacher_id"].isin(changed)].sort_values(keys).reset_index(drop=True)

    inc, ref = rows(ws, "teachers"), rows(full, "teachers")
    assert inc["teacher_id"].tolist() == ref["teacher_id"].tolist()
    for col in ("n_records", "years_teaching", "hours_owed"):
        if col in ref:
            np.testing.assert_allclose(inc[col].astype(float), ref[col].astype(float), err_msg=col)
    # the norms (peer means, priors) are the last full build's: estimates move by far less than a point
    ci, cr = rows(ws, "competencies"), rows(full, "competencies")
    np.testing.assert_allclose(ci["estimate"], cr["estimate"], atol=0.5)
    np.testing.assert_allclose(ci["std_error"], cr["std_error"], atol=0.5)


def test_the_new_bundle_keeps_the_models_and_names_the_change(updated: dict) -> None:
    ws, before = updated["ws"], updated["before"]["bundle"]
    now = current_bundle_dir(ws.bundles_dir)
    assert now != before

    def models(bundle: Path) -> dict[str, str]:
        return {k: v for k, v in read_manifest(bundle).files.items() if not k.startswith("portraits/")}

    assert models(now) == models(before)
    # the bundle holds the refreshed portraits: the very files WS/portraits now shows
    for name in ("teachers.parquet", "competencies.parquet"):
        assert (now / "portraits" / name).samefile(ws.portraits_dir / name)
        assert not (before / "portraits" / name).samefile(ws.portraits_dir / name)
    assert read_manifest(now).info["incremental"]["changed"] == len(updated["changed"])


def test_score_changed_rescores_only_changed_teachers_and_leaves_the_rest(
    updated: dict, tmp_path: Path
) -> None:
    ws, out, changed = updated["ws"], updated["out"], set(updated["changed"])
    assert updated["rescored"] == len(changed)
    fresh = tmp_path / "fresh"
    score_local(ws, fresh, 20, BLOCK, workers=1)
    for name, keys in (("recommendations", ["teacher_id", "rank"]), ("menus", ["teacher_id", "position"])):
        now = pd.read_parquet(out / f"{name}.parquet").sort_values(keys).reset_index(drop=True)
        before = updated["before"][name].sort_values(keys).reset_index(drop=True)
        ref = pd.read_parquet(fresh / f"{name}.parquet").sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(now, ref)  # the swapped-in rows are what a full run gives
        pd.testing.assert_frame_equal(
            now[~now["teacher_id"].isin(changed)].reset_index(drop=True),
            before[~before["teacher_id"].isin(changed)].reset_index(drop=True),
        )
    assert can_score_changed(ws, out)
    assert score_changed(ws, out, BLOCK) == 0  # nothing changed since


def test_a_changed_catalogue_trains_in_full(province_ws: Workspace, tmp_path: Path) -> None:
    ws = _copy(province_ws, tmp_path / "ws")
    courses = ws.read_table("courses")
    courses.loc[0, "title"] = courses.loc[0, "title"] + "（修订）"
    _rewrite(ws, "courses", courses)
    ran: list[bool] = []
    result = train_incremental(ws, settings(), full_train=lambda: ran.append(True) or tmp_path)
    assert ran and result.full and result.reason == "courses, items or taxonomy changed"
