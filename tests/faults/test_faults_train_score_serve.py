"""Kills at several points of `tdr train`, `tdr score` and `tdr serve` (kill -9: no clean-up runs): nothing an
answer acknowledged is lost, no process is left behind, and the workspace is always one consistent version —
CURRENT names a whole bundle, score outputs are whole part files equal to an unkilled run's, every event the
service acknowledged is stored.

All on a copy of the session's 600-teacher province; each kill waits for an observable point (a folder, a worker
process, a part file, an acknowledged event) rather than a time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from api.auth import create_token
from api.events import EventStore
from data.workspace import Workspace
from models.bundle import BundleWriter, current_bundle_dir, verify
from recommender.batch import score_local

pytestmark = pytest.mark.slow

TDR = str(Path(sys.executable).with_name("tdr"))
WAIT_S = 240.0


@pytest.fixture(scope="module")
def ws(province: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("faults") / "ws"
    shutil.copytree(province / "ws", copy, ignore=shutil.ignore_patterns("*.sqlite*", "service.pepper"))
    return copy


def _tdr(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([TDR, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _until(
    what: str, ready: Callable[[subprocess.Popen[bytes]], bool], proc: subprocess.Popen[bytes]
) -> None:
    """Wait until `ready(proc)`, failing if the process ends first or the wait is too long."""
    deadline = time.monotonic() + WAIT_S
    while not ready(proc):
        assert proc.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {WAIT_S:.0f} s"
        time.sleep(0.05)


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 the process; then every process it had started must end by itself."""
    descendants = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30

    def alive() -> list[psutil.Process]:
        return [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = alive()
    for p in left:
        p.kill()
    assert left == [], f"orphans after kill -9: {[' '.join(p.cmdline())[:80] for p in left]}"


def _workers(proc: subprocess.Popen[bytes]) -> int:
    return len(psutil.Process(proc.pid).children(recursive=True))


# --- train --------------------------------------------------------------------------------------------------


def _staging(bundles: Path) -> set[str]:
    return {p.name for p in bundles.glob(".*") if p.is_dir()}


def test_a_killed_train_keeps_the_bundle_in_force_and_the_next_one_sweeps_its_leftovers(ws: Path) -> None:
    bundles = ws / "bundles"
    in_force = current_bundle_dir(bundles)
    points: dict[str, Callable[[subprocess.Popen[bytes]], bool]] = {
        "a staging folder": lambda _: bool(_staging(bundles)),
        "portrait workers": lambda p: bool(list(ws.glob(".portraits-*"))) and _workers(p) >= 2,
    }
    for point, reached in points.items():
        train = _tdr("train", "--workspace", str(ws))
        _until(point, reached, train)
        _kill_tree(train)
        assert current_bundle_dir(bundles) == in_force
        verify(in_force)
    stale = _staging(bundles)
    assert stale and list(ws.glob(".portraits-*")), "the kills left what a killed train leaves"
    # the next train sweeps both before it builds anything
    train = _tdr("train", "--workspace", str(ws))
    _until(
        "the sweep", lambda _: not (_staging(bundles) & stale) and not list(ws.glob(".portraits-*")), train
    )
    _kill_tree(train)
    BundleWriter(bundles, "0" * 16).abort()
    assert _staging(bundles) == set()
    assert current_bundle_dir(bundles) == in_force
    verify(in_force)


# --- score --------------------------------------------------------------------------------------------------

BLOCK = 50


def _parts(out: Path) -> list[Path]:
    return sorted((out / "menus.parquet").glob("part-*.parquet"))


def _scored(out: Path, parts: int, proc: subprocess.Popen[bytes]) -> bool:
    """At least `parts` blocks written while the workers (and the resource tracker) still run."""
    return len(_parts(out)) >= parts and _workers(proc) >= 3


def test_a_killed_score_leaves_whole_parts_and_resumes_to_the_same_files(ws: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    score_local(Workspace.open(ws), reference, 20, BLOCK, workers=1)
    blocks = len(_parts(reference))
    out = tmp_path / "killed"
    for point in (1, blocks // 2):
        score = _tdr(
            "score", "--workspace", str(ws), "--out", str(out), "--block-size", str(BLOCK), "--workers", "2"
        )
        _until(f"{point} part(s)", partial(_scored, out, point), score)
        _kill_tree(score)
        for folder in ("menus.parquet", "recommendations.parquet"):
            for part in (out / folder).glob("part-*.parquet"):
                pd.testing.assert_frame_equal(
                    pd.read_parquet(part), pd.read_parquet(reference / folder / part.name)
                )
    resumed = _tdr(
        "score", "--workspace", str(ws), "--out", str(out), "--block-size", str(BLOCK), "--workers", "2"
    )
    assert resumed.wait(timeout=WAIT_S) == 0
    for folder in ("menus.parquet", "recommendations.parquet"):
        names = sorted(p.name for p in (reference / folder).glob("part-*.parquet"))
        assert sorted(p.name for p in (out / folder).glob("part-*.parquet")) == names
        for name in names:
            assert (out / folder / name).read_bytes() == (reference / folder / name).read_bytes()


# --- serve --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post_until_dead(base: str, token: str, teacher: str, course: str, prefix: str, acked: list[str]) -> None:
    """Post events one after another until the server dies; `acked` gets each id a 2xx answered."""
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for i in range(100_000):
            event_id = f"{prefix}-{i:06d}"
            body = {"event_id": event_id, "teacher_id": teacher, "course_id": course, "type": "clicked"}
            try:
                r = client.post("/api/v1/events", json=body, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError:
                return
            if r.is_success:
                acked.append(event_id)


def _up(base: str, _: subprocess.Popen[bytes]) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _acked(acked: list[str], n: int, _: subprocess.Popen[bytes]) -> bool:
    return len(acked) >= n


def test_every_event_acknowledged_before_a_kill_is_stored(ws: Path) -> None:
    roster = pd.read_parquet(Workspace.open(ws).portraits_dir / "teachers.parquet", columns=["teacher_id"])
    teacher = str(roster["teacher_id"].iloc[0])
    course = str(pd.read_parquet(current_bundle_dir(ws / "bundles") / "courses.parquet")["course_id"].iloc[0])
    token = create_token(ws, "teacher", teacher_id=teacher)
    acked: list[str] = []
    for point in (5, 60):
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        serve = _tdr("serve", "--workspace", str(ws), "--port", str(port))

        _until("the service", partial(_up, base), serve)
        mine: list[str] = []
        poster = threading.Thread(
            target=_post_until_dead, args=(base, token, teacher, course, f"k{point}", mine)
        )
        poster.start()
        _until(f"{point} acknowledged events", partial(_acked, mine, point), serve)
        _kill_tree(serve)
        poster.join(timeout=30)
        acked += mine
        stored = {e.event_id for e in EventStore(ws).list_events(teacher)}
        assert set(acked) <= stored, f"acknowledged but lost: {sorted(set(acked) - stored)[:5]}"
        with sqlite3.connect(ws / "events.sqlite") as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
