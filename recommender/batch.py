"""Batch scoring (批量评分): `score_batch(block, artifacts)` — one pure function that the CLI, the service (for
one teacher) and every engine call, so all paths give the same answer.
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
from features.pairs import TeacherContext, comp_entries, group_starts, sparse_at
from models.bundle import current_bundle_dir, read_manifest
from recommender.artifacts import Artifacts, load
from recommender.explain import FORMAT_ZH, reasons
from recommender.menu import plan_menus
from recommender.ranking import features_for, teacher_inputs
from recommender.retrieval import retrieve
from recommender.workers import worker_pool

CANDIDATES = 200
MENU_POOL = 40
# teachers whose pairs are featurised and scored together: their feature matrix (~12 MB) is reused from the heap
# block after block, where a block's (~100 MB) would be mapped afresh and page-faulted in every time
SCORE_TEACHERS = 250
REC_COLUMNS = ["teacher_id", "rank", "course_id", "score", "reason"]
MENU_COLUMNS = ["teacher_id", "position", "course_id", "hours", "reason", "status", "message"]


@dataclass(frozen=True)
class PortraitBlock:
    """A block of teachers to score: portrait rows, their competencies (long) and their training records."""

    rows: pd.DataFrame
    competencies: pd.DataFrame
    records: pd.DataFrame


def _facts(
    block: PortraitBlock, art: Artifacts, ctx: TeacherContext, row: np.ndarray, course: np.ndarray
) -> pd.DataFrame:
    """The numbers a reason may cite, for (row, course) pairs: the course competency where the teacher's need is
    largest, peer uptake, satisfaction, mandatory topic owed, format and level."""
    cat, attrs, stats, c = art.catalogue, art.attrs, art.signals.stats, ctx
    # the course's competency (lowest code position on a tie) where gap + shortfall from peers is largest
    pair, code, _ = comp_entries(cat.course_comp, course)
    at = row[pair]
    need = c.gaps[at, code] + np.maximum(c.peer_mean[at, code] - c.estimate[at, code], 0)
    k = np.zeros(len(row), dtype=np.int64)
    has = np.zeros(len(row), dtype=bool)
    if len(pair):
        first = group_starts(pair)
        top = np.repeat(np.maximum.reduceat(need, first), np.diff(np.r_[first, len(pair)]))
        hit = np.flatnonzero(need == top)
        hit = hit[group_starts(pair[hit])]
        k[pair[hit]] = code[hit]
        has[pair[hit]] = np.isfinite(need[hit])
    names = dict(zip(art.taxonomy["code"], art.taxonomy["name"], strict=True))
    comp_names = np.array([names.get(x, x) for x in cat.comp_codes], dtype=object)
    rows, comps = block.rows, block.competencies
    # is_prior per (teacher, competency) of the block; a competency without an estimate reads as a prior
    prior = np.ones((len(rows), len(cat.comp_codes)), dtype=bool)
    t = pd.Index(rows["teacher_id"]).get_indexer(comps["teacher_id"])
    code = pd.Index(cat.comp_codes).get_indexer(comps["competency"])
    known = (t >= 0) & (code >= 0)
    prior[t[known], code[known]] = comps["is_prior"].astype(object).fillna(True).to_numpy(dtype=bool)[known]
    g = c.group_idx[row]
    gg = np.maximum(g, 0)
    enrol = np.where(g >= 0, sparse_at(stats.group_enrol, gg, course), 0.0)
    done = np.where(g >= 0, sparse_at(stats.group_complete, gg, course), 0.0)
    topic = attrs.mandatory_idx[course]
    topics = np.asarray([*attrs.topics, ""], dtype=object)
    owed = np.zeros(len(row), dtype=bool)
    owed[topic >= 0] = c.missing_mandatory[row[topic >= 0], topic[topic >= 0]]
    fmt = attrs.format_idx[course]
    taste = c.taste[row, np.maximum(fmt, 0)]
    return pd.DataFrame(
        {
            "comp_name": np.where(has, comp_names[k], np.array(None, dtype=object)),
            "estimate": np.where(has, c.estimate[row, k], np.nan),
            "peer_mean": np.where(has, c.peer_mean[row, k], np.nan),
            "is_prior": prior[row, k],
            "mandatory_missing": np.where(owed, topics[topic], None),
            "peer_completions": done.astype(np.int64),
            "peer_completion_rate": np.where(enrol >= 5, done / np.maximum(enrol, 1), np.nan),
            "satisfaction": stats.satisfaction[course],
            "n_ratings": stats.n_rated[course].astype(np.int64),
            "format_zh": np.array([FORMAT_ZH.get(f, "") for f in art.courses["format"]], dtype=object)[
                course
            ],
            "format_share": np.where(fmt >= 0, taste, np.nan),
            "level": attrs.level[course],
            "similar_course_title": None,
        }
    )


def _objects(values: np.ndarray) -> pd.Series:
    """A column of Python objects kept as such: pandas would otherwise convert text to its string dtype, a
    copy per column that a block of 100 000 rows pays for nothing."""
    return pd.Series(values, dtype=object)


@dataclass(frozen=True)
class Ranked:
    """A block's ranked courses: the top-k with reasons, and the menu pool (top MENU_POOL plus every course of a
    mandatory topic the teacher owes) in the columns `recommender.menu` plans from."""

    recs: pd.DataFrame
    pool: pd.DataFrame


def _spans(row: np.ndarray, teachers: int) -> Iterator[tuple[int, int, int, int]]:
    """(first pair, end pair, first teacher, end teacher) of consecutive groups of `teachers` teachers, over
    pairs sorted by teacher row."""
    if not len(row):
        return
    n = int(row[-1]) + 1
    for r0 in range(0, n, teachers):
        r1 = min(n, r0 + teachers)
        yield int(np.searchsorted(row, r0)), int(np.searchsorted(row, r1)), r0, r1


def rank_block(block: PortraitBlock, art: Artifacts, top_k: int = 20) -> Ranked:
    """Retrieve, featurise and rank the catalogue for every teacher of the block."""
    cat = art.catalogue
    tb, ctx = teacher_inputs(
        block.rows, block.competencies, block.records, cat, art.signals.stats, art.attrs.topics, art.asof
    )
    topic_courses = np.zeros((len(art.attrs.topics), cat.n_courses), dtype=bool)
    has_topic = art.attrs.mandatory_idx >= 0
    topic_courses[art.attrs.mandatory_idx[has_topic], np.flatnonzero(has_topic)] = True
    must = (ctx.missing_mandatory.astype(np.float32) @ topic_courses.astype(np.float32)) > 0
    cands = retrieve(tb, cat, art.index, CANDIDATES, include=must)
    score = np.empty(len(cands.row))
    for lo, hi, r0, r1 in _spans(cands.row, SCORE_TEACHERS):
        X = features_for(cands.span(lo, hi, r0), ctx.rows(r0, r1), cat, art.attrs, art.signals)
        score[lo:hi] = art.ranker.predict(X)
    order = np.lexsort((cands.course, -score, cands.row))
    row, course, score = cands.row[order], cands.course[order], score[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row, side="left") + 1
    top = rank <= top_k
    in_pool = (rank <= MENU_POOL) | must[row, course]
    facts_mask = top | in_pool
    facts = _facts(block, art, ctx, row[facts_mask], course[facts_mask])
    why = pd.Series(reasons(facts).to_numpy(), index=np.flatnonzero(facts_mask))
    ids = tb.teacher_ids
    recs = pd.DataFrame(
        {
            "teacher_id": _objects(ids[row[top]]),
            "rank": rank[top].astype(np.int64),
            "course_id": _objects(cat.course_ids[course[top]]),
            "score": score[top],
            "reason": _objects(why.reindex(np.flatnonzero(top)).to_numpy()),
        }
    )
    # the bundle's courses are the catalogue's, in its order: a pool row's course is a row position
    courses, at = art.courses, course[in_pool]
    pool_cands = pd.DataFrame(
        {
            "teacher_id": _objects(ids[row[in_pool]]),
            "course_id": _objects(cat.course_ids[at]),
            "score": score[in_pool],
            "hours": courses["hours"].to_numpy(dtype=np.float64)[at],
            "format": _objects(courses["format"].to_numpy(dtype=object)[at]),
            "practical": courses["practical"].fillna(False).to_numpy(dtype=bool)[at],
            "mandatory_topic": _objects(courses["mandatory_topic"].to_numpy(dtype=object)[at]),
            "competencies": _objects(courses["competencies_used"].to_numpy(dtype=object)[at]),
            "prerequisites": _objects(courses["prerequisites"].to_numpy(dtype=object)[at]),
            "cost_yuan": courses["cost_yuan"].fillna(0.0).to_numpy(dtype=np.float64)[at],
            "reason": _objects(why.reindex(np.flatnonzero(in_pool)).to_numpy()),
        }
    )
    return Ranked(recs[REC_COLUMNS], pool_cands)


def menu_teachers(rows: pd.DataFrame) -> pd.DataFrame:
    """The teacher columns `plan_menus` reads, from portrait rows."""
    completed = (
        rows["completed_course_ids"] if "completed_course_ids" in rows else pd.Series([[]] * len(rows))
    )
    return pd.DataFrame(
        {
            "teacher_id": rows["teacher_id"].to_numpy(),
            "stage": rows["stage"].to_numpy(),
            "missing_mandatory": rows["missing_mandatory"].to_numpy(),
            "completed": completed.to_numpy(),
        }
    )


def score_batch(block: PortraitBlock, art: Artifacts, top_k: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-k recommendations with reasons and the policy-compliant menu for every teacher of the block.

    Menus: one row per chosen course (position, course_id, hours, reason); a teacher the policy leaves without
    a menu gets one row with no course and the stated reason. `status` and `message` say whether a rule had to
    be relaxed (and which)."""
    ranked = rank_block(block, art, top_k)
    menus, statuses = plan_menus(ranked.pool, menu_teachers(block.rows), art.policy)
    menus = menus.merge(
        ranked.pool[["teacher_id", "course_id", "reason"]], on=["teacher_id", "course_id"], how="left"
    )
    empty = statuses[~statuses["teacher_id"].isin(menus["teacher_id"])]
    stated = pd.DataFrame(
        {
            "teacher_id": empty["teacher_id"].to_numpy(),
            "position": 0,
            "course_id": None,
            "hours": 0.0,
            "reason": empty["message"].to_numpy(),
        }
    )
    menus = pd.concat([menus, stated], ignore_index=True) if len(stated) else menus
    menus = menus.merge(statuses[["teacher_id", "status", "message"]], on="teacher_id", how="left")
    menus = menus.sort_values(["teacher_id", "position"], kind="stable").reset_index(drop=True)
    return ranked.recs, menus[MENU_COLUMNS]


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


def _fingerprint(ws: Workspace) -> list[list[object]]:
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


def start_run(ws: Workspace, out: Path, top_k: int, block_size: int) -> Run:
    """Stamp OUT for this bundle, inputs and settings, wiping the outputs and partitions of a different run."""
    bundle_dir = current_bundle_dir(ws.bundles_dir)
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
            "inputs": _fingerprint(ws),
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


def prepare_run(ws: Workspace, out: Path, top_k: int, block_size: int) -> Run:
    """start_run, then every block partition written before returning (for engines that read them all)."""
    run = start_run(ws, out, top_k, block_size)
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
) -> tuple[Path, Path]:
    """Score every teacher of the workspace block by block into OUT/recommendations.parquet/ and
    OUT/menus.parquet/ (one part file per block, each written atomically). A re-run skips finished blocks, so a
    killed run resumes where it stopped and ends with the same files.

    `workers` processes (default: one per available core) each load the bundle once and score whole blocks,
    while this process writes the next block partitions; with one worker the blocks are scored in this
    process. `progress(done, total)` follows the finished blocks."""
    run = start_run(ws, out, top_k, block_size)
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
