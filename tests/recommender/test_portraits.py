"""Portraits of a province built in blocks (recommender/portraits.py, features/portrait.py): any number of blocks
and workers gives what one block in memory gives; the province's norms count every teacher."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.reference import load_policy
from data.workspace import Workspace
from features.diagnostics import calibration_sample
from features.portrait import DATED_COLUMNS, Tables, as_of, build_portraits
from models.bundle import current_bundle_dir, read_manifest
from recommender.config import settings
from recommender.portraits import _join_parts, build_workspace_portraits, read_portraits
from recommender.portraits import latest_dates as workspace_dates
from recommender.train import load_tables


def _base(ws: Workspace, trained: Workspace) -> tuple[Tables, int]:
    """The workspace's tables as training passed them (courses with their inferred competencies), and the
    training seed."""
    bundle = current_bundle_dir(trained.bundles_dir)
    courses = pd.read_parquet(bundle / "courses.parquet")
    base = replace(load_tables(ws), courses=courses.assign(competencies=courses["competencies_used"]))
    return base, int(read_manifest(bundle).info["seed"])


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for c in a.columns:
        x, y = a[c], b[c]
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x.to_numpy(), y.to_numpy(), rtol=1e-9, atol=1e-9, err_msg=c)
        else:
            assert x.astype(str).tolist() == y.astype(str).tolist(), c


@pytest.fixture(scope="module")
def blocked(
    province_ws: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Workspace, Tables, int]:
    """A copy of the province's tables with portraits built in blocks of 37 teachers by two workers."""
    ws = Workspace.open(tmp_path_factory.mktemp("portraits") / "ws")
    shutil.copytree(province_ws.tables_dir, ws.tables_dir)
    base, seed = _base(ws, province_ws)
    st = settings()
    asof = as_of(workspace_dates(ws))
    policy = load_policy(st.policy)
    build_workspace_portraits(ws, base, policy, asof, st.target_level, seed, block_size=37, workers=2)
    return ws, base, seed


def test_a_province_built_in_blocks_equals_one_built_whole(blocked: tuple[Workspace, Tables, int]) -> None:
    ws, base, seed = blocked
    full = replace(
        base,
        records=ws.read_table("training_records"),
        responses=ws.read_table("responses"),
        scores=ws.read_table("competency_scores"),
    )
    st = settings()
    whole, model = build_portraits(
        full, load_policy(st.policy), as_of(workspace_dates(ws)), st.target_level, seed
    )
    assert model is not None
    teachers = pd.read_parquet(ws.portraits_dir / "teachers.parquet")
    # lists and blanks as Parquet gives them back
    expected = pa.Table.from_pandas(
        whole.teachers.sort_values("teacher_id"), preserve_index=False
    ).to_pandas()
    _assert_same(teachers, expected)
    _assert_same(pd.read_parquet(ws.portraits_dir / "competencies.parquet"), whole.competencies)


def test_the_portrait_date_is_the_day_after_the_latest_dated_event(
    blocked: tuple[Workspace, Tables, int],
) -> None:
    ws, _, _ = blocked
    latest = max(
        pd.to_datetime(ws.read_table(table)[column]).max()
        for table, columns in DATED_COLUMNS.items()
        for column in columns
    )
    assert as_of(workspace_dates(ws)) == latest.normalize() + pd.Timedelta(days=1)


def test_peer_means_count_every_teacher_priors_included(blocked: tuple[Workspace, Tables, int]) -> None:
    ws, _, _ = blocked
    comp = pd.read_parquet(ws.portraits_dir / "competencies.parquet")
    teachers = pd.read_parquet(
        ws.portraits_dir / "teachers.parquet", columns=["teacher_id", "stage", "subject"]
    )
    c = comp.merge(teachers, on="teacher_id")
    assert c["is_prior"].any() and (~c["is_prior"]).any()
    direct = c.groupby(["stage", "subject", "competency"])["estimate"].transform("mean")
    np.testing.assert_allclose(c["peer_mean"].to_numpy(), direct.to_numpy(), rtol=1e-9)


def test_read_portraits_returns_only_the_asked_teachers(blocked: tuple[Workspace, Tables, int]) -> None:
    ws, _, _ = blocked
    all_ids = pd.read_parquet(ws.portraits_dir / "teachers.parquet", columns=["teacher_id"])["teacher_id"]
    wanted = all_ids.iloc[[0, 5, 40]].to_numpy()
    p = read_portraits(ws, wanted)
    assert sorted(p.teachers["teacher_id"]) == sorted(wanted)
    assert set(p.competencies["teacher_id"]) == set(wanted)


def test_the_calibration_sample_is_everybody_up_to_its_size_then_a_seeded_sample() -> None:
    ids = np.array([f"T{i:04d}" for i in range(50)])[::-1]
    assert calibration_sample(ids, size=50).tolist() == sorted(ids)
    a, b = calibration_sample(ids, seed=3, size=20), calibration_sample(ids, seed=3, size=20)
    assert len(a) == 20 and a.tolist() == sorted(a) and a.tolist() == b.tolist()
    assert calibration_sample(ids, seed=4, size=20).tolist() != a.tolist()


def test_joined_parts_take_a_blank_column_from_the_other_parts(tmp_path: Path) -> None:
    first = pd.DataFrame({"teacher_id": ["a"], "gaps": [[]], "note": [None]})
    second = pd.DataFrame({"teacher_id": ["b"], "gaps": [["A1", "B2"]], "note": ["x"]})
    parts = []
    for i, frame in enumerate((first, second)):
        parts.append(tmp_path / f"part-{i}.parquet")
        frame.to_parquet(parts[-1], index=False)
    _join_parts(parts, tmp_path / "out.parquet")
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert schema.field("gaps").type == pa.list_(pa.string())
    note = schema.field("note").type
    assert pa.types.is_string(note) or pa.types.is_large_string(note)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["teacher_id"].tolist() == ["a", "b"] and list(out["gaps"][1]) == ["A1", "B2"]
    assert out["note"].isna().tolist() == [True, False]


def test_training_writes_the_same_portraits(
    province_ws: Workspace, blocked: tuple[Workspace, Tables, int]
) -> None:
    ws, _, _ = blocked
    for name in ("teachers", "competencies"):
        _assert_same(
            pd.read_parquet(province_ws.portraits_dir / f"{name}.parquet"),
            pd.read_parquet(ws.portraits_dir / f"{name}.parquet"),
        )


def test_portraits_built_by_ray_tasks_equal_the_local_workers(
    blocked: tuple[Workspace, Tables, int], tmp_path: Path
) -> None:
    from recommender.ray_engine import ray_executors

    local, base, seed = blocked
    ws = Workspace.open(tmp_path / "ws")
    shutil.copytree(local.tables_dir, ws.tables_dir)
    st = settings()
    asof = as_of(workspace_dates(ws))
    with ray_executors(None, 1) as executor:  # a one-CPU local Ray
        build_workspace_portraits(
            ws, base, load_policy(st.policy), asof, st.target_level, seed, block_size=37, executor=executor
        )
    for name in ("teachers", "competencies"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(ws.portraits_dir / f"{name}.parquet"),
            pd.read_parquet(local.portraits_dir / f"{name}.parquet"),
        )
