"""A province end to end (issue 18, item 5): `tdr generate` → `tdr ingest` → `tdr train` → `tdr score`, then one
daily update of 1 % of the teachers (their new training records ingested → `tdr train --incremental` →
`tdr score --changed`); each stage's wall time, CPU time and peak memory over all its processes.

Run ``.venv/bin/python -m bench.province --teachers 20000`` from the repository root; it prints JSON and writes
``bench/results/province_<teachers>.json`` atomically. ``--update-only`` runs one more day's update on the workdir
of an earlier run (after a change to the update path) and keeps the earlier days in the JSON's history.

- Every stage is the `tdr` command a deployment runs, in its own process; CPU seconds are those of the command
  and every process it started (`RUSAGE_CHILDREN` after it exits), peak memory the largest sampled sum of
  their proportional set sizes (`bench.batch.Usage`: shared pages counted once) and the largest single
  process's resident size.
- The daily update: new completed training records dated the day after the latest one, for a seeded 1 %
  (``--share``) of the teachers, taken in by `tdr ingest --append` of a file holding only the day's rows.
- The encoder's vectors of the catalogue are cached from earlier runs unless ``--fresh-cache`` (then the model
  conversion, its int8 export and every course text are paid inside `tdr train`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
from numpy.typing import NDArray

from bench.batch import Usage
from data.workspace import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"
DAILY_SHARE = 0.01


def _children_cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def stage(name: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one `tdr` command; its wall seconds, CPU seconds (all its processes), peak PSS sum, and the largest
    resident size of any process this benchmark has waited for so far."""
    cpu0, _ = _children_cpu()
    own = psutil.Process().memory_full_info().pss / 2**20  # the sampler counts this process too
    start = time.perf_counter()
    with Usage(every=0.5).watch() as usage:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "tdr"), *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    wall = time.perf_counter() - start
    cpu1, maxrss = _children_cpu()
    if done.returncode != 0:
        raise RuntimeError(
            f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    figures = {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu1 - cpu0, 1),
        "peak_pss_mb": round(usage.peak_mb - own),
        "largest_process_rss_mb_so_far": round(maxrss),  # RUSAGE_CHILDREN keeps the maximum
    }
    print(name, json.dumps(figures), flush=True)
    return figures | {"output_tail": done.stdout.strip().splitlines()[-3:]}


def daily_records(src: Path, day: Path, share: float, seed: int, day_number: int = 1) -> dict[str, int]:
    """DAY/training_records.csv: one new completed course for a seeded `share` of the teachers, dated
    `day_number` days after the latest record in SRC — the day's rows only, as `tdr ingest --append` takes them. Read with DuckDB
    (a few columns, streamed), so that a million-teacher export is not held in memory here."""
    con = duckdb.connect()
    records = f"read_csv('{src / 'training_records.csv'}', all_varchar=true)"
    columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {records}").fetchall()]

    def values(sql: str) -> NDArray[np.str_]:
        return np.array([row[0] for row in con.execute(sql).fetchall()])

    courses = values(f"SELECT DISTINCT course_id FROM {records} WHERE course_id <> '' ORDER BY 1")
    latest = pd.Timestamp(values(f"SELECT max(CAST(start_date AS DATE)) FROM {records}")[0])
    n_before = int(values(f"SELECT count(*) FROM {records}")[0])
    teachers = values(
        f"SELECT teacher_id FROM read_csv('{src / 'teachers.csv'}', all_varchar=true) ORDER BY 1"
    )
    rng = np.random.default_rng([seed, day_number])
    chosen = np.sort(rng.choice(teachers, size=max(1, int(round(share * len(teachers)))), replace=False))
    new = pd.DataFrame({c: [""] * len(chosen) for c in columns})
    new["record_id"] = [f"D{day_number}-{i:08d}" for i in range(len(chosen))]
    new["teacher_id"] = chosen
    new["course_id"] = rng.choice(courses, size=len(chosen))
    new["start_date"] = (latest + pd.Timedelta(days=day_number)).date().isoformat()
    new["end_date"] = new["start_date"]
    new["hours"] = "4"
    new["format"] = "online"
    new["status"] = "completed"
    new["score"] = "88"
    new["satisfaction"] = "4"
    day.mkdir(parents=True, exist_ok=True)
    new.to_csv(day / "training_records.csv", index=False)
    return {"teachers_updated": len(chosen), "records_before": n_before, "records_added": len(new)}


def table_rows(ws: Path, name: str) -> int:
    """Rows of a workspace table, from the Parquet footers."""
    return int(pq.ParquetDataset(ws / "tables" / f"{name}.parquet").read(columns=[]).num_rows)


