"""Daily updates: `tdr train --incremental` refreshes the portraits of the teachers whose inputs changed, and
`tdr score --changed` rescores only the teachers whose portraits changed.

Train: each teacher's input digest (`recommender.digests`) is compared with the one the last build stored;
new or changed teachers get their portraits rebuilt — one block, the stored item calibration and province norms,
the current as-of date, exactly the code path of a full build — and swapped into the portrait files (a streaming
merge), which switch in together with the new digests (`data.workspace.portraits_update`); teachers no longer in
the tables are dropped. The ranker, the course side and the collaborative signals are kept: the new bundle is the
current one's files (hard links) with the new as-of date, so recent records count for the changed teachers. A
full train runs instead when there is no earlier build, when courses, items or the taxonomy changed, or when
drift is detected.

Drift: the population stability index (`digests.psi`) of every competency estimate of the province after the
update against the last full build's histogram (the changed teachers' old estimates taken out, their new ones
put in); above PSI_LIMIT the calibration and norms no longer describe the province, and everything is rebuilt.

Score: each teacher's portrait digest is compared with the one stored beside the output by the last run; the
changed teachers' portraits and records are read in one pass and scored in blocks by the same `score_batch` (in
worker processes when there are several blocks), and each output part holding one of them is rewritten with
their rows swapped in, atomically, so a reader (the service) sees a teacher's old rows or new rows,
never a mix; the run's stamp then names the new bundle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.policy import Policy
from data.reference import load_policy
from data.schema import COMPETENCY_SCORES, RESPONSES, TEACHERS, TRAINING_RECORDS
from data.workspace import Workspace, atomic_write, portraits_update, write_parquet_atomic, write_text_atomic
from features.portrait import Portraits, Tables, as_of, finish_block, measure_block
from models.bundle import MANIFEST, BundleWriter, Manifest, current_bundle_dir, read_manifest
from recommender.artifacts import PORTRAITS as BUNDLE_PORTRAITS
from recommender.artifacts import link_portraits, paired
from recommender.batch import OUTPUTS, RUN_STAMP, input_fingerprint, run_complete, score_blocks
from recommender.config import Settings
from recommender.digests import (
    ESTIMATE_BINS,
    BuildState,
    estimate_histogram,
    input_digests,
    load_state,
    portrait_digests,
    psi,
    save_state,
    shared_digest,
)
from recommender.portraits import dictionary_columns, latest_dates, read_portraits, rows_of
from recommender.scoring import PortraitBlock

log = logging.getLogger(__name__)

# PSI of the province's estimates against the last full build above which everything is rebuilt: 0.1 is the
# usual "no significant shift" bound; a day's refresh of 1 % of the teachers moves it by ~0.001
PSI_LIMIT = 0.1
SCORED_DIGESTS = "_portrait_digests.parquet"


@dataclass(frozen=True)
class Changes:
    changed: np.ndarray  # sorted ids of new teachers and teachers whose digest differs
    removed: np.ndarray  # sorted ids no longer present


def compare(before: pd.DataFrame, after: pd.DataFrame) -> Changes:
    """Which teachers' digests (teacher_id, digest) are new or differ, and which disappeared."""
    both = after.merge(before, on="teacher_id", how="outer", suffixes=("", "_before"), indicator=True)
    differs = (both["_merge"] == "left_only") | (
        (both["_merge"] == "both") & (both["digest"] != both["digest_before"])
    )
    changed = np.sort(both.loc[differs, "teacher_id"].astype(str).to_numpy())
    removed = np.sort(both.loc[both["_merge"] == "right_only", "teacher_id"].astype(str).to_numpy())
    return Changes(changed, removed)


# ---------------------------------------------------------------------------------------------------------
# Portraits


def _sorted_by_teacher(table: pa.Table) -> pa.Table:
    # arrow's sort is stable: a teacher's rows keep their order (competencies in taxonomy order)
    return table.take(pc.sort_indices(table, [("teacher_id", "ascending")]))


