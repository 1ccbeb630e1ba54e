"""Time and peak memory of `tdr generate` for 10,000 and 100,000 teachers (issue 2: 100 k in under 2 minutes).

Each size runs in its own process, so that its peak RSS is its own. With --baseline ROOT, each size also runs
the generator of another checkout (e.g. main before a change) in the same run, interleaved, and the report
gives the ratio of CPU seconds. Prints JSON; writes bench/results/generate.json.

    .venv/bin/python bench/generate.py [--teachers 10000 100000] [--seed 0] [--world mixed] [--baseline ROOT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"
TARGET_S = {100_000: 120.0}  # the bar


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def run_one(n_teachers: int, seed: int, world: str | None) -> dict[str, object]:
    """Generate one province in a temporary folder (in this process) and measure it; world None: a generator
    without worlds (a baseline checkout)."""
    from data.synthetic import generate

    kwargs = {} if world is None else {"world": world}
    with tempfile.TemporaryDirectory(prefix="tdr-bench-generate-") as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        summary = generate(Path(tmp) / "province", n_teachers=n_teachers, seed=seed, **kwargs)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        size_mb = _folder_mb(Path(tmp))
    # CPU seconds do not grow when other jobs share the machine; wall seconds do
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "teachers": n_teachers,
        "seed": seed,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mb": round(after.ru_maxrss / 1024),  # ru_maxrss is in KiB on Linux
        "output_mb": round(size_mb, 1),
        "courses": summary.rows["courses"],
        "rows": summary.rows,
        "utility_teachers": summary.utility_teachers,
        "world": world,
    }


def run_child(n: int, seed: int, world: str | None, root: Path) -> dict[str, object]:
    """run_one in a fresh process importing the generator of checkout `root`."""
    start = time.perf_counter()
    command = [
        sys.executable,
        __file__,
        "--one",
        "--teachers",
        str(n),
        "--seed",
        str(seed),
        "--root",
        str(root),
    ]
    child = subprocess.run(
        [*command, *(["--world", world] if world else [])], check=True, capture_output=True, text=True
    )
    result: dict[str, object] = json.loads(child.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - start, 1)  # with interpreter start and imports
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--teachers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", default=None, help="default: the generator's own default")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another checkout to time in the same run"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument(
        "--one", action="store_true", help=argparse.SUPPRESS
    )  # child mode: one size, JSON out
    args = parser.parse_args()
    # the generator imported is the one of args.root (this checkout, or the baseline's in a child)
    sys.path.insert(0, str(args.root.resolve()))
    if args.one:
        print(json.dumps(run_one(args.teachers[0], args.seed, args.world)))
        return
    from data.workspace import write_text_atomic

    load_at_start = os.getloadavg()[0]
    runs = []
    for n in args.teachers:
        if args.baseline is not None:
            base = run_child(n, args.seed, None, args.baseline.resolve())
        result = run_child(n, args.seed, args.world, ROOT)
        if args.baseline is not None:
            result["baseline"] = base | {"root": str(args.baseline)}
            ratio = float(str(result["cpu_seconds"])) / float(str(base["cpu_seconds"]))
            result["cpu_ratio_to_baseline"] = round(ratio, 2)
        if n in TARGET_S:
            result["target_seconds"] = TARGET_S[n]
            result["meets_target"] = result["seconds"] < TARGET_S[n]
        runs.append(result)
        print(
            f"{n:>9,} teachers: {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB", file=sys.stderr
        )
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_start": round(load_at_start, 1),
            "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        },
        "runs": runs,
    }
    text = json.dumps(report, ensure_ascii=False, indent=2)
    write_text_atomic(RESULTS, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