def daily_update(
    workdir: Path, seed: int, day_number: int, env: dict[str, str], share: float = DAILY_SHARE
) -> dict[str, Any]:
    """One day's update of `share` of the teachers: ingest --append → train --incremental → score --changed."""
    src, ws, out = workdir / "input", workdir / "ws", workdir / "scores"
    day = workdir / f"day{day_number}"
    update = daily_records(src, day, share, seed, day_number)
    daily = {
        "ingest_day": stage("ingest --append", ["ingest", str(day), "--workspace", str(ws), "--append"], env),
        "train_incremental": stage(
            "train --incremental", ["train", "--workspace", str(ws), "--incremental"], env
        ),
        "score_changed": stage(
            "score --changed", ["score", "--workspace", str(ws), "--out", str(out), "--changed"], env
        ),
    }
    total = {k: round(sum(s[k] for s in daily.values()), 1) for k in ("wall_s", "cpu_s")}
    return {
        "share": share,
        "day": day_number,
        "commit": _commit(env),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **update,
        "append": "tdr ingest --append of the day's training records only",
        "stages": daily,
        "total": total | {"peak_pss_mb": max(s["peak_pss_mb"] for s in daily.values())},
    }


def _commit(env: dict[str, str]) -> str:
    """The commit of the `tdr` code the stages run (the checkout `env`'s Python imports it from, which
    PYTHONPATH may point at another worktree), with "+" when that checkout has uncommitted changes."""
    where = subprocess.run(
        [sys.executable, "-c", "import tdr; print(tdr.__file__)"],
        cwd=Path(sys.executable).parent,  # as the `tdr` script imports: not from the working directory
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root = Path(where).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + ("+" if dirty else "")


def _write(target: Path, result: dict[str, Any]) -> None:
    write_text_atomic(target, json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def full_run(args: argparse.Namespace, env: dict[str, str], target: Path) -> dict[str, Any]:
    """generate → ingest → train → score, then one day's update. After each stage the figures so far are written
    to TARGET marked partial; with ``--resume`` a partial TARGET's finished stages are kept and not run again
    (a million-teacher run takes about an hour, and a change to a later stage need not pay the earlier ones)."""
    src, ws, out = args.workdir / "input", args.workdir / "ws", args.workdir / "scores"
    earlier = json.loads(target.read_text(encoding="utf-8")) if args.resume and target.exists() else {}
    if not earlier.get("partial"):
        earlier = {}
        shutil.rmtree(args.workdir, ignore_errors=True)
    cache = None
    if args.fresh_cache:
        cache = tempfile.mkdtemp(prefix="tdr-cache-")
        env["TDR_MODEL_CACHE"] = cache
    n = str(args.teachers)
    plan = {
        "generate": ["generate", str(src), "--teachers", n, "--seed", str(args.seed)],
        "ingest": ["ingest", str(src), "--workspace", str(ws)],
        "train": ["train", "--workspace", str(ws)],
        "score": ["score", "--workspace", str(ws), "--out", str(out)],
    }
    result: dict[str, Any] = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "load_average_1m": {"start": round(os.getloadavg()[0], 2)},
        },
        "teachers": args.teachers,
        "fresh_encoder_cache": bool(args.fresh_cache),
        **earlier,
        "partial": True,
    }
    stages: dict[str, Any] = result.setdefault("stages", {})
    for name, command in plan.items():
        if name not in stages:
            stages[name] = stage(name, command, env) | {"commit": _commit(env)}
            _write(target, result)
    result["daily_update"] = daily_update(args.workdir, args.seed, 1, env, args.share)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)
    result["machine"]["load_average_1m"]["end"] = round(os.getloadavg()[0], 2)
    end_to_end = {k: round(sum(s[k] for s in stages.values()), 1) for k in ("wall_s", "cpu_s")}
    del result["partial"]
    return result | {
        "commit": _commit(env),
        "rows": {name: table_rows(ws, name) for name in ("training_records", "responses")},
        "end_to_end": end_to_end | {"peak_pss_mb": max(s["peak_pss_mb"] for s in stages.values())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--teachers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("workspace/province"))
    parser.add_argument("--fresh-cache", action="store_true")
    parser.add_argument(
        "--share", type=float, default=DAILY_SHARE, help="share of the teachers a daily update changes"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default bench/results/province_<teachers>.json"
    )
    parser.add_argument(
        "--update-only",
        action="store_true",
        help="only another day's update, on the workdir and results of an earlier run (kept in the JSON's history)",
    )
    parser.add_argument(
        "--day",
        type=int,
        default=None,
        help="with --update-only: the day's number (its seed and date; default the next in the JSON's history)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished stages of a partial earlier run and run the rest",
    )
    args = parser.parse_args()
    target = args.out or RESULTS / f"province_{args.teachers}.json"
    env = dict(os.environ)
    if args.update_only:
        result = json.loads(target.read_text(encoding="utf-8"))
        history = result.setdefault("daily_update_history", [])
        history.append(result["daily_update"])
        day = args.day or len(history) + 1
        result["daily_update"] = daily_update(args.workdir, args.seed, day, env, args.share)
    else:
        result = full_run(args, env, target)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    _write(target, result)


if __name__ == "__main__":
    main()
