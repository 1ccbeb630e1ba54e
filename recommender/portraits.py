"""A province's portraits (`tdr train`'s first step), built in blocks of teachers the way batch scoring reads
them (`data.stream`): memory is bounded by a block, not by the province.

1. Calibration: the items and the scale link are fitted on the responses and scores of a sample of teachers,
   read in one streaming pass over those two tables.
2. First pass, block by block: each teacher's measured competencies and training history (`measure_block`),
   kept in a spill folder; the `Population` sums of every block add up to the province's `Norms`.
3. Second pass: each block's portraits read against the norms (`finish_block`), written as part files and then
   joined into WS/portraits/teachers.parquet and competencies.parquet, which switch in together with the build
   state and input digests (`data.workspace.portraits_update`).

The same functions build a small province in memory (`features.portrait.build_portraits`): one block gives
what any number of blocks give.
"""

from __future__ import annotations

import logging
import operator
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import reduce
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from data.policy import Policy
from data.schema import COMPETENCY_SCORES, RESPONSES, TRAINING_RECORDS, TableSpec
from data.stream import Cursor, batches, contract_schema, parquet_files, source_schema, teacher_slices
from data.workspace import Workspace, atomic_write, portraits_update
from features.diagnostics import Calibration, calibration_sample
from features.portrait import (
    DATED_COLUMNS,
    Measured,
    Norms,
    Population,
    Portraits,
    Tables,
    calibrate_on,
    finish_block,
    measure_block,
    norms,
    population,
)
from recommender.batch import available_cores
from recommender.digests import BuildState, estimate_histogram, input_digests, save_state, shared_digest
from recommender.feedback import with_events
from recommender.workers import worker_pool

log = logging.getLogger(__name__)
T = TypeVar("T")

# teachers per block: with two workers the build peaks at 2.7 GB (4.7 GB at 50 000, hardly faster)
PORTRAIT_BLOCK = 20_000
STREAMED = (TRAINING_RECORDS, RESPONSES, COMPETENCY_SCORES)


def latest_dates(ws: Workspace) -> list[pd.Timestamp | None]:
    """The latest date of each of the workspace's DATED_COLUMNS (see `features.portrait.as_of`), read by DuckDB
    without loading the tables."""
    con = duckdb.connect()
    out: list[pd.Timestamp | None] = []
    for table, columns in DATED_COLUMNS.items():
        if not ws.has_table(table):
            continue
        for column in columns:
            row = con.execute(
                f'SELECT max("{column}") FROM read_parquet($path)', {"path": str(ws.table_path(table))}
            ).fetchone()
            out.append(pd.Timestamp(row[0]) if row and row[0] is not None else None)
    con.close()
    return out


def _files_and_schema(ws: Workspace, spec: TableSpec) -> tuple[list[Path], pa.Schema]:
    files = parquet_files(ws.table_path(spec.name)) if ws.has_table(spec.name) else []
    return files, source_schema(files, empty=contract_schema(spec))


def _frame(table: pa.Table, schema: pa.Schema) -> pd.DataFrame:
    """Rows read from a stream as pd.read_parquet would give them (the source's pandas metadata)."""
    return table.replace_schema_metadata(schema.metadata).to_pandas()


def rows_of(ws: Workspace, spec: TableSpec, teacher_ids: np.ndarray) -> pd.DataFrame:
    """The rows of table `spec` that belong to the given teachers, read in one streaming pass."""
    value_set = pa.array(np.asarray(teacher_ids).astype(str), type=pa.string())
    files, schema = _files_and_schema(ws, spec)
    parts = [b.filter(pc.is_in(b.column("teacher_id"), value_set=value_set)) for b in batches(files, schema)]
    return _frame(pa.Table.from_batches(parts, schema=schema.remove_metadata()), schema)


def sample_tables(ws: Workspace, base: Tables, sample: np.ndarray) -> Tables:
    """`base` with the responses and scores of the `sample` teachers, read in one streaming pass each."""
    return replace(
        base, responses=rows_of(ws, RESPONSES, sample), scores=rows_of(ws, COMPETENCY_SCORES, sample)
    )


