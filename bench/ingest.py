"""Streamed ingest, measured (issue 18, item 1): peak memory and wall time of `tdr ingest` on a generated
province, the code before streaming against this checkout's, in the same run.

Run ``.venv/bin/python -m bench.ingest --baseline /work/main`` from the repository root; it prints JSON and
writes ``bench/results/ingest.json`` atomically.

- The province is ``tdr generate DIR --teachers N`` (made once under ``--workdir`` and reused).
- Each `tdr ingest` runs as its own process, with ``PYTHONPATH`` set to the checkout it measures; its peak
  resident memory and CPU time are the kernel's account of that process (``os.wait4``), its wall time the
  parent's clock. Runs alternate baseline / this checkout, so both see the same load.
- Both must accept and reject the same rows per table (checked from their reports).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from data.workspace import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
HERE = Path(__file__).resolve().parents[1]


def province(workdir: Path, teachers: int) -> Path:
    folder = workdir / f"province-{teachers}"
    if not (folder / "teachers.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        _tdr(HERE, "generate", str(folder), "--teachers", str(teachers))
    return folder


def _tdr(checkout: Path, *args: str) -> dict[str, float]:
    """Run `tdr` from ``checkout``; its wall seconds, CPU seconds and peak resident MB."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    # the CLI moved from recommender/cli.py to the tdr package; a baseline checkout may predate the move
    code = "try:\n from tdr.cli import app\nexcept ImportError:\n from recommender.cli import app\napp()"
    start = time.perf_counter()
    # run in the checkout: `python -c` puts the working folder ahead of PYTHONPATH
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, cwd=checkout, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"tdr {' '.join(args)} from {checkout} failed ({status})")
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def _counts(ws: Path) -> dict[str, list[int]]:
    report = json.loads((ws / "ingest_report.json").read_text(encoding="utf-8"))
    return {name: [t["rows_in"], t["accepted"], t["rejected"]] for name, t in report["tables"].items()}


def size(workdir: Path, teachers: int, baseline: Path, rounds: int) -> dict[str, Any]:
    """Both ingests of one generated province, ``rounds`` times, alternating."""
    src = province(workdir, teachers)
    out: dict[str, Any] = {
        "teachers": teachers,
        "input_mb": {
            p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(src.iterdir()) if p.is_file()
        },
        "runs": [],
    }
    counts = {}
    for round_ in range(rounds):
        for label, checkout in (("baseline", baseline), ("streamed", HERE)):
            ws = workdir / f"ws-{label}"
            shutil.rmtree(ws, ignore_errors=True)
            entry = {
                "code": label,
                "round": round_,
                **_tdr(checkout, "ingest", str(src), "--workspace", str(ws)),
            }
            counts[label] = _counts(ws)
            out["runs"].append(entry)
            print(json.dumps({"teachers": teachers, **entry}), flush=True)
            shutil.rmtree(ws, ignore_errors=True)
    out["same_counts"] = counts["baseline"] == counts["streamed"]
    out["counts"] = counts["streamed"]
    best = {
        label: min((r for r in out["runs"] if r["code"] == label), key=lambda r: r["seconds"])
        for label in ("baseline", "streamed")
    }
    out["ratio_streamed_to_baseline"] = {
        k: round(best["streamed"][k] / best["baseline"][k], 2)
        for k in ("seconds", "cpu_seconds", "peak_rss_mb")
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=Path("/work/main"), help="checkout before streaming")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tdr-bench-ingest"))
    parser.add_argument("--teachers", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_start": os.getloadavg()[0],
        },
        "sizes": [size(args.workdir, n, args.baseline, args.rounds) for n in args.teachers],
    }
    result["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    text = json.dumps(result, ensure_ascii=False, indent=2)
    write_text_atomic(args.out, text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
