"""What training on a stratified sample costs (issue 18, item 2): NDCG@10 against the simulator's true utilities
when collaborative signals, ranking data and the ranker learn from a sample of the province's teachers
(`recommender.sampling`), at several sample sizes, full vs sampled, in one run.

Run ``.venv/bin/python -m bench.train_sample`` from the repository root; it prints JSON and writes
``bench/results/train_sample.json`` atomically.

- The province: ``tdr generate`` with ``--teachers`` (3 000) for each of ``--seeds`` (two draws of the
  simulator's province), ingested once into ``--workdir``.
- Portraits do not depend on the sample, so they are built by the first (full) train and kept; each size then
  retrains encoder side (cached), signals and ranker into a new bundle, and `tdr evaluate --truth`'s NDCG@10
  of TDR's top-10 is computed over the same ``--evaluate`` teachers, with the popularity baseline beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any
from unittest import mock

from data.ingest import ingest
from data.synthetic import generate
from data.workspace import Workspace, write_text_atomic
from recommender import train as train_module
from recommender.config import Settings
from recommender.evaluate import evaluate

RESULTS = Path(__file__).resolve().parent / "results" / "train_sample.json"


def province(workdir: Path, teachers: int, seed: int) -> tuple[Workspace, Path]:
    src = workdir / f"seed{seed}-{teachers}" / "input"
    ws = Workspace.open(workdir / f"seed{seed}-{teachers}" / "ws")
    if not (src / "_truth").exists():
        generate(src, n_teachers=teachers, seed=seed)
    if not ws.has_table("teachers"):
        ingest(src, ws)
    return ws, src


def one_world(ws: Workspace, truth: Path, sizes: list[int], n_eval: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for i, size in enumerate(sizes):
        start = time.perf_counter()
        s = Settings.from_env(train_sample=size)
        if i == 0:
            train_module.train(ws, s, seed=seed)
        else:  # the portraits of the first train stay; everything the sample feeds is retrained
            with mock.patch.object(train_module, "build_workspace_portraits", lambda *a, **k: None):
                train_module.train(ws, s, seed=seed)
        t_train = time.perf_counter() - start
        report = evaluate(ws, truth, k=10, seed=seed, max_teachers=n_eval)
        methods = report["ranking"]["methods"]
        info = report["bundle_metrics"]
        rows.append(
            {
                "sample_teachers": min(size, report["teachers_in_workspace"]),
                "ndcg10_tdr": round(methods["tdr"]["mean"], 4),
                "ndcg10_popularity": round(methods["popularity"]["mean"], 4),
                "ranker_valid_ndcg": info.get("ranker", {}),
                "train_s": round(t_train, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    full = rows[0]["ndcg10_tdr"]
    for row in rows:
        row["ndcg10_vs_full"] = round(row["ndcg10_tdr"] / full, 4)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("workspace/train_sample"))
    parser.add_argument("--teachers", type=int, default=3000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 1500, 750, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 6])
    parser.add_argument("--evaluate", type=int, default=1500, help="teachers whose top-10 is scored")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    result: dict[str, Any] = {"teachers": args.teachers, "evaluated": args.evaluate, "provinces": {}}
    for seed in args.seeds:
        ws, src = province(args.workdir, args.teachers, seed)
        result["provinces"][f"seed {seed}"] = one_world(
            ws, src, sorted(args.sizes, reverse=True), args.evaluate, seed
        )
    result["load_average_1m"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    write_text_atomic(RESULTS, text + "\n")


if __name__ == "__main__":
    main()
