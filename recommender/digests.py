"""What a portrait build leaves beside the portraits (WS/portraits/) so that a daily update can refresh only the
teachers whose inputs changed (`recommender.incremental`):

- ``input_digests.parquet``: one digest per teacher of their rows in every per-teacher input table (teachers,
  training records, responses, competency scores, events), computed by DuckDB from the table contents alone —
  an order-independent combination of row hashes — so it does not matter what wrote the tables or in which
  row order;
- ``build_state.pkl``: the item calibration and the province norms the portraits were read against, the digest
  of the shared tables (courses, items, taxonomy) they were built with, the as-of date, and the histogram of
  every competency estimate (the reference that drift is measured against).

The same DuckDB hash gives each teacher's *portrait* digest (`portrait_digests`), which `tdr score --changed`
compares with the one stored beside its output. Digests from another DuckDB version differ everywhere, which
only makes the next update refresh everybody.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.ingest import CHANGED_TEACHERS
from data.stream import parquet_files
from data.workspace import MANIFEST, VERSIONS, Workspace, atomic_write
from features.diagnostics import Calibration
from features.portrait import Norms

PER_TEACHER = ("teachers", "training_records", "responses", "competency_scores", "events")
SHARED = ("courses", "items", "taxonomy")
DIGESTS_FILE = "input_digests.parquet"
STATE_FILE = "build_state.pkl"
# the workspace version the stored digests were computed from, in the digests file's Parquet metadata
VERSION_KEY = b"tdr.version"
# competency estimates live on 0-100; 20 equal bins, the usual resolution of a population stability index
ESTIMATE_BINS = np.linspace(0.0, 100.0, 21)


@dataclass(frozen=True)
class BuildState:
    """The parts of a full portrait build that an incremental one keeps."""

    calibration: Calibration
    norms: Norms
    shared_digest: str
    asof: pd.Timestamp
    estimate_hist: np.ndarray  # counts of every competency estimate in ESTIMATE_BINS


def _files(ws: Workspace, name: str) -> list[str]:
    return [str(p) for p in parquet_files(ws.table_path(name))] if ws.has_table(name) else []


def _teacher_digests(
    con: duckdb.DuckDBPyConnection, sources: dict[str, list[str]], only: str | None = None
) -> pd.DataFrame:
    """Digests of every teacher, or of the teachers in the registered relation `only` (one teacher_id column)."""
    where = f"WHERE teacher_id::VARCHAR IN (SELECT teacher_id FROM {only})" if only else ""
    per_table = [
        f"SELECT teacher_id::VARCHAR AS teacher_id, '{name}' AS tbl, count(*) AS n, bit_xor(hash(t)) AS x, "
        f"sum(hash(t)::HUGEINT) AS s FROM read_parquet({files!r}) t {where} GROUP BY teacher_id"
        for name, files in sources.items()
        if files
    ]
    sql = (
        "SELECT teacher_id, bit_xor(hash(tbl, n, x, s::VARCHAR)) AS digest "
        f"FROM ({' UNION ALL '.join(per_table)}) GROUP BY teacher_id ORDER BY teacher_id"
    )
    return con.execute(sql).df()


def input_digests(ws: Workspace) -> pd.DataFrame:
    """teacher_id, digest for every teacher with a row in any per-teacher input table, sorted by teacher_id."""
    con = duckdb.connect()
    try:
        return _teacher_digests(con, {name: _files(ws, name) for name in PER_TEACHER})
    finally:
        con.close()


def refreshed_digests(ws: Workspace, before: pd.DataFrame, teachers: np.ndarray) -> pd.DataFrame:
    """`input_digests(ws)` when only `teachers` can differ from the digests `before`: theirs are recomputed
    (DuckDB hashes only their rows), everyone else's kept; a teacher of `teachers` with no row left drops out."""
    con = duckdb.connect()
    try:
        con.register("only_teachers", pa.table({"teacher_id": pa.array(np.asarray(teachers, dtype=str))}))
        sources = {name: _files(ws, name) for name in PER_TEACHER}
        fresh = _teacher_digests(con, sources, only="only_teachers")
    finally:
        con.close()
    kept = before[~before["teacher_id"].isin(set(np.asarray(teachers, dtype=str)))]
    merged = pd.concat([kept, fresh.astype(kept.dtypes.to_dict())], ignore_index=True)
    return merged.sort_values("teacher_id", kind="stable").reset_index(drop=True)


