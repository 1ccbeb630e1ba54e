"""Batch scoring (批量评分): the province in deterministic blocks of teachers, each scored by the pure core
`recommender.scoring.score_batch` in this process or in a pool of worker processes, resumable run by run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from data.schema import TRAINING_RECORDS
from data.stream import Cursor, contract_schema, parquet_files, source_schema, teacher_slices
from data.workspace import Workspace, atomic_write, write_parquet_atomic, write_text_atomic
from models.bundle import read_manifest
from recommender.artifacts import Artifacts, load, paired
from recommender.scoring import PortraitBlock, score_batch
from recommender.workers import worker_pool

# --------------------------------------------------------------------------------------------------------------
# Blocks: the teachers in deterministic blocks (sorted by teacher_id), each a self-contained partition, one row per
# teacher with its competencies and training records nested, so that every engine (this process, worker
# processes, Ray actors) reads the same blocks and memory is bounded by one block, not the province.

RECORD_COLUMNS = ["teacher_id", "course_id", "start_date", "end_date", "status", "hours", "format"]
NESTED = ("_competencies", "_records")
INTERNAL = (*NESTED, "_block", "_block_rows")


def _part(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _sources(ws: Workspace) -> tuple[list[Path], list[Path], list[Path]]:
    records = ws.table_path("training_records")
    return (
        parquet_files(ws.portraits_dir / "teachers.parquet"),
        parquet_files(ws.portraits_dir / "competencies.parquet"),
        parquet_files(records) if records.exists() else [],
    )


def _nest(ids: pa.ChunkedArray, child: pa.Table) -> pa.ListArray:
    """The child rows of each teacher of `ids` as one list cell (rows of other teachers are dropped)."""
    at = pc.index_in(child.column("teacher_id"), value_set=ids.combine_chunks())
    found = pc.is_valid(at)
    child = child.filter(found)
    pos = at.filter(found).to_numpy().astype(np.int64)
    if len(pos) > 1 and (np.diff(pos) < 0).any():
        child = child.take(np.argsort(pos, kind="stable"))
        pos = np.sort(pos, kind="stable")
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(np.bincount(pos, minlength=len(ids)))
    names = [c for c in child.column_names if c != "teacher_id"]
    struct = pa.StructArray.from_arrays([child.column(c).combine_chunks() for c in names], names=names)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), struct)


def _child_meta(name: str, schema: pa.Schema) -> dict[bytes, bytes]:
    """What turns a nested column back into the source's DataFrame: its column order and pandas metadata."""
    pandas_meta = (schema.metadata or {}).get(b"pandas", b"{}").decode()
    return {f"tdr.{name}".encode(): json.dumps({"columns": schema.names, "pandas": pandas_meta}).encode()}