def merge_rows(path: Path, new: pd.DataFrame, drop: np.ndarray, hist_column: str | None = None) -> np.ndarray:
    """Replace, in the teacher-sorted Parquet file `path`, the rows of the `drop` teachers by `new`'s rows,
    streaming the file batch by batch (new rows go in teacher order), and replace the file atomically. Returns
    the histogram (`estimate_histogram`) of the dropped rows' `hist_column` (zeros when None)."""
    source = pq.ParquetFile(path)
    old_schema = source.schema_arrow
    fresh = pa.Table.from_pandas(new, preserve_index=False) if len(new.columns) else old_schema.empty_table()
    schema = pa.unify_schemas(
        [old_schema.remove_metadata(), fresh.schema.remove_metadata()], promote_options="permissive"
    )
    schema = pa.schema([schema.field(n) for n in old_schema.names]).with_metadata(old_schema.metadata)
    fresh = _sorted_by_teacher(fresh.select(old_schema.names).cast(schema))
    fresh_ids = np.asarray(fresh.column("teacher_id").to_pylist(), dtype=object)
    drop_set = pa.array(np.asarray(drop).astype(str), type=pa.string())
    dropped = np.zeros(len(ESTIMATE_BINS) - 1)

    def write(tmp: Path) -> None:
        nonlocal dropped
        at = 0
        with pq.ParquetWriter(tmp, schema, use_dictionary=dictionary_columns(schema)) as out:
            for batch in source.iter_batches(batch_size=1 << 16):
                part = pa.Table.from_batches([batch]).cast(schema)
                gone = pc.is_in(part.column("teacher_id"), value_set=drop_set)
                if hist_column is not None:
                    old = part.filter(gone).column(hist_column).to_numpy(zero_copy_only=False)
                    dropped = dropped + estimate_histogram(old.astype(np.float64))
                kept = part.filter(pc.invert(gone))
                last = part.column("teacher_id")[-1].as_py()
                end = int(np.searchsorted(fresh_ids, last, side="right"))
                if end > at:
                    kept = _sorted_by_teacher(pa.concat_tables([kept, fresh.slice(at, end - at)]))
                    at = end
                if kept.num_rows:
                    out.write_table(kept)
            if at < fresh.num_rows:
                out.write_table(fresh.slice(at))

    atomic_write(path, write)
    return dropped


def refresh_portraits(
    ws: Workspace,
    folder: Path,
    base: Tables,
    state: BuildState,
    changes: Changes,
    policy: Policy,
    asof: pd.Timestamp,
    target_level: float,
) -> np.ndarray:
    """Rebuild the changed teachers' portraits against the stored calibration and norms and swap them into the
    portrait files in `folder` (a `portraits_update`'s); returns the province's histogram of estimates
    afterwards."""
    ids = changes.changed
    block = replace(
        base,
        teachers=rows_of(ws, TEACHERS, ids),
        records=rows_of(ws, TRAINING_RECORDS, ids),
        responses=rows_of(ws, RESPONSES, ids),
        scores=rows_of(ws, COMPETENCY_SCORES, ids),
    )
    m = measure_block(block, state.calibration, policy, asof)
    fresh = finish_block(m, state.norms, policy, asof, base.taxonomy, target_level)
    drop = np.union1d(changes.changed, changes.removed)
    merge_rows(folder / "teachers.parquet", fresh.teachers, drop)
    old = merge_rows(folder / "competencies.parquet", fresh.competencies, drop, "estimate")
    return state.estimate_hist - old + estimate_histogram(fresh.competencies["estimate"].to_numpy(np.float64))


class _Drift(Exception):
    """The refreshed estimates drifted beyond PSI_LIMIT from the last full build's: a full train runs instead."""

    def __init__(self, shift: float) -> None:
        super().__init__(f"estimate PSI {shift:.3f}")
        self.shift = shift


@dataclass(frozen=True)
class IncrementalResult:
    bundle: Path
    full: bool  # a full train ran (and why, in `reason`)
    reason: str
    changed: int = 0
    removed: int = 0
    estimate_psi: float = 0.0


