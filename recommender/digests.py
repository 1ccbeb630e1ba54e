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

import pickle
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from data.stream import parquet_files
from data.workspace import Workspace, atomic_write, write_parquet_atomic
from features.diagnostics import Calibration
from features.portrait import Norms

PER_TEACHER = ("teachers", "training_records", "responses", "competency_scores", "events")
SHARED = ("courses", "items", "taxonomy")
DIGESTS_FILE = "input_digests.parquet"
STATE_FILE = "build_state.pkl"
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


def _teacher_digests(con: duckdb.DuckDBPyConnection, sources: dict[str, list[str]]) -> pd.DataFrame:
    per_table = [
        f"SELECT teacher_id::VARCHAR AS teacher_id, '{name}' AS tbl, count(*) AS n, bit_xor(hash(t)) AS x, "
        f"sum(hash(t)::HUGEINT) AS s FROM read_parquet({files!r}) t GROUP BY teacher_id"
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


def save_state(folder: Path, state: BuildState, digests: pd.DataFrame) -> None:
    """Write the build state and the input digests into the portrait folder `folder` (a `portraits_update`'s)."""
    atomic_write(folder / STATE_FILE, lambda tmp: tmp.write_bytes(pickle.dumps(state)))
    write_parquet_atomic(digests, folder / DIGESTS_FILE)


def load_state(ws: Workspace) -> tuple[BuildState, pd.DataFrame] | None:
    """The state and input digests of the last portrait build, or None when a build left none."""
    state, digests = ws.portraits_dir / STATE_FILE, ws.portraits_dir / DIGESTS_FILE
    if not (state.exists() and digests.exists()):
        return None
    return pickle.loads(state.read_bytes()), pd.read_parquet(digests)
