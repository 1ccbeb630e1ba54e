"""Portrait recovery by the structure of the diagnostic model (issue 19, item 4): the portraits of a synthetic
province built with the portrait's IRT model as it is, with a general factor, and with the code of a baseline
checkout (main before this branch), in one run, against the province's true competencies.

    python -m bench.portrait_recovery [--teachers 2000] [--seed 5] [--workdir DIR] [--baseline /work/main]

The province is written by ``tdr generate -n TEACHERS -s SEED`` and loaded by ``tdr ingest`` (both reused when
already in WORKDIR). Each variant builds every teacher's portrait in memory (`features.portrait.build_portraits`:
the calibration, item estimates, scale link and priors that ``tdr train`` runs block by block), in a fresh
process of its own whose code comes first on the path (this checkout, or the baseline's), with
``features.diagnostics.GENERAL_FACTOR`` and ``CORR_RANK`` set where the code has them; recovery is `recommender.evaluate.recovery`
(correlation of the estimates with the truth, per competency and pooled, and 95 % interval coverage; assessed
teachers and priors). CPU seconds of each build are the comparable figure on a shared machine.

Writes ``bench/results/portrait_recovery_irt.json`` atomically and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from data.reference import load_policy
from data.synthetic import load_truth
from data.workspace import Workspace, write_text_atomic
from features import diagnostics
from features.portrait import Tables, as_of, build_portraits
from recommender.config import settings
from recommender.evaluate import recovery
from recommender.portraits import latest_dates
from recommender.train import load_tables

RESULTS = Path(__file__).resolve().parent / "results" / "portrait_recovery_irt.json"
# variant: the features.diagnostics settings it sets ({} for the baseline: its code as it is)
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "without_general_factor": {"GENERAL_FACTOR": False, "CORR_RANK": None},
    "with_general_factor": {"GENERAL_FACTOR": True, "CORR_RANK": None},
    "rank1_correlations": {"GENERAL_FACTOR": False, "CORR_RANK": 1},
}
ROOT = Path(__file__).resolve().parents[1]
KEPT = ("teachers", "cells", "corr_overall", "corr_mean_per_competency", "coverage_95", "mae")


def _tdr(*args: str) -> None:
    subprocess.run([sys.executable, "-c", "from tdr.cli import app; app()", *args], check=True)


def province(workdir: Path, teachers: int, seed: int) -> tuple[Path, Workspace]:
    """The generated province's folder and its ingested workspace (made when absent)."""
    src, ws_dir = workdir / f"province_{teachers}_{seed}", workdir / f"ws_{teachers}_{seed}"
    if not (src / "_truth").is_dir():
        _tdr("generate", "-n", str(teachers), "-s", str(seed), str(src))
    if not ws_dir.is_dir():
        _tdr("ingest", str(src), "-w", str(ws_dir))
    return src, Workspace.open(ws_dir)


def measure(ws: Workspace, truth_dir: Path, setting: dict[str, Any]) -> dict[str, Any]:
    """One variant's portraits, built in memory and scored against the truth (``setting``: the
    features.diagnostics constants to set; the code's own where empty)."""
    tables = load_tables(ws)
    tables = Tables(
        teachers=tables.teachers,
        courses=tables.courses,
        records=ws.read_table("training_records"),
        items=tables.items,
        responses=ws.read_table("responses"),
        scores=ws.read_table("competency_scores"),
        taxonomy=tables.taxonomy,
    )
    policy = load_policy(settings().policy)
    asof = as_of(latest_dates(ws))
    for name, value in setting.items():
        setattr(diagnostics, name, value)
    cpu, wall = time.process_time(), time.perf_counter()
    portraits, model = build_portraits(tables, policy, asof)
    cost = {
        "build_cpu_s": round(time.process_time() - cpu, 2),
        "build_s": round(time.perf_counter() - wall, 2),
    }
    latent = load_truth(truth_dir).latent
    found = recovery(
        portraits.competencies, portraits.teachers, latent.assign(teacher_id=latent["teacher_id"].astype(str))
    )
    out: dict[str, Any] = {
        part: {k: found[part][k] for k in KEPT} for part in ("assessed", "prior_teachers", "all")
    }
    out["assessed"]["corr_min_per_competency"] = min(found["assessed"]["corr_per_competency"].values())
    return out | cost | {"irt_iterations": int(model.n_iter_) if model is not None else 0}


def in_process(code: Path, ws: Workspace, truth_dir: Path, setting: dict[str, Any]) -> dict[str, Any]:
    """`measure` in a fresh process whose imports come from ``code`` first."""
    flag = json.dumps(setting)
    env = os.environ | {"PYTHONPATH": str(code)}
    child = subprocess.run(
        [sys.executable, __file__, "--one", flag, "--ws", str(ws.root), "--truth", str(truth_dir)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        cwd=code,
    )
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def commit(code: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--teachers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("workspace") / "portrait_recovery")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--baseline", type=Path, default=Path("/work/main"), help="checkout of the code before"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--ws", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--truth", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child of `in_process`
        print(json.dumps(measure(Workspace.open(args.ws), args.truth, json.loads(args.one))))
        return
    src, ws = province(args.workdir.resolve(), args.teachers, args.seed)
    results: dict[str, Any] = {
        "what": "portrait recovery of the in-memory portrait build: the baseline checkout's code, and this "
        "branch's without and with a general factor and with rank-1 competency correlations; same province, "
        "same run, each in a fresh process",
        "baseline_code": f"{args.baseline} at {commit(args.baseline)}",
        "branch": commit(ROOT),
        "province": f"tdr generate -n {args.teachers} -s {args.seed}; tdr ingest",
        "chosen": {"GENERAL_FACTOR": diagnostics.GENERAL_FACTOR, "CORR_RANK": diagnostics.CORR_RANK},
    }
    for name, setting in VARIANTS.items():
        code = args.baseline if name == "baseline" else ROOT
        results[name] = in_process(code.resolve(), ws, src, setting)
    results["machine"] = {"python": platform.python_version(), "processor": platform.processor() or None}
    write_text_atomic(args.out, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
