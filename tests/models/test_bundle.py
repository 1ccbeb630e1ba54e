"""Bundles: one writer at a time, a killed writer's staging folder swept by the next, old bundles pruned but
never the one in force."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.bundle import CURRENT, BundleBusyError, BundleWriter, bundle_versions, prune, verify
from tdr.cli import app as cli


def _bundle(bundles: Path, payload: str) -> str:
    writer = BundleWriter(bundles, "0123456789abcdef")
    writer.path("model.txt").write_text(payload, encoding="utf-8")
    return writer.commit().name


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    first = BundleWriter(tmp_path, "aaaa")
    with pytest.raises(BundleBusyError):
        BundleWriter(tmp_path, "bbbb")
    first.abort()
    BundleWriter(tmp_path, "cccc").abort()


def test_a_killed_writers_staging_folder_is_swept_by_the_next_writer(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from models.bundle import BundleWriter;"
        "w = BundleWriter(Path(sys.argv[1]), 'deadbeef'); w.path('half.bin').write_bytes(b'x' * 100);"
        "print(w.staging, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    staging = Path(child.stdout.readline().strip())
    assert staging.is_dir()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    version = _bundle(tmp_path, "whole")
    assert not staging.exists()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [version]
    verify(tmp_path / version)


def test_prune_keeps_the_newest_and_never_the_current_bundle(tmp_path: Path) -> None:
    versions = [_bundle(tmp_path, f"model {i}") for i in range(4)]
    (tmp_path / CURRENT).write_text(versions[0] + "\n", encoding="utf-8")  # rolled back to the oldest
    assert prune(tmp_path, keep=2) == [versions[1]]
    assert bundle_versions(tmp_path) == [versions[0], versions[2], versions[3]]
    with pytest.raises(ValueError):
        prune(tmp_path, keep=0)


def test_cli_prunes_bundles(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    versions = [_bundle(ws / "bundles", json.dumps({"i": i})) for i in range(3)]
    result = CliRunner().invoke(cli, ["bundles", "prune", "--keep", "1", "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    assert bundle_versions(ws / "bundles") == [versions[-1]]
    assert versions[0] in result.output and versions[1] in result.output
