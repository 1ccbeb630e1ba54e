"""Portrait files switched in together (`data.workspace.portraits_update`): a reader sees every file of the old set
or every one of the new, an error switches nothing, and portraits written before versions are taken over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data.workspace import PORTRAIT_VERSIONS, Workspace, atomic_write, portraits_update


def _write(folder: Path, name: str, text: str) -> None:
    atomic_write(folder / name, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _files(ws: Workspace) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(ws.portraits_dir.iterdir())}


def test_the_new_files_and_the_carried_ones_switch_in_at_once_and_one_set_before_is_kept(
    tmp_path: Path,
) -> None:
    ws = Workspace.open(tmp_path / "ws")
    with portraits_update(ws) as folder:
        _write(folder, "teachers.parquet", "t1")
        _write(folder, "competencies.parquet", "c1")
        _write(folder, "state", "s1")
    first = ws.portraits_dir.resolve()
    with portraits_update(ws) as folder:
        assert _files(ws) == {"competencies.parquet": "c1", "state": "s1", "teachers.parquet": "t1"}
        _write(folder, "teachers.parquet", "t2")
        _write(folder, "competencies.parquet", "c2")
        assert _files(ws)["teachers.parquet"] == "t1"  # nothing is seen before the switch
    assert ws.portraits_dir.is_symlink()
    assert _files(ws) == {"competencies.parquet": "c2", "state": "s1", "teachers.parquet": "t2"}
    assert (first / "teachers.parquet").read_text(encoding="utf-8") == "t1"  # kept for readers still on it
    with portraits_update(ws) as folder:
        _write(folder, "state", "s3")
    assert not first.exists()  # only one set before the one in force is kept
    versions = sorted(p.name for p in (ws.root / PORTRAIT_VERSIONS).iterdir())
    assert versions == ["000002", "000003"]
    assert _files(ws) == {"competencies.parquet": "c2", "state": "s3", "teachers.parquet": "t2"}


def test_an_error_switches_nothing_and_leaves_no_staging_folder(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    with portraits_update(ws) as folder:
        _write(folder, "teachers.parquet", "t1")
        _write(folder, "competencies.parquet", "c1")
    in_force = ws.portraits_dir.resolve()
    with pytest.raises(RuntimeError), portraits_update(ws) as folder:
        _write(folder, "teachers.parquet", "t2")
        raise RuntimeError("killed half way")
    assert ws.portraits_dir.resolve() == in_force
    assert _files(ws) == {"competencies.parquet": "c1", "teachers.parquet": "t1"}
    assert [p.name for p in (ws.root / PORTRAIT_VERSIONS).iterdir()] == [in_force.name]


def test_portraits_written_before_versions_become_the_set_before(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    ws.portraits_dir.mkdir()
    _write(ws.portraits_dir, "teachers.parquet", "old")
    _write(ws.portraits_dir, "state", "old state")
    with portraits_update(ws) as folder:
        _write(folder, "teachers.parquet", "new")
    assert ws.portraits_dir.is_symlink()
    assert _files(ws) == {"state": "old state", "teachers.parquet": "new"}
    before = [p for p in (ws.root / PORTRAIT_VERSIONS).iterdir() if p != ws.portraits_dir.resolve()]
    assert [(p / "teachers.parquet").read_text(encoding="utf-8") for p in before] == ["old"]


def test_a_killed_updates_staging_folder_is_swept_and_a_running_ones_left_alone(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    versions = ws.root / PORTRAIT_VERSIONS
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    killed = versions / f".staging-{gone.stdout.strip()}-x"
    running = versions / ".staging-1-x"  # pid 1 outlives the test
    for folder in (killed, running):
        folder.mkdir(parents=True)
    with portraits_update(ws) as folder:
        _write(folder, "teachers.parquet", "t1")
    assert not killed.exists() and running.exists()
