"""Shared fixtures: one small seeded synthetic province, generated, ingested and trained once per test run.

pytest-xdist runs test files in several worker processes; a file lock makes the first worker build the trained
workspace and the others reuse it, so the whole pipeline runs once per `make test`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from filelock import FileLock

from data.ingest import ingest
from data.synthetic import generate
from data.workspace import Workspace
from recommender.config import settings

PROVINCE_TEACHERS = 600
PROVINCE_COURSES = 240
PROVINCE_SEED = 11


def _build(root: Path) -> None:
    src = root / "input"
    generate(src, n_teachers=PROVINCE_TEACHERS, seed=PROVINCE_SEED, n_courses=PROVINCE_COURSES)
    ws = Workspace.open(root / "ws")
    ingest(src, ws)
    from recommender.train import train

    train(ws, settings(), seed=PROVINCE_SEED)
    (root / "ready.json").write_text(json.dumps({"teachers": PROVINCE_TEACHERS}), encoding="utf-8")


@pytest.fixture(scope="session")
def province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with input/ (the generated contract files, truth under input/_truth) and ws/ (a trained
    workspace). Read-only for tests: copy it before changing anything."""
    # xdist workers of one run share a run id; without xdist the session's own temp folder is the place
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent / f"tdr-province-{run_id}" if run_id else base / "tdr-province"
    shared.mkdir(parents=True, exist_ok=True)
    with FileLock(str(shared) + ".lock"):
        if not (shared / "ready.json").exists():
            _build(shared)
    return shared


@pytest.fixture(scope="session")
def province_ws(province: Path) -> Workspace:
    return Workspace.open(province / "ws")
