"""A bundle holds the portraits it was made with (`recommender.artifacts.paired`): one switch moves models and
portraits together, a train that fails switches neither, and readers that pair the two read the bundle's set."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import pandas as pd
import pytest

from data.workspace import Workspace, atomic_write, portraits_update
from models.bundle import current_bundle_dir
from recommender import train as train_module
from recommender.artifacts import paired
from recommender.config import settings
from recommender.service import Engine

PORTRAIT_FILES = ("teachers.parquet", "competencies.parquet")


def _copy(province: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(province / "ws", tmp_path / "ws", symlinks=True)
    return Workspace.open(tmp_path / "ws")


def test_the_bundle_holds_the_very_portrait_files_in_force(province_ws: Workspace) -> None:
    bundle = current_bundle_dir(province_ws.bundles_dir)
    for name in PORTRAIT_FILES:
        assert (bundle / "portraits" / name).samefile(province_ws.portraits_dir / name)
    ws, at = paired(province_ws)
    assert at == bundle
    assert ws.portraits_dir == bundle / "portraits"


def test_a_train_that_fails_after_building_portraits_switches_neither(
    province: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _copy(province, tmp_path)
    bundle, portraits = current_bundle_dir(ws.bundles_dir), ws.portraits_dir.resolve()

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the ranker failed")

    monkeypatch.setattr(train_module, "fit_ranker", fail)
    with pytest.raises(RuntimeError, match="the ranker failed"):
        train_module.train(ws, settings(), seed=3)
    # the new portraits were built, but neither they nor a bundle switched in
    assert current_bundle_dir(ws.bundles_dir) == bundle
    assert ws.portraits_dir.resolve() == portraits
    for name in PORTRAIT_FILES:  # the copy made the links files of their own: same bytes
        assert filecmp.cmp(bundle / "portraits" / name, ws.portraits_dir / name, shallow=False)


def test_readers_pair_the_bundle_with_its_own_portraits_whatever_the_link_shows(
    province: Path, tmp_path: Path
) -> None:
    ws = _copy(province, tmp_path)
    everyone = pd.read_parquet(ws.portraits_dir / "teachers.parquet")["teacher_id"]
    # another build's portraits in WS/portraits, its bundle not yet in force (the instant between the switches)
    with portraits_update(ws) as folder:
        rows = pd.read_parquet(folder / "teachers.parquet")
        atomic_write(folder / "teachers.parquet", lambda tmp: rows.iloc[: len(rows) // 2].to_parquet(tmp))
    assert len(pd.read_parquet(ws.portraits_dir / "teachers.parquet")) < len(everyone)
    engine = Engine.load(ws)
    assert sorted(engine.rows["teacher_id"]) == sorted(everyone)
    paired_ws, bundle = paired(ws)
    assert paired_ws.portraits_dir == bundle / "portraits"
    assert len(pd.read_parquet(paired_ws.portraits_dir / "teachers.parquet")) == len(everyone)