def teacher_blocks(
    ws: Workspace, base: Tables, block_size: int, events: pd.DataFrame | None = None
) -> Iterator[Tables]:
    """The workspace's teachers in blocks (sorted by teacher_id), each with its rows of the streamed tables
    (rows of teachers the teachers table lacks are skipped) and `base`'s courses, items and taxonomy; the
    enrolled / completed `events` of the block's teachers count as training records (recommender.feedback)."""
    t_files = parquet_files(ws.table_path("teachers"))
    t_schema = source_schema(t_files)
    sources = {spec.name: _files_and_schema(ws, spec) for spec in STREAMED}
    cursors = {name: Cursor(files, schema) for name, (files, schema) in sources.items()}
    for rows in teacher_slices(t_files, t_schema, block_size):
        last = rows.column("teacher_id")[-1].as_py()
        part = {name: _frame(cursors[name].upto(last), sources[name][1]) for name in cursors}
        teachers = _frame(rows, t_schema)
        records = part["training_records"]
        if events is not None and len(events):
            mine = events[events["teacher_id"].isin(set(teachers["teacher_id"]))]
            records = with_events(records, mine, base.courses)
        yield replace(
            base,
            teachers=teachers,
            records=records,
            responses=part["responses"],
            scores=part["competency_scores"],
        )


@dataclass(frozen=True)
class _Spill:
    """Pass one's output of a block, kept on disk until the norms are known."""

    folder: Path

    def path(self, i: int, name: str) -> Path:
        return self.folder / f"{name}-{i:05d}.pkl"

    def put(self, i: int, m: Measured) -> None:
        for name in ("teachers", "measured", "history"):
            getattr(m, name).to_pickle(self.path(i, name))

    def part(self, i: int, name: str) -> Path:
        """A finished block's portraits (`teachers` or `competencies`), joined at the end."""
        return self.folder / f"{name}-{i:05d}.parquet"

    def take(self, i: int) -> Measured:
        frames = {name: pd.read_pickle(self.path(i, name)) for name in ("teachers", "measured", "history")}
        for name in frames:
            self.path(i, name).unlink()
        return Measured(**frames)


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns of a portrait file that Parquet should dictionary-encode: all but the floating-point ones.
    Estimates, standard errors, peer means and gaps are continuous, so a dictionary of them overflows and falls
    back on every page, and trying costs half the time of writing and of reading the file (the competencies of
    100 000 teachers, 6.3 M rows: write 1.43 -> 0.76 CPU s, read 1.88 -> 0.90, 159 -> 166 MB)."""
    return [f.name for f in schema if not pa.types.is_floating(f.type)]


def _join_parts(parts: list[Path], target: Path) -> None:
    """One Parquet file from the part files (a column all blank in one block takes the others' type),
    replacing `target` atomically."""
    schemas = [pq.read_schema(p) for p in parts]
    schema = pa.unify_schemas(schemas, promote_options="permissive").with_metadata(schemas[0].metadata)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema, use_dictionary=dictionary_columns(schema)) as writer:
            for p in parts:
                writer.write_table(pq.read_table(p).cast(schema))

    atomic_write(target, write)


@dataclass(frozen=True)
class _Job:
    """What every block of a build shares, handed to each worker process once."""

    cal: Calibration
    policy: Policy
    asof: pd.Timestamp
    taxonomy: pd.DataFrame
    target_level: float
    spill: _Spill


_worker_job: list[_Job] = []
# (workers, initializer, initargs) -> an executor whose workers each run initializer(*initargs) once
ExecutorFactory = Callable[[int, Callable[..., None], tuple[Any, ...]], Executor]


def _start_worker(job: _Job) -> None:
    # one thread per worker: the workers share the cores, BLAS pools inside them would fight
    threadpool_limits(1)
    _worker_job[:] = [job]  # a Ray worker process may serve several builds, one after another


def _measure(i: int, block: Tables) -> Population:
    job = _worker_job[0]
    m = measure_block(block, job.cal, job.policy, job.asof)
    job.spill.put(i, m)
    return population(m, job.policy)


def _finish(i: int, nm: Norms) -> tuple[int, np.ndarray]:
    """Write block i's portraits; its number of teachers and histogram of estimates (the drift reference)."""
    job = _worker_job[0]
    p = finish_block(job.spill.take(i), nm, job.policy, job.asof, job.taxonomy, job.target_level)
    for name, frame in (("teachers", p.teachers), ("competencies", p.competencies)):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, job.spill.part(i, name), use_dictionary=dictionary_columns(table.schema))
    return len(p.teachers), estimate_histogram(p.competencies["estimate"].to_numpy(dtype=np.float64))