def appended_teachers(ws: Workspace, since: str | None) -> np.ndarray | None:
    """The teachers whose rows the workspace versions after `since`, up to the current (or pinned) one, touched
    — each an `ingest --append` that names them (`data.ingest.CHANGED_TEACHERS`) — sorted; None when that is not
    known: a workspace without versions, `since` unknown or pruned, or a full ingest in between."""
    now = ws.version or ws.current_version()
    if since is None or now is None:
        return None
    names = sorted(p.name for p in (ws.root / VERSIONS).iterdir() if p.name.isdigit())
    if since not in names or now not in names or names.index(now) < names.index(since):
        return None
    touched: list[np.ndarray] = [np.array([], dtype=str)]
    for name in names[names.index(since) + 1 : names.index(now) + 1]:
        folder = ws.root / VERSIONS / name
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("mode") != "append" or not (folder / CHANGED_TEACHERS).exists():
            return None
        ids = pq.read_table(folder / CHANGED_TEACHERS, columns=["teacher_id"]).column(0)
        touched.append(np.asarray(ids.to_pylist(), dtype=str))
    return np.unique(np.concatenate(touched))


def shared_digest(ws: Workspace) -> str:
    """One digest of the courses, items and taxonomy tables' contents (a change refreshes every portrait)."""
    con = duckdb.connect()
    try:
        parts = []
        for name in SHARED:
            files = _files(ws, name)
            if not files:
                parts.append(f"{name}:-")
                continue
            row = con.execute(
                f"SELECT count(*), bit_xor(hash(t)), sum(hash(t)::HUGEINT)::VARCHAR FROM read_parquet({files!r}) t"
            ).fetchone()
            parts.append(f"{name}:{row}")
        return "|".join(parts)
    finally:
        con.close()


def portrait_digests(portraits_dir: Path) -> pd.DataFrame:
    """teacher_id, digest of each teacher's portrait rows (teachers.parquet and competencies.parquet)."""
    con = duckdb.connect()
    try:
        sources = {name: [str(portraits_dir / f"{name}.parquet")] for name in ("teachers", "competencies")}
        return _teacher_digests(con, sources)
    finally:
        con.close()


def estimate_histogram(estimates: np.ndarray) -> np.ndarray:
    values = np.clip(np.asarray(estimates, dtype=np.float64), 0.0, 100.0)
    return np.histogram(values[~np.isnan(values)], bins=ESTIMATE_BINS)[0].astype(np.float64)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins: Σ (c − r) · ln(c / r) of the shares,
    empty bins floored at 1e-4. Below 0.1 is read as no shift, above 0.25 as a major one."""
    r = np.maximum(reference / max(reference.sum(), 1.0), 1e-4)
    c = np.maximum(current / max(current.sum(), 1.0), 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def save_state(ws: Workspace, state: BuildState, digests: pd.DataFrame) -> None:
    """Store the build state and the input digests, the latter marked with the workspace version they describe."""
    ws.portraits_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(ws.portraits_dir / STATE_FILE, lambda tmp: tmp.write_bytes(pickle.dumps(state)))
    table = pa.Table.from_pandas(digests, preserve_index=False)
    version = ws.version or ws.current_version()
    if version is not None:
        table = table.replace_schema_metadata((table.schema.metadata or {}) | {VERSION_KEY: version.encode()})
    atomic_write(ws.portraits_dir / DIGESTS_FILE, lambda tmp: pq.write_table(table, tmp))


def digests_version(ws: Workspace) -> str | None:
    """The workspace version the stored input digests describe (None when unknown)."""
    path = ws.portraits_dir / DIGESTS_FILE
    version = (pq.read_schema(path).metadata or {}).get(VERSION_KEY) if path.exists() else None
    return version.decode() if version else None


def load_state(ws: Workspace) -> tuple[BuildState, pd.DataFrame] | None:
    """The state and input digests of the last portrait build, or None when a build left none."""
    state, digests = ws.portraits_dir / STATE_FILE, ws.portraits_dir / DIGESTS_FILE
    if not (state.exists() and digests.exists()):
        return None
    return pickle.loads(state.read_bytes()), pd.read_parquet(digests)