def block_tables(ws: Workspace, block_size: int) -> Iterator[pa.Table]:
    """The workspace's teachers as block partitions (sorted by teacher_id, `block_size` per block), read in one
    streaming pass: at most a block of each source is in memory at a time."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    teacher_files, comp_files, record_files = _sources(ws)
    t_schema, c_schema = source_schema(teacher_files), source_schema(comp_files)
    r_schema = source_schema(record_files, RECORD_COLUMNS, contract_schema(TRAINING_RECORDS, RECORD_COLUMNS))
    comps, records = Cursor(comp_files, c_schema), Cursor(record_files, r_schema)
    metadata = {
        **(t_schema.metadata or {}),
        **_child_meta("_competencies", c_schema),
        **_child_meta("_records", r_schema),
    }
    for i, rows in enumerate(teacher_slices(teacher_files, t_schema, block_size)):
        ids = rows.column("teacher_id")
        last = ids[-1].as_py()
        n = rows.num_rows
        table = (
            rows.append_column("_competencies", _nest(ids, comps.upto(last)))
            .append_column("_records", _nest(ids, records.upto(last)))
            .append_column("_block", pa.array(np.full(n, i, dtype=np.int32)))
            .append_column("_block_rows", pa.array(np.full(n, n, dtype=np.int32)))
        )
        yield table.replace_schema_metadata(metadata)


def _unnest(table: pa.Table, name: str) -> pd.DataFrame:
    cell = table.column(name).combine_chunks()
    flat = cell.flatten()
    columns = {
        "teacher_id": table.column("teacher_id").combine_chunks().take(pc.list_parent_indices(cell)),
        **{f.name: arr for f, arr in zip(flat.type, flat.flatten(), strict=True)},
    }
    meta = json.loads((table.schema.metadata or {}).get(f"tdr.{name}".encode(), b"{}"))
    child = pa.table(columns)
    if meta:
        child = child.select(meta["columns"]).replace_schema_metadata({b"pandas": meta["pandas"].encode()})
    return child.to_pandas()


def read_block(table: pa.Table) -> PortraitBlock:
    """A block partition (see block_tables) as the PortraitBlock score_batch takes."""
    rows = table.drop_columns([c for c in INTERNAL if c in table.column_names]).to_pandas()
    return PortraitBlock(rows, _unnest(table, "_competencies"), _unnest(table, "_records"))


def blocks_of(ws: Workspace, block_size: int) -> Iterator[tuple[int, PortraitBlock]]:
    """The workspace's teachers in deterministic blocks (sorted by teacher_id), memory bounded by a block."""
    for i, table in enumerate(block_tables(ws, block_size)):
        yield i, read_block(table)


def write_blocks(ws: Workspace, folder: Path, block_size: int) -> Iterator[int]:
    """Write the block partitions as FOLDER/part-XXXXX.parquet (each atomically, yielding its number of teachers
    once written) and FOLDER/_manifest.json after the last."""
    rows: list[int] = []
    for i, table in enumerate(block_tables(ws, block_size)):
        # one row group: Ray Data then reads a block as one unit, never split between actors; no dictionary
        # encoding: it triples the time to write and read a block of mostly distinct ids for 10 % less disk
        write = partial(pq.write_table, table, row_group_size=max(table.num_rows, 1), use_dictionary=False)
        atomic_write(folder / _part(i), write)
        rows.append(table.num_rows)
        yield table.num_rows
    write_text_atomic(folder / "_manifest.json", json.dumps({"rows": rows}))


RUN_STAMP = "_run.json"
OUTPUTS = ("recommendations.parquet", "menus.parquet")
# the finished run a new run replaces, kept while the new one is under way
PREVIOUS_RUN = "_previous"

# --------------------------------------------------------------------------------------------------------------
# Runs: one output folder per run, resumable because every block's outputs are written atomically and a re-run
# skips the blocks whose outputs exist (the stamp wipes them when the bundle, the inputs or the settings change).


@dataclass(frozen=True)
class Run:
    """A scoring run: its input block partitions, its two output folders and the bundle it scores with."""

    bundle_dir: Path
    blocks_dir: Path
    rec_dir: Path
    menu_dir: Path
    block_rows: tuple[int, ...]
    top_k: int

    def block_path(self, i: int) -> Path:
        return self.blocks_dir / _part(i)

    def finished(self, i: int) -> bool:
        return (self.rec_dir / _part(i)).exists() and (self.menu_dir / _part(i)).exists()

    def todo(self) -> list[int]:
        return [i for i in range(len(self.block_rows)) if not self.finished(i)]


def input_fingerprint(ws: Workspace) -> list[list[object]]:
    """Path, size and modification time of every input file a scored run reads: a run stamped with another
    fingerprint was made from other inputs (also what `tdr score --changed` restamps)."""
    return [
        [str(f.relative_to(ws.root)), f.stat().st_size, f.stat().st_mtime_ns]
        for files in _sources(ws)
        for f in files
    ]


