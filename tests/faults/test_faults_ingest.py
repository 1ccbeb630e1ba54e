"""Faults: a real `tdr ingest` killed (SIGKILL) at each step of its commit leaves one consistent version.

The workspace holds version A; a second ingest of folder B is killed while it writes its tables, once its
version is staged, once it is renamed into place, right after the switch, and at a few moments by the clock.
Afterwards the workspace is all A or all B — the manifest, every table, the rejects and the report agree — and
the next ingest cleans up and succeeds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from data.ingest import ingest
from data.workspace import FAULT_ENV, Workspace

REPO = Path(__file__).resolve().parents[2]
TAXONOMY = pd.DataFrame({"code": ["A1", "A2"], "name": ["师德规范", "学情分析"]})


def _folder(root: Path, teachers: int) -> Path:
    """A small export whose row counts tell versions apart (B has more teachers and records than A)."""
    root.mkdir(parents=True)
    ids = [f"T{i:04d}" for i in range(teachers)]
    pd.DataFrame({"teacher_id": ids, "stage": "primary", "subject": "语文"}).to_csv(
        root / "teachers.csv", index=False
    )
    pd.DataFrame({"course_id": ["C1", "C2"], "title": ["师德修养", "学情分析"], "hours": ["10", "8"]}).to_csv(
        root / "courses.csv", index=False
    )
    records = pd.DataFrame(
        {
            "record_id": [f"R{i}" for i in range(2 * teachers)],
            "teacher_id": ids * 2,
            "course_id": "C1",
            "start_date": "2024-03-01",
            "status": "completed",
        }
    )
    records.loc[len(records)] = ["R-bad", "T-unknown", "C1", "2024-03-01", "completed"]  # one reject
    records.to_csv(root / "training_records.csv", index=False)
    TAXONOMY.to_csv(root / "taxonomy.csv", index=False)
    return root


def _tdr(*args: str, fault: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    tdr = Path(sys.executable).with_name("tdr")
    return subprocess.Popen([str(tdr), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _version_of(ws: Workspace) -> dict[str, int]:
    """The current version's row counts, after checking that manifest, tables, rejects and report agree."""
    manifest = ws.manifest()
    folder = ws.version_dir
    assert folder is not None and manifest["version"] == folder.name
    report = json.loads((ws.root / "ingest_report.json").read_text(encoding="utf-8"))
    assert report["version"] == manifest["version"]
    rows = {}
    for name, entry in manifest["tables"].items():
        parts = ws.table_files(name)
        assert [p.name for p in parts] == entry["parts"]
        rows[name] = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        assert rows[name] == entry["rows"] == len(ws.read_table(name))
        if name in report["tables"]:
            assert report["tables"][name]["accepted"] == rows[name]
            rejects = pd.read_csv(ws.rejects_dir / f"{name}.csv", dtype=str, encoding="utf-8-sig")
            assert len(rejects) == report["tables"][name]["rejected"]
    return rows


A = {"taxonomy": 2, "teachers": 40, "courses": 2, "training_records": 80}
B = {"taxonomy": 2, "teachers": 44, "courses": 2, "training_records": 88}


@pytest.fixture
def ws_a(tmp_path: Path) -> tuple[Workspace, Path]:
    ws = Workspace.open(tmp_path / "ws")
    ingest(_folder(tmp_path / "a", 40), ws)
    assert _version_of(ws) == A
    return ws, _folder(tmp_path / "b", 44)


@pytest.mark.parametrize(
    ("step", "after"),
    [("table_written", A), ("staged", A), ("renamed", A), ("switched", B)],
)
def test_an_ingest_killed_at_a_commit_step_leaves_one_whole_version(
    ws_a: tuple[Workspace, Path], step: str, after: dict[str, int]
) -> None:
    ws, b = ws_a
    proc = _tdr("ingest", str(b), "--workspace", str(ws.root), fault=step)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert _version_of(ws) == after
    # the next ingest removes what the killed one left and switches to B
    assert _tdr("ingest", str(b), "--workspace", str(ws.root)).wait(timeout=120) == 0
    assert _version_of(ws) == B
    assert not [p for p in (ws.root / "versions").iterdir() if p.name.startswith(".")]
    versions = sorted(p.name for p in (ws.root / "versions").iterdir())
    assert len(versions) == 2 and versions[-1] == ws.current_version()


def test_an_ingest_killed_at_any_moment_leaves_a_or_b(ws_a: tuple[Workspace, Path], tmp_path: Path) -> None:
    ws, b = ws_a
    start = time.monotonic()
    trial = tmp_path / "trial"
    shutil.copytree(ws.root, trial, symlinks=True)
    assert _tdr("ingest", str(b), "--workspace", str(trial)).wait(timeout=120) == 0
    took = time.monotonic() - start
    for i, share in enumerate((0.7, 0.85, 0.95)):
        copy = tmp_path / f"kill{i}"
        shutil.copytree(ws.root, copy, symlinks=True)
        proc = _tdr("ingest", str(b), "--workspace", str(copy))
        time.sleep(took * share)
        proc.kill()
        proc.wait(timeout=60)
        assert _version_of(Workspace.open(copy)) in (A, B)
