"""Run every benchmark in its own process (so peak memory is each one's own) and list the JSON it wrote.

`make bench` calls this; `python -m bench.run_all irt_math2015 batch` runs a subset.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "generate",
    "encode_index",
    "irt_math2015",
    "cdm",
    "mooccubex",
    "quality",
    "selection",
    "batch",
    "load",
)
RESULTS = Path(__file__).resolve().parent / "results"


def main(names: list[str]) -> int:
    failed = []
    for name in names or BENCHMARKS:
        start = time.perf_counter()
        print(f"== bench.{name}", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"== bench.{name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(name)
    for path in sorted(RESULTS.glob("*.json")):
        print(f"   {path.relative_to(RESULTS.parent.parent)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
