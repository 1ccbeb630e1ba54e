"""Worker pools end with the process that started them, even when it is killed with SIGKILL: no worker and no
resource tracker is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

PARENT = """
import sys, time
from recommender.workers import worker_pool
pool = worker_pool(2, time.sleep, (0,))
futures = [pool.submit(time.sleep, 120) for _ in range(2)]
print("started", flush=True)
time.sleep(120)
"""


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_workers_and_the_resource_tracker_end_when_the_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
    children = psutil.Process(parent.pid).children(recursive=True)
    try:
        assert len(children) >= 3, "two workers and the resource tracker"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive(children) == []
    finally:
        for child in _alive(children):
            child.kill()
