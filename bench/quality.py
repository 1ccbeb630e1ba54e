"""Quality on a synthetic province: generate → ingest → train → evaluate against the generator's ground truth.

`python -m bench.quality [--teachers N] [--seed S]` writes bench/results/quality.json: NDCG@10 of TDR beside
its baselines, portrait recovery, tagging, menu compliance, and how long each stage took.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil

from data.ingest import ingest
from data.synthetic import generate
from data.workspace import Workspace
from recommender.config import settings
from recommender.evaluate import evaluate, write_report
from recommender.train import train

RESULTS = Path(__file__).resolve().parent / "results" / "quality.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teachers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tdr-quality-") as tmp:
        src, ws = Path(tmp) / "input", Workspace.open(Path(tmp) / "ws")
        for name, step in (
            ("generate_s", lambda: generate(src, n_teachers=args.teachers, seed=args.seed)),
            ("ingest_s", lambda: ingest(src, ws)),
            ("train_s", lambda: train(ws, settings(), seed=args.seed)),
        ):
            start = time.perf_counter()
            step()
            timings[name] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        report = evaluate(ws, src / "_truth", seed=args.seed)
        timings["evaluate_s"] = round(time.perf_counter() - start, 1)
    report["province"] = {"teachers": args.teachers, "seed": args.seed}
    report["timings"] = timings
    report["peak_rss_mb"] = round(psutil.Process().memory_info().rss / 2**20)
    write_report(report, args.out)
    ranking = report["ranking"]
    print(
        f"NDCG@10 TDR {ranking['methods']['tdr']['mean']:.4f}; best baseline {ranking['best_baseline']} "
        f"{ranking['methods'][ranking['best_baseline']]['mean']:.4f}; ratio {ranking['ratio_to_best_baseline']:.2f}"
    )
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
