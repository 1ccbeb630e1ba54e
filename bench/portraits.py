"""Portraits at scale, measured (issue 7, item 4): building the portraits of 100 k and 1 M teachers from their
raw tables on this machine, block by block (`recommender.portraits`): seconds, CPU seconds, peak memory.

Run ``.venv/bin/python -m bench.portraits`` from the repository root; it prints JSON and writes
``bench/results/portraits.json`` atomically.

- Teachers: the validated tables of ``--source`` (an ingested and trained workspace, default /tmp/ws1) are
  replicated into ``--workdir`` by DuckDB: teachers, training records, responses and competency scores copied
  under new teacher ids (copy number appended), items, courses and taxonomy as they are. Every copy answers the
  same items the same way, so the calibration and the estimates are those of the source, repeated: the point is
  the time and memory of a province of that size.
- The courses come from the source's current bundle (with the competencies inferred for untagged courses), as
  `tdr train` passes them.
- Each build runs in a fresh process (memory and CPU are that process's: `bench.batch.isolated`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from bench.batch import Usage, isolated
from data.reference import load_policy
from data.workspace import Workspace, write_text_atomic
from features.portrait import Tables, as_of
from models.bundle import current_bundle_dir
from recommender.batch import available_cores
from recommender.config import settings
from recommender.portraits import PORTRAIT_BLOCK, build_workspace_portraits, latest_dates

RESULTS = Path(__file__).resolve().parent / "results" / "portraits.json"
PER_TEACHER = ("teachers", "training_records", "responses", "competency_scores")
SHARED = ("items", "courses", "taxonomy")


def synthetic_tables(source: Workspace, dest: Path, n: int) -> Workspace:
    """A workspace whose tables hold n teachers: copies of the source's (see the module docstring). Reused when
    already complete."""
    ws = Workspace.open(dest)
    done = dest / "_synthetic.json"
    if done.exists() and json.loads(done.read_text(encoding="utf-8")).get("teachers") == n:
        return ws
    ws.tables_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        target = ws.table_path(name)
        if target.is_file():
            target.unlink()
        target.mkdir(exist_ok=True)
        for part in source.table_files(name):
            shutil.copyfile(part, target / part.name)
    con = duckdb.connect()
    size = con.execute(
        "SELECT count(*) FROM read_parquet($p)", {"p": str(source.table_path("teachers"))}
    ).fetchone()
    assert size is not None
    copies = math.ceil(n / size[0])
    for name in PER_TEACHER:
        src, tmp = str(source.table_path(name)), ws.table_path(name).with_suffix(".tmp")
        # the copy's teachers are the source's first ones in teacher_id order, so that exactly n are made
        con.execute(
            f"""COPY (
                WITH t AS (SELECT teacher_id, row_number() OVER (ORDER BY teacher_id) - 1 AS pos
                           FROM read_parquet('{source.table_path("teachers")}')),
                     c AS (SELECT range AS copy FROM range({copies}))
                SELECT s.* REPLACE (s.teacher_id || '-' || lpad(c.copy::VARCHAR, 4, '0') AS teacher_id)
                FROM read_parquet('{src}') s JOIN t USING (teacher_id) CROSS JOIN c
                WHERE c.copy * {size[0]} + t.pos < {n}
                ORDER BY teacher_id
            ) TO '{tmp}' (FORMAT parquet)"""
        )
        os.replace(tmp, ws.table_path(name))
    con.close()
    write_text_atomic(done, json.dumps({"teachers": n, "source": str(source.root)}))
    return ws


def build(ws: Workspace, source: Workspace, block_size: int) -> dict[str, Any]:
    """Build ws's portraits as `tdr train` does (timed from reading the small tables to the files in place;
    training's own reading of the teachers and records tables for the ranker is not part of it)."""
    st = settings()
    policy = load_policy(st.policy)
    start = time.perf_counter()
    with Usage(every=1.0).watch() as usage:
        courses = pd.read_parquet(current_bundle_dir(source.bundles_dir) / "courses.parquet")
        none = pd.DataFrame()
        base = Tables(
            teachers=none,
            courses=courses.assign(competencies=courses["competencies_used"]),
            records=none,
            items=ws.read_table("items"),
            responses=none,
            scores=none,
            taxonomy=ws.read_table("taxonomy"),
        )
        asof = as_of(latest_dates(ws))
        teachers = build_workspace_portraits(ws, base, policy, asof, st.target_level, 0, block_size)
    seconds = time.perf_counter() - start
    rows = {
        name: int(pd.read_parquet(ws.table_path(name), columns=["teacher_id"]).shape[0])
        for name in PER_TEACHER
    }
    return {
        "teachers": teachers,
        "rows": rows,
        "block_size": block_size,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(usage.cpu_seconds, 1),
        "ms_per_teacher": round(1000 * seconds / teachers, 3),
        "peak_pss_mb": round(usage.peak_mb),
        "portraits_mb": round(sum(f.stat().st_size for f in ws.portraits_dir.glob("*.parquet")) / 2**20),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/tmp/ws1"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tdr-bench-portraits"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--block-size", type=int, default=PORTRAIT_BLOCK)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    source = Workspace.open(args.source)
    result: dict[str, Any] = {
        "machine": {
            "cpus": available_cores(),
            "python": platform.python_version(),
            "load_average_1m_at_start": os.getloadavg()[0],
        },
        "source": str(args.source),
        "sizes": [],
    }
    for n in args.sizes:
        start = time.perf_counter()
        ws = synthetic_tables(source, args.workdir / f"ws-{n}", n)
        entry = {"generate_seconds": round(time.perf_counter() - start, 1)}
        entry.update(isolated(build, ws, source, args.block_size))
        result["sizes"].append(entry)
        print(json.dumps(entry, ensure_ascii=False), flush=True)
    result["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    write_text_atomic(args.out, json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return result


if __name__ == "__main__":
    main()
