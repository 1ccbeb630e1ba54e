"""Ray engine (Ray 批量评分): the local engine's blocks and `score_batch`, spread over a Ray cluster.

Ray Data reads the block partitions, an actor pool (each actor loads the bundle once) scores whole blocks and
writes their part files, so the output is the local engine's, file for file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from data.workspace import Workspace
from recommender.artifacts import load
from recommender.batch import Run, available_cores, finish_run, prepare_run, score_block
from recommender.portraits import ExecutorFactory

# A local Ray instance only carries block summaries and small read buffers through its object store; Ray's
# default (30 % of memory) would take gigabytes from a 2-core CI machine.
OBJECT_STORE_BYTES = 128 * 1024**2
# read by Ray Data (2.60) when it plans a Parquet read: the most bytes of row groups one read unit packs
BIN_PACKING_ENV = "RAY_DATA_PARQUET_BIN_PACKING_BYTES"


class BlockScorer:
    """A Ray actor: loads the run's bundle once, then scores whole blocks and writes their part files."""

    def __init__(self, run: Run) -> None:
        # one thread per actor: the actors share the node's cores
        threadpool_limits(1)
        self.run = run
        self.art = load(run.bundle_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        blocks = np.unique(batch.column("_block").to_numpy())
        teachers = np.zeros(len(blocks), dtype=np.int64)
        for k, i in enumerate(blocks):
            part = batch.filter(pc.equal(batch.column("_block"), i))
            expected = part.column("_block_rows")[0].as_py()
            if part.num_rows != expected:
                # a block must be scored whole to give the local engine's part file; each partition is one
                # row group, read as one unit (see _one_block_per_file), and this guards that
                raise RuntimeError(
                    f"block {i} reached an actor split ({part.num_rows} of {expected} teachers)"
                )
            # the partition's schema metadata restores the portrait dtypes, whatever Ray kept of it
            part = part.replace_schema_metadata(pq.read_schema(self.run.block_path(int(i))).metadata)
            teachers[k] = score_block(self.art, self.run, int(i), part)
        return pa.table({"block": blocks.astype(np.int64), "teachers": teachers})


@contextmanager
def _one_block_per_file() -> Iterator[None]:
    """Ray Data bin-packs small Parquet row groups into 128 MiB read units; one unit per partition instead
    hands every actor whole blocks, one at a time, so that both workers have work from the first block."""
    old = os.environ.get(BIN_PACKING_ENV)
    os.environ[BIN_PACKING_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ[BIN_PACKING_ENV]
        else:
            os.environ[BIN_PACKING_ENV] = old


def _connect(address: str | None, num_workers: int) -> bool:
    """Join the cluster at `address` ("auto": the one this node belongs to), or start a local Ray sized for the
    workers; returns whether this call started Ray (and so should stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return True
    # a local Ray for one job: no usage report to send (CI machines have no network)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        # one CPU per actor plus one for Ray Data's file listing, which would otherwise wait for a free CPU
        num_cpus=num_workers + 1,
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    return True


def score_ray(
    ws: Workspace,
    out: Path,
    top_k: int,
    block_size: int,
    address: str | None = None,
    num_workers: int | None = 2,
    progress: Callable[[int, int], None] | None = None,
    bundle_dir: Path | None = None,
) -> tuple[Path, Path]:
    """Score every teacher like `score_local` (the same bundle and portraits), with `num_workers` Ray actors (on
    the cluster at `address`, or a local Ray when None; None: one per CPU Ray has, less one for reading). Same
    OUT layout, same files, same resumption: finished blocks are skipped."""
    import ray
    import ray.data

    run = prepare_run(ws, out, top_k, block_size, bundle_dir)
    todo = run.todo()
    total = sum(run.block_rows)
    done = total - sum(run.block_rows[i] for i in todo)
    if progress:
        progress(done, total)
    if not todo:
        finish_run(run)
        return run.rec_dir, run.menu_dir
    started = _connect(address, num_workers or available_cores())
    try:
        cpus = ray.cluster_resources().get("CPU", 2)  # type: ignore[no-untyped-call]
        actors = num_workers or max(1, int(cpus) - 1)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        with _one_block_per_file():
            # the folder, not a list of files: Ray lists a list of paths on several threads, which races on an
            # optional fsspec import
            finished = sorted(set(range(len(run.block_rows))) - set(todo))
            ds = ray.data.read_parquet(
                str(run.blocks_dir), skip_paths=[str(run.block_path(i)) for i in finished]
            )
        scored: Any = ds.map_batches(
            BlockScorer,
            fn_constructor_args=(run,),
            batch_format="pyarrow",
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
        )
        for summary in scored.iter_batches(batch_format="pyarrow", batch_size=None):
            done += int(pc.sum(summary.column("teachers")).as_py() or 0)
            if progress:
                progress(done, total)
        finish_run(run)
    finally:
        if started:
            ray.shutdown()
    return run.rec_dir, run.menu_dir


# --------------------------------------------------------------------------------------------------------------
# Ray tasks behind the concurrent.futures interface: `tdr train --engine ray` builds the portrait blocks
# (recommender.portraits) with the same functions the local worker processes run.

_initialised: set[str] = set()


def _run_task(
    token: str,
    init: tuple[Callable[..., None], tuple[Any, ...]],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> Any:
    # a Ray worker process runs the executor's initializer once, before its first task of that executor
    if token not in _initialised:
        initializer, initargs = init
        initializer(*initargs)
        _initialised.add(token)
    return fn(*args)


class RayExecutor(Executor):
    """Each `submit` is one Ray task (one CPU); a worker process runs `initializer(*initargs)` once first, like a
    ProcessPoolExecutor's workers. The caller bounds the tasks in flight (`recommender.portraits._bounded`)."""

    def __init__(self, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
        import ray

        self._token = uuid.uuid4().hex
        self._init = ray.put((initializer, initargs))
        self._task = ray.remote(num_cpus=1, max_retries=0)(_run_task)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("RayExecutor.submit takes positional arguments only")
        future: Future[Any] = self._task.remote(self._token, self._init, fn, args).future()
        return future


@contextmanager
def ray_executors(address: str | None = None, num_workers: int | None = None) -> Iterator[ExecutorFactory]:
    """An executor factory for `build_workspace_portraits` whose workers are Ray tasks, on the cluster at
    `address` (its workers must see the workspace at the same path: shared storage) or a local Ray."""
    import ray

    started = _connect(address, num_workers or available_cores())
    try:
        yield lambda workers, initializer, initargs: RayExecutor(initializer, initargs)
    finally:
        if started:
            ray.shutdown()