def _digest_of(frame: pd.DataFrame, extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _model_files(manifest: Manifest) -> dict[str, str]:
    """A bundle's files and their hashes, but its portraits."""
    return {name: h for name, h in manifest.files.items() if Path(name).parts[0] != BUNDLE_PORTRAITS}


def _bundle_like(
    ws: Workspace, source: Path, portraits: Path, data_hash: str, asof: pd.Timestamp, info: dict[str, object]
) -> Path:
    """A new bundle holding `source`'s models (hard links: nothing is copied), the portrait set `portraits` and a
    new as-of date; CURRENT switches to it, which the service picks up without a restart (api.deps.EngineHolder)."""
    manifest = read_manifest(source)
    writer = BundleWriter(ws.bundles_dir, data_hash)
    try:
        link_portraits(writer, portraits)
        for name in _model_files(manifest):
            target = writer.path(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source / name, target)
        writer.metrics.update(manifest.metrics)
        writer.info.update(manifest.info | {"asof": asof.isoformat(), "incremental": info})
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def train_incremental(
    ws: Workspace,
    settings: Settings,
    full_train: Callable[[], Path],
    step: Callable[[str], None] = log.info,
) -> IncrementalResult:
    """Refresh what changed (module docstring); `full_train` runs instead where nothing can be kept."""
    loaded = load_state(ws)
    if loaded is None or not (ws.bundles_dir / "CURRENT").exists():
        return IncrementalResult(full_train(), True, "no earlier build")
    state, before = loaded
    shared = shared_digest(ws)
    if shared != state.shared_digest:
        return IncrementalResult(full_train(), True, "courses, items or taxonomy changed")
    step("变化检测 finding changed teachers")
    after = input_digests(ws)
    changes = compare(before, after)
    source = current_bundle_dir(ws.bundles_dir)
    courses = pd.read_parquet(source / "courses.parquet")
    base = Tables(
        teachers=pd.DataFrame(),
        courses=courses.assign(competencies=courses["competencies_used"]),
        records=pd.DataFrame(),
        items=ws.read_table("items") if ws.has_table("items") else pd.DataFrame(),
        responses=pd.DataFrame(),
        scores=pd.DataFrame(),
        taxonomy=pd.read_parquet(source / "taxonomy.parquet"),
    )
    asof = as_of(latest_dates(ws))
    try:
        # the refreshed portrait files and the new digests are switched in together, or not at all
        with portraits_update(ws) as folder:
            hist = state.estimate_hist
            if len(changes.changed) or len(changes.removed):
                step(f"画像更新 refreshing {len(changes.changed)} portraits")
                policy = load_policy(settings.policy)
                if len(changes.changed):
                    hist = refresh_portraits(
                        ws, folder, base, state, changes, policy, asof, settings.target_level
                    )
                else:  # only removals: drop their rows
                    drop = changes.removed
                    hist = hist - merge_rows(
                        folder / "competencies.parquet", pd.DataFrame(), drop, "estimate"
                    )
                    merge_rows(folder / "teachers.parquet", pd.DataFrame(), drop)
            shift = psi(state.estimate_hist, hist)
            if shift > PSI_LIMIT:
                raise _Drift(shift)  # leaves the portraits in force as they are
            # the reference stays the last full build's: drift accumulates over days until it triggers a rebuild
            save_state(folder, state, after)
            info = {
                "base": read_manifest(source).version,
                "changed": int(len(changes.changed)),
                "removed": int(len(changes.removed)),
                "estimate_psi": round(shift, 5),
            }
            # the bundle holding the refreshed set is in force first, then the set becomes WS/portraits
            bundle = _bundle_like(ws, source, folder, _digest_of(after, shared)[:16], asof, info)
    except _Drift as drift:
        step(f"漂移 drift: PSI {drift.shift:.3f} > {PSI_LIMIT}, full train")
        return IncrementalResult(
            full_train(), True, f"drift (estimate PSI {drift.shift:.3f})", estimate_psi=drift.shift
        )
    return IncrementalResult(bundle, False, "incremental", len(changes.changed), len(changes.removed), shift)


# ---------------------------------------------------------------------------------------------------------
# Scores


def stamp_scored(ws: Workspace, out: Path) -> None:
    """Store the portrait digests the output in OUT was scored from (after every `tdr score` run)."""
    write_parquet_atomic(portrait_digests(ws.portraits_dir), out / SCORED_DIGESTS)


def _part_bounds(folder: Path) -> list[tuple[str, str, Path]]:
    bounds = []
    for path in sorted(folder.glob("part-*.parquet")):
        ids = pq.read_table(path, columns=["teacher_id"]).column(0)
        if len(ids):
            bounds.append((pc.min(ids).as_py(), pc.max(ids).as_py(), path))
    return bounds


def _home_parts(ids: np.ndarray, bounds: list[tuple[str, str, Path]]) -> dict[str, list[str]]:
    """Part file name -> the teachers whose rows belong there: the first part whose last teacher is not before
    theirs (teacher order is kept across parts), else the last part."""
    highs = [hi for _, hi, _ in bounds]
    home: dict[str, list[str]] = {}
    for teacher in ids:
        at = min(int(np.searchsorted(highs, teacher, side="left")), len(bounds) - 1)
        home.setdefault(bounds[at][2].name, []).append(str(teacher))
    return home


def _swap(folder: Path, new: pd.DataFrame, drop: np.ndarray, order: list[str]) -> None:
    """Replace the `drop` teachers' rows in the part files of `folder` by `new`'s rows, each touched part
    rewritten atomically in `order` (in Arrow: at 1 % of a million teachers every part is touched)."""
    bounds = _part_bounds(folder)
    home = _home_parts(drop, bounds)
    drop_set = pa.array(np.asarray(drop).astype(str), type=pa.string())
    new_ids = new["teacher_id"].astype(str)
    for name, ids in home.items():
        path = folder / name
        old = pq.read_table(path)
        gone = pc.is_in(old.column("teacher_id").cast(pa.string()), value_set=drop_set)
        mine = new[new_ids.isin(ids)]
        fresh = (
            pa.Table.from_pandas(mine, schema=old.schema, preserve_index=False)
            if len(mine)
            else old.schema.empty_table()
        )
        part = pa.concat_tables([old.filter(pc.invert(gone)), fresh])
        part = part.take(pc.sort_indices(part, [(c, "ascending") for c in order]))
        atomic_write(path, partial(pq.write_table, part))


def can_score_changed(ws: Workspace, out: Path, bundle_dir: Path | None = None) -> bool:
    """True when OUT holds a finished run whose bundle had the same model files as `bundle_dir` (default: the
    current one); an incremental train keeps them, a full one does not, and then every teacher must be
    rescored."""
    stamp_path = out / RUN_STAMP
    if not ((out / SCORED_DIGESTS).exists() and run_complete(out)):
        return False
    scored = ws.bundles_dir / str(json.loads(stamp_path.read_text(encoding="utf-8")).get("bundle"))
    if not (scored / MANIFEST).exists():
        return False
    now = read_manifest(bundle_dir or current_bundle_dir(ws.bundles_dir))
    return _model_files(read_manifest(scored)) == _model_files(now)


def split_blocks(portraits: Portraits, records: pd.DataFrame, block_size: int) -> list[PortraitBlock]:
    """The teachers of `portraits` (sorted by teacher_id) in blocks of `block_size`, each with its competency
    and training-record rows."""
    teachers = portraits.teachers.sort_values("teacher_id", kind="stable").reset_index(drop=True)
    blocks = []
    for start in range(0, len(teachers), block_size):
        rows = teachers.iloc[start : start + block_size].reset_index(drop=True)
        mine = set(rows["teacher_id"])
        blocks.append(
            PortraitBlock(
                rows,
                portraits.competencies[portraits.competencies["teacher_id"].isin(mine)],
                records[records["teacher_id"].isin(mine)],
            )
        )
    return blocks


def score_changed(
    ws: Workspace,
    out: Path,
    block_size: int,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    bundle_dir: Path | None = None,
) -> int:
    """Rescore the teachers whose portraits changed since OUT was scored and swap their rows in (module
    docstring; OUT must pass `can_score_changed`); returns how many were rescored. The bundle is `bundle_dir`
    (default: the current one), the portraits its own (`recommender.artifacts.paired`)."""
    ws, bundle = paired(ws, bundle_dir)
    if not can_score_changed(ws, out, bundle):
        raise FileNotFoundError(f"{out} holds no finished `tdr score` run of these models to update")
    stamp_path, stored = out / RUN_STAMP, out / SCORED_DIGESTS
    rec_dir, menu_dir = (out / name for name in OUTPUTS)
    stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    top_k = int(stamp["top_k"])
    now = portrait_digests(ws.portraits_dir)
    changes = compare(pd.read_parquet(stored), now)
    ids = changes.changed
    # one read of the changed teachers' portraits and records (a read per block would scan the province's
    # portrait and record files once per block), then blocks of `block_size` scored side by side
    blocks = split_blocks(read_portraits(ws, ids), rows_of(ws, TRAINING_RECORDS, ids), block_size)
    scored = score_blocks(bundle, blocks, top_k, workers, progress)
    recs, menus = [r for r, _ in scored], [m for _, m in scored]
    drop = np.union1d(changes.changed, changes.removed)
    if len(drop):
        empty = pd.DataFrame({"teacher_id": pd.Series([], dtype=object)})
        _swap(rec_dir, pd.concat(recs, ignore_index=True) if recs else empty, drop, ["teacher_id", "rank"])
        _swap(
            menu_dir,
            pd.concat(menus, ignore_index=True) if menus else empty,
            drop,
            ["teacher_id", "position"],
        )
    stamp.update({"bundle": read_manifest(bundle).version, "inputs": input_fingerprint(ws)})
    write_text_atomic(stamp_path, json.dumps(stamp, sort_keys=True, ensure_ascii=False))
    write_parquet_atomic(now, stored)
    return int(len(ids))