def _bounded(
    pool: Executor, calls: Iterable[tuple[Callable[..., T], tuple[Any, ...]]], ahead: int
) -> Iterator[T]:
    """Results of the calls, in order, run by the pool with at most `ahead` calls submitted and not yet
    collected (the blocks in flight bound memory)."""
    pending: deque[Future[T]] = deque()
    for fn, args in calls:
        pending.append(pool.submit(fn, *args))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def build_workspace_portraits(
    ws: Workspace,
    base: Tables,
    policy: Policy,
    asof: pd.Timestamp,
    target_level: float,
    seed: int = 0,
    block_size: int = PORTRAIT_BLOCK,
    workers: int | None = None,
    executor: ExecutorFactory | None = None,
    events: pd.DataFrame | None = None,
    into: Path | None = None,
) -> int:
    """Build and write the workspace's portraits (see the module docstring) with `workers` processes (default:
    one per core), made by `executor` (default: `recommender.workers.worker_pool`; `recommender.ray_engine.ray_executors` gives
    Ray tasks); returns the number of teachers. They are written into `into` (the caller's `portraits_update`
    set, which it switches in) or, by default, into a set of their own switched in at once.

    `base` holds the courses (with every course's competencies, inferred ones included), items and taxonomy;
    its other tables are not read. Teachers, training records, responses and scores are streamed."""
    # read first: the digests name the inputs these portraits are built from (recommender.digests)
    digests, shared = input_digests(ws), shared_digest(ws)
    ids = pq.read_table(ws.table_path("teachers"), columns=["teacher_id"]).column(0)
    sample = calibration_sample(ids.to_numpy(zero_copy_only=False), seed)
    cal = calibrate_on(sample_tables(ws, base, sample), sample, asof, seed)
    log.info("portraits: calibrated on %d teachers", len(sample))
    codes = base.taxonomy["code"].astype(str).tolist()
    n_workers = workers or available_cores()
    with tempfile.TemporaryDirectory(prefix=".portraits-", dir=ws.root) as tmp:
        job = _Job(cal, policy, asof, base.taxonomy, target_level, _Spill(Path(tmp)))
        with (executor or worker_pool)(n_workers, _start_worker, (job,)) as pool:
            blocks = ((_measure, (i, b)) for i, b in enumerate(teacher_blocks(ws, base, block_size, events)))
            pops = list(_bounded(pool, blocks, n_workers))
            if not pops:
                raise ValueError(f"workspace {ws.root} has no teachers")
            log.info("portraits: measured %d blocks", len(pops))
            nm = norms(reduce(operator.add, pops), codes)
            finished = [(_finish, (i, nm)) for i in range(len(pops))]
            counts, hists = zip(*_bounded(pool, finished, n_workers), strict=True)
            n_teachers = sum(counts)
        with nullcontext(into) if into else portraits_update(ws) as folder:
            for name in ("teachers", "competencies"):
                _join_parts([job.spill.part(i, name) for i in range(len(pops))], folder / f"{name}.parquet")
            save_state(folder, BuildState(cal, nm, shared, asof, np.sum(hists, axis=0)), digests)
    log.info("portraits: %d teachers written", n_teachers)
    return n_teachers


def read_portraits(ws: Workspace, teacher_ids: np.ndarray) -> Portraits:
    """The portraits of the given teachers (both tables filtered while reading)."""
    value_set = pa.array(np.asarray(teacher_ids).astype(str), type=pa.string())

    def read(name: str) -> pd.DataFrame:
        path = ws.portraits_dir / f"{name}.parquet"
        return pq.read_table(path, filters=pc.field("teacher_id").isin(value_set)).to_pandas()

    return Portraits(read("teachers"), read("competencies"))
