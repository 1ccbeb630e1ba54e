"""Worker processes of the batch stages (scoring, portraits): spawned, and ended with the process that started
them — also when it is killed with SIGKILL, which runs no clean-up of its own.

A worker asks the kernel for SIGKILL when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), then checks the
parent is still the one that started it (it may have died before the request took effect). With every worker
gone, multiprocessing's resource tracker reads end-of-file on its pipe and exits too, so a killed `tdr score` or
`tdr train` leaves no process behind and a re-run starts from a clean slate.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

# from <linux/prctl.h>
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """End this process when `parent` ends (on Linux; elsewhere only the immediate check applies)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def _start(parent: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent)
    initializer(*initargs)


def worker_pool(
    n_workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """`n_workers` spawned processes, each running `initializer(*initargs)` once, that end with this process."""
    return ProcessPoolExecutor(n_workers, get_context("spawn"), _start, (os.getpid(), initializer, initargs))
