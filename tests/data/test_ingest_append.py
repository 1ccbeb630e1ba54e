"""Daily updates (`tdr ingest --append`): a day's new or changed rows merged into the tables by key."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data.ingest import ingest
from data.schema import TABLES
from data.synthetic import generate
from data.workspace import Workspace

PER_TEACHER = ("teachers", "training_records", "responses", "competency_scores")


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("append") / "province"
    generate(root, n_teachers=60, seed=5, n_courses=40)
    return root


def _sorted(ws: Workspace, name: str) -> pd.DataFrame:
    table = ws.read_table(name)
    return table.sort_values(list(TABLES[name].key), kind="stable").reset_index(drop=True)


def _halves(province: Path, root: Path) -> tuple[Path, Path]:
    """The province split by teacher: the first half with every shared table, the second with the rest."""
    first, second = root / "first", root / "second"
    first.mkdir()
    second.mkdir()
    teachers = pd.read_csv(province / "teachers.csv", dtype=str, keep_default_na=False)
    early = set(teachers["teacher_id"].iloc[: len(teachers) // 2])
    for path in province.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if path.stem in PER_TEACHER:
            mine = frame["teacher_id"].isin(early)
            frame[mine].to_csv(first / path.name, index=False)
            frame[~mine].to_csv(second / path.name, index=False)
        else:
            frame.to_csv(first / path.name, index=False)
    return first, second


def test_a_province_in_two_appended_halves_equals_it_ingested_at_once(province: Path, tmp_path: Path) -> None:
    whole = Workspace.open(tmp_path / "whole")
    ingest(province, whole)
    first, second = _halves(province, tmp_path)
    halves = Workspace.open(tmp_path / "halves")
    ingest(first, halves)
    report = ingest(second, halves, append=True)
    assert report.rejected == 0
    assert set(halves.tables()) == set(whole.tables())
    for name in whole.tables():
        pd.testing.assert_frame_equal(_sorted(halves, name), _sorted(whole, name), check_dtype=True)
    manifest = halves.manifest()
    assert manifest["mode"] == "append"
    assert manifest["appended"]["teachers"]["new"] == len(pd.read_csv(second / "teachers.csv"))
    changed = pd.read_parquet(halves.version_dir / manifest["changed_teachers"]["file"])  # type: ignore[operator]
    assert set(changed["teacher_id"]) == set(pd.read_csv(second / "teachers.csv", dtype=str)["teacher_id"])


def test_appending_the_same_day_twice_changes_nothing(province: Path, tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    ingest(province, ws)
    day = tmp_path / "day"
    day.mkdir()
    records = pd.read_csv(province / "training_records.csv", dtype=str, keep_default_na=False)
    records.iloc[:5].assign(record_id=lambda f: f["record_id"] + "-new").to_csv(
        day / "training_records.csv", index=False
    )
    ingest(day, ws, append=True)
    once = {name: ws.read_table(name) for name in ws.tables()}
    ingest(day, ws, append=True)
    for name, table in once.items():
        pd.testing.assert_frame_equal(ws.read_table(name), table)
    manifest = ws.manifest()
    assert manifest["appended"]["training_records"] == {"rows": len(records) + 5, "new": 0, "changed": 0}
    assert manifest["changed_teachers"]["count"] == 0


def test_a_changed_row_replaces_its_key_in_place_and_names_its_teacher(
    province: Path, tmp_path: Path
) -> None:
    ws = Workspace.open(tmp_path / "ws")
    ingest(province, ws)
    before = ws.read_table("teachers")
    day = tmp_path / "day"
    day.mkdir()
    teachers = pd.read_csv(province / "teachers.csv", dtype=str, keep_default_na=False)
    moved = teachers.iloc[[3]].assign(county="新设县")
    moved.to_csv(day / "teachers.csv", index=False)
    ingest(day, ws, append=True)
    after = ws.read_table("teachers")
    assert len(after) == len(before) and after["teacher_id"].tolist() == before["teacher_id"].tolist()
    assert after.loc[3, "county"] == "新设县" and after.drop(index=3).equals(before.drop(index=3))
    manifest = ws.manifest()
    assert manifest["appended"]["teachers"] == {"rows": len(before), "new": 0, "changed": 1}
    changed = pd.read_parquet(ws.version_dir / "changed_teachers.parquet")  # type: ignore[operator]
    assert changed["teacher_id"].tolist() == [teachers["teacher_id"].iloc[3]]