def run_complete(out: Path) -> bool:
    """Whether OUT holds a finished run: every block its partitions list has both part files."""
    manifest = out / "_blocks" / "_manifest.json"
    if not (out / RUN_STAMP).exists() or not manifest.exists():
        return False
    blocks = len(json.loads(manifest.read_text(encoding="utf-8"))["rows"])
    return all((out / folder / _part(i)).exists() for folder in OUTPUTS for i in range(blocks))


def _set_aside(out: Path) -> None:
    """Move a finished run's outputs and stamp to OUT/_previous, which the service answers from until the run
    replacing it is finished (see `finish_run`), instead of planning every menu live meanwhile."""
    staging = out / f".{PREVIOUS_RUN}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    write_text_atomic(staging / RUN_STAMP, (out / RUN_STAMP).read_text(encoding="utf-8"))
    for folder in OUTPUTS:
        os.replace(out / folder, staging / folder)
    shutil.rmtree(out / PREVIOUS_RUN, ignore_errors=True)
    os.replace(staging, out / PREVIOUS_RUN)


def finish_run(run: Run) -> None:
    """Every block is scored: the outputs the run replaced are no longer needed."""
    shutil.rmtree(run.menu_dir.parent / PREVIOUS_RUN, ignore_errors=True)


def start_run(ws: Workspace, out: Path, top_k: int, block_size: int, bundle_dir: Path) -> Run:
    """Stamp OUT for the bundle in `bundle_dir`, the inputs and the settings, wiping the outputs and partitions of a
    different run."""
    run = Run(
        bundle_dir=bundle_dir,
        blocks_dir=out / "_blocks",
        rec_dir=out / OUTPUTS[0],
        menu_dir=out / OUTPUTS[1],
        block_rows=(),
        top_k=top_k,
    )
    stamp = json.dumps(
        {
            "bundle": read_manifest(bundle_dir).version,
            "block_size": block_size,
            "top_k": top_k,
            "inputs": input_fingerprint(ws),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    stamp_path = out / RUN_STAMP
    if stamp_path.exists() and stamp_path.read_text(encoding="utf-8") != stamp:
        if run_complete(out):
            _set_aside(out)
        for folder in (run.rec_dir, run.menu_dir, run.blocks_dir):
            shutil.rmtree(folder, ignore_errors=True)
    for folder in (run.rec_dir, run.menu_dir, run.blocks_dir):
        folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stamp_path, stamp)
    return run


def run_blocks(ws: Workspace, run: Run, block_size: int) -> Iterator[tuple[int, int]]:
    """(block, teachers) for every block partition of the run, each as soon as it is on disk: from the
    manifest when a previous attempt finished them, else written now (the same files: blocks are
    deterministic)."""
    manifest = run.blocks_dir / "_manifest.json"
    if manifest.exists():
        yield from enumerate(json.loads(manifest.read_text(encoding="utf-8"))["rows"])
    else:
        yield from enumerate(write_blocks(ws, run.blocks_dir, block_size))


def prepare_run(ws: Workspace, out: Path, top_k: int, block_size: int, bundle_dir: Path | None = None) -> Run:
    """start_run, then every block partition written before returning (for engines that read them all); the
    bundle is `bundle_dir` (default: the current one), the portraits its own (`recommender.artifacts.paired`)."""
    ws, bundle_dir = paired(ws, bundle_dir)
    run = start_run(ws, out, top_k, block_size, bundle_dir)
    return replace(run, block_rows=tuple(rows for _, rows in run_blocks(ws, run, block_size)))


def score_block(art: Artifacts, run: Run, i: int, table: pa.Table | None = None) -> int:
    """Score block i of the run (read from its partition unless given) and write its two part files; returns
    the number of teachers scored."""
    table = pq.read_table(run.block_path(i)) if table is None else table
    recs, menus = score_batch(read_block(table), art, run.top_k)
    write_parquet_atomic(menus, run.menu_dir / _part(i))
    write_parquet_atomic(recs, run.rec_dir / _part(i))
    return table.num_rows


# the worker process's bundle, loaded once by _start_worker
_worker_art: list[Artifacts] = []


def _start_worker(bundle_dir: Path) -> None:
    # one thread per worker: the workers share the cores, BLAS and OpenMP pools inside them would fight
    threadpool_limits(1)
    _worker_art.append(load(bundle_dir))


def _score_in_worker(run: Run, i: int) -> int:
    return score_block(_worker_art[0], run, i)


def _score_given(block: PortraitBlock, top_k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return score_batch(block, _worker_art[0], top_k)


def score_blocks(
    bundle_dir: Path,
    blocks: list[PortraitBlock],
    top_k: int,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """`score_batch` of each block with the bundle in `bundle_dir`, in order: in `workers` processes (default one
    per available core) when there is more than one block, else in this process. `progress(done, total)`
    follows the teachers scored."""
    if not blocks:
        return []
    total, done = sum(len(b.rows) for b in blocks), 0
    n_workers = min(max(1, workers or available_cores()), len(blocks))
    results: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    if n_workers <= 1:
        art = load(bundle_dir)
        for block in blocks:
            results.append(score_batch(block, art, top_k))
            done += len(block.rows)
            if progress:
                progress(done, total)
        return results
    with worker_pool(n_workers, _start_worker, (bundle_dir,)) as pool:
        for block, scored in zip(blocks, pool.map(_score_given, blocks, [top_k] * len(blocks)), strict=True):
            results.append(scored)
            done += len(block.rows)
            if progress:
                progress(done, total)
    return results


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def teacher_count(ws: Workspace) -> int:
    """Teachers in the workspace's portraits, from the Parquet footers."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in _sources(ws)[0])


def score_local(
    ws: Workspace,
    out: Path,
    top_k: int,
    block_size: int,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    bundle_dir: Path | None = None,
) -> tuple[Path, Path]:
    """Score every teacher of the workspace block by block into OUT/recommendations.parquet/ and
    OUT/menus.parquet/ (one part file per block, each written atomically). A re-run skips finished blocks, so a
    killed run resumes where it stopped and ends with the same files. The bundle is `bundle_dir` (default: the
    current one), the portraits its own (`recommender.artifacts.paired`).

    `workers` processes (default: one per available core) each load the bundle once and score whole blocks,
    while this process writes the next block partitions; with one worker the blocks are scored in this
    process. `progress(done, total)` follows the finished blocks."""
    ws, bundle_dir = paired(ws, bundle_dir)
    run = start_run(ws, out, top_k, block_size, bundle_dir)
    total, done = teacher_count(ws), 0
    n_workers = max(1, workers or available_cores())
    art: Artifacts | None = None
    pool: ProcessPoolExecutor | None = None
    running: set[Future[int]] = set()

    def report() -> None:
        if progress:
            progress(done, total)

    def count(teachers: Iterable[int]) -> None:
        nonlocal done
        for n in teachers:
            done += n
            report()

    started = False
    try:
        for i, rows in run_blocks(ws, run, block_size):
            if run.finished(i):
                done += rows
                continue
            if not started:
                started = True
                report()  # the blocks a previous attempt finished
            if n_workers == 1:
                art = art or load(run.bundle_dir)
                count([score_block(art, run, i)])
            else:
                # a block is handed out only when a worker is free: an interrupted run leaves at most the blocks
                # then being scored to finish, and none waits in a queue
                pool = pool or worker_pool(n_workers, _start_worker, (run.bundle_dir,))
                while len(running) >= n_workers:
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    count(f.result() for f in finished)
                running.add(pool.submit(_score_in_worker, run, i))
        count(f.result() for f in wait(running).done)
        finish_run(run)
        if not started:
            report()
    finally:
        # on an error or an interrupt the blocks being scored finish their atomic writes, nothing else starts
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return run.rec_dir, run.menu_dir
