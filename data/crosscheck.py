"""Checks across rows (duplicate keys) and across tables (references), run by DuckDB over a table's staged rows.

Ingestion (data/ingest.py) checks each chunk of a table on its own and stages every row — its typed values, its
raw cells, where it came from and the reasons found so far — as Parquet. Here the staged rows are joined with the
keys of the tables they reference (accepted in this ingest, or kept from the workspace) and ranked by key, with
memory bounded by DuckDB's limit (it spills to disk), never by the table's size. Accepted rows go to the
version's Parquet parts in file order; rejected ones, with every reason, to the rejects CSV.

The sentences here are the same a row checked in memory would get: a reference ``{label} {id} 在…中不存在``,
a duplicate ``与第 N 行的…重复，保留首行``; the first valid row of a key wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.schema import TABLES, TableSpec

# staged meta columns (a contract column never starts with "__")
FILE, ROW, ORD, COLUMN, REASON, RAW_LINE = "__file", "__row", "__ord", "__column", "__reason", "__raw_line"
RAW = "__raw__"  # + the position of a raw cell among the table's raw columns
# DuckDB's working memory for the joins, the window and the sorts (beyond it, it spills to the staging folder): it
# sets the ingest's peak (1 M teachers, 65 M responses: 2 GB peaks at 2.4 GB resident; 512 MB ran out of memory
# in the duplicate-key window over the responses)
MEMORY = "2GB"
# rows per Parquet part of a table, and per batch written
PART_ROWS = 2_000_000
BATCH_ROWS = 65_536


@dataclass(frozen=True)
class Target:
    """A referenced table as the check sees it: its accepted keys' Parquet files (None: the table is neither in
    this ingest nor in the workspace), and the keys seen only on its rejected rows."""

    files: list[Path] | None
    rejected_keys: Path | None


@dataclass(frozen=True)
class Outcome:
    accepted: int
    rejected: int


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _connect(spill: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that works within MEMORY and spills beyond it to ``spill``; every query that needs
    an order says so (ORDER BY), so DuckDB need not keep insertion order, which lets its operators spill."""
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        config={
            "memory_limit": MEMORY,
            "temp_directory": str(spill),
            "threads": 2,
            "preserve_insertion_order": False,
        }
    )
    con.execute("SET enable_progress_bar = false")
    return con


def crosscheck(
    spec: TableSpec,
    staged: Path,
    schema: pa.Schema,
    raw_names: list[str],
    targets: Callable[[str], Target],
    out_table: Path,
    out_rejected_keys: Path,
    write_rejects: Callable[[pd.DataFrame, bool], None],
    spill: Path,
) -> Outcome:
    """Judge the staged rows of ``spec`` (one Parquet file, rows in file order): write the accepted ones as
    parts under ``out_table`` in ``schema``, hand the rejected ones to ``write_rejects(frame, first)`` batch by
    batch, and write the keys seen only on rejected rows to ``out_rejected_keys`` (single-column keys).

    DuckDB judges a narrow projection (order, origin, keys, references, reasons so far); the wide rows are then
    read once more in order and split by that verdict, so no sort ever carries a whole row."""
    con = _connect(spill)
    try:
        con.execute(f"CREATE VIEW staged AS SELECT * FROM read_parquet({_lit(str(staged))})")
        refs, joins = [], []
        for i, col in enumerate(c for c in spec.columns if c.references):
            assert col.references is not None
            reason, join = _reference(i, col.name, col.label, col.references, targets(col.references))
            refs.append((col.name, f"__ref{i}", reason))
            joins.append(join)
        ok = " AND ".join([f"{REASON} IS NULL", *(f"{name} IS NULL" for _, name, _ in refs)])
        keys = ", ".join(q(k) for k in spec.key)
        narrow = ", ".join(
            f"s.{q(c)}"
            for c in dict.fromkeys([ORD, FILE, ROW, COLUMN, REASON, *spec.key, *(r[0] for r in refs)])
        )
        ref_select = "".join(f", {reason} AS {name}" for _, name, reason in refs)
        con.execute(
            f"""CREATE TEMP TABLE verdict AS
            WITH j AS (SELECT {narrow}{ref_select} FROM staged s {" ".join(joins)}),
                 v AS (SELECT *, ({ok}) AS __ok FROM j)
            SELECT *,
                   CASE WHEN __ok THEN row_number() OVER w END AS __rank,
                   CASE WHEN __ok THEN first_value({FILE}) OVER w END AS __first_file,
                   CASE WHEN __ok THEN first_value({ROW}) OVER w END AS __first_row
            FROM v WINDOW w AS (PARTITION BY __ok, {keys} ORDER BY {ORD})"""
        )
        if len(spec.key) == 1:
            key = q(spec.key[0])
            con.execute(
                f"""COPY (SELECT DISTINCT {key} AS k FROM verdict WHERE __rank IS DISTINCT FROM 1 AND {key} IS NOT NULL
                    EXCEPT SELECT {key} FROM verdict WHERE __rank = 1) TO {_lit(str(out_rejected_keys))}
                    (FORMAT parquet)"""
            )
        rejected = con.execute(
            f"SELECT {ORD} FROM verdict WHERE __rank IS DISTINCT FROM 1 ORDER BY {ORD}"
        ).fetchnumpy()[ORD]
        rejected = np.asarray(rejected, dtype=np.int64)
        reasons = _reasons(con, spec, refs)
        with_line = con.execute(f"SELECT count(*) FROM staged WHERE {RAW_LINE} <> ''").fetchall()[0][0]
        accepted = _split(
            staged, rejected, reasons, schema, raw_names, bool(with_line), out_table, write_rejects
        )
        return Outcome(accepted, len(rejected))
    finally:
        con.close()


def _reasons(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, refs: list[tuple[str, str, str]]
) -> Iterator[pa.RecordBatch]:
    """The rejected rows' columns and reasons (every one, in check order), in file order."""
    where = f"CASE WHEN __first_file = {FILE} THEN '第 ' || __first_row || ' 行' ELSE ' ' || __first_file || ' 第 ' || __first_row || ' 行' END"
    dup = (
        f"CASE WHEN __rank > 1 THEN '与' || {where} || {_lit('的' + spec.key_label() + '重复，保留首行')} END"
    )
    columns = f"nullif({COLUMN}, '')"
    for column, name, _ in refs:
        columns += (
            f", CASE WHEN {name} IS NOT NULL AND NOT list_contains(string_split(coalesce({COLUMN}, ''), '；'), "
            f"{_lit(column)}) THEN {_lit(column)} END"
        )
    columns += f", CASE WHEN __rank > 1 THEN {_lit('；'.join(spec.key))} END"
    reasons = ", ".join([REASON, *(name for _, name, _ in refs), dup])
    yield from con.sql(
        f"""SELECT concat_ws('；', {columns}) AS "column", concat_ws('；', {reasons}) AS reason
            FROM verdict WHERE __rank IS DISTINCT FROM 1 ORDER BY {ORD}"""
    ).to_arrow_reader(BATCH_ROWS)


def _split(
    staged: Path,
    rejected: np.ndarray,
    reasons: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    raw_names: list[str],
    with_line: bool,
    out_table: Path,
    write_rejects: Callable[[pd.DataFrame, bool], None],
) -> int:
    """One ordered pass over the staged rows: accepted ones to the table's parts, rejected ones (with their
    reasons, which come in the same order) to the rejects. Returns the accepted count."""
    bare = schema.remove_metadata()
    pending: list[pa.RecordBatch] = []
    first = True
    with _Parts(out_table, schema) as parts:
        # without pre-buffering, which would load the whole staged file at once
        for batch in pq.ParquetFile(staged, pre_buffer=False).iter_batches(BATCH_ROWS):
            ords = batch.column(ORD).to_numpy()
            keep = np.ones(len(ords), dtype=bool)
            if len(ords):
                lo, hi = np.searchsorted(rejected, [ords[0], ords[-1] + 1])
                keep[rejected[lo:hi] - ords[0]] = False
            parts.write(batch.filter(pa.array(keep)).select(bare.names).cast(bare))
            if keep.all():
                continue
            bad = batch.filter(pa.array(~keep))
            why = _take(reasons, pending, bad.num_rows)
            frame = pd.DataFrame(
                {
                    "source_file": bad.column(FILE).to_pandas(),
                    "row_number": bad.column(ROW).to_pandas(),
                    "column": why.column("column").to_pandas(),
                    "reason": why.column("reason").to_pandas(),
                }
            )
            for i, name in enumerate(raw_names):
                frame[name] = bad.column(RAW + str(i)).to_pandas()
            if with_line:
                frame["raw_line"] = bad.column(RAW_LINE).to_pandas()
            write_rejects(frame, first)
            first = False
    if first:
        empty = [
            "source_file",
            "row_number",
            "column",
            "reason",
            *raw_names,
            *(["raw_line"] if with_line else []),
        ]
        write_rejects(pd.DataFrame(columns=empty), True)
    return parts.rows


def _take(reader: Iterator[pa.RecordBatch], pending: list[pa.RecordBatch], n: int) -> pa.Table:
    """The next ``n`` rows of ``reader`` (``pending`` keeps what was read beyond them)."""
    have = sum(b.num_rows for b in pending)
    while have < n:
        batch = next(reader)
        pending.append(batch)
        have += batch.num_rows
    table = pa.Table.from_batches(pending)
    pending[:] = table.slice(n).to_batches()
    return table.slice(0, n)


class _Parts:
    """Parquet parts of PART_ROWS rows under a folder, typed as a schema (a context manager)."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.schema, self.rows, self._in_part, self._part = folder, schema, 0, 0, 0
        self._writer = pq.ParquetWriter(folder / "part-00000.parquet", schema)

    def __enter__(self) -> _Parts:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, rows: pa.RecordBatch) -> None:
        if self._in_part >= PART_ROWS:
            self._writer.close()
            self._part, self._in_part = self._part + 1, 0
            self._writer = pq.ParquetWriter(self.folder / f"part-{self._part:05d}.parquet", self.schema)
        self._writer.write_batch(rows)
        self._in_part += rows.num_rows
        self.rows += rows.num_rows


def _reference(i: int, column: str, label: str, ref: str, target: Target) -> tuple[str, str]:
    """The SQL reason a row gets for its reference in ``column`` (NULL when fine) and the joins it needs."""
    name = TABLES[ref].label
    value = f"s.{q(column)}"
    head = f"{_lit(label + ' ')} || {value} || "
    if target.files is None:
        why = _lit(f" 无法核对：本次未导入{name}，请把{name}文件放入同一文件夹后重新导入")
        return f"CASE WHEN {value} IS NOT NULL THEN {head}{why} END", ""
    key = q(TABLES[ref].key[0])
    files = [str(f) for f in target.files]
    joins = (
        f"LEFT JOIN (SELECT DISTINCT {key} AS k FROM read_parquet({files!r})) k{i} ON {value} = k{i}.k"
        if files
        else f"LEFT JOIN (SELECT NULL::VARCHAR AS k WHERE false) k{i} ON {value} = k{i}.k"
    )
    if target.rejected_keys is not None:
        joins += f" LEFT JOIN read_parquet({_lit(str(target.rejected_keys))}) r{i} ON {value} = r{i}.k"
        bad = f"r{i}.k IS NOT NULL"
    else:
        bad = "false"
    rejected = _lit(f" 在{name}中的行未通过校验（见 rejects/{ref}.csv），请先更正该行")
    absent = _lit(f" 在{name}中不存在，请核对编号，或先在{name}中补录")
    reason = (
        f"CASE WHEN {value} IS NULL OR k{i}.k IS NOT NULL THEN NULL "
        f"WHEN {bad} THEN {head}{rejected} ELSE {head}{absent} END"
    )
    return reason, joins


def write_parts(con: duckdb.DuckDBPyConnection, query: str, schema: pa.Schema, folder: Path) -> int:
    """The rows of ``query`` (in its order) as Parquet parts under ``folder``, typed as ``schema`` (its columns
    picked by name); returns how many."""
    cols = ", ".join(q(n) for n in schema.names)
    bare = schema.remove_metadata()
    with _Parts(folder, schema) as parts:
        for batch in con.sql(f"SELECT {cols} FROM ({query})").to_arrow_reader(BATCH_ROWS):
            parts.write(batch.cast(bare))
    return parts.rows


@dataclass(frozen=True)
class Merged:
    rows: int  # in the merged table
    new: int  # keys the table did not have
    changed: int  # keys whose row differs from the table's


def _in_file_order(con: duckdb.DuckDBPyConnection, view: str, files: list[Path]) -> int:
    """Create ``view``: the rows of the Parquet ``files`` (taken in name order) with ``__pos``, their 1-based
    position in that order, from the footers' row counts (a window numbering the rows would hold them all in
    memory: at a million teachers, the whole training-records table). Returns the rows' count."""
    ordered = sorted(str(f) for f in files)
    counts = np.array([pq.ParquetFile(f).metadata.num_rows for f in ordered], dtype=np.int64)
    con.register(f"{view}_starts", pa.table({"file": ordered, "start": np.cumsum(counts) - counts}))
    con.execute(
        f"""CREATE VIEW {view} AS SELECT r.* EXCLUDE (filename, file_row_number),
            s.start + r.file_row_number + 1 AS __pos
            FROM read_parquet({ordered!r}, union_by_name = true, filename = true, file_row_number = true) r
            JOIN {view}_starts s ON r.filename = s.file"""
    )
    return int(counts.sum())


def merge(
    spec: TableSpec,
    previous: list[Path],
    day: list[Path],
    schema: pa.Schema,
    out_table: Path,
    changed_teachers: Path | None,
    spill: Path,
) -> Merged:
    """A day's accepted rows merged into the table by key: a row of a key already there replaces it in place,
    the others follow in the day's order; merging the same rows again changes nothing. When the table has a
    teacher_id, the teachers of new or changed rows are written to ``changed_teachers``."""
    con = _connect(spill)
    try:
        last = _in_file_order(con, "p", previous)
        _in_file_order(con, "d", day)
        on = " AND ".join(f"p.{q(k)} IS NOT DISTINCT FROM d.{q(k)}" for k in spec.key)
        contract = ", ".join(q(c.name) for c in spec.columns)
        rows = write_parts(
            con,
            f"""SELECT * FROM (
                    SELECT p.* FROM p ANTI JOIN d ON {on}
                    UNION ALL BY NAME
                    SELECT d.* REPLACE (coalesce(p.__pos, {last} + d.__pos) AS __pos) FROM d LEFT JOIN p ON {on}
                ) ORDER BY __pos""",
            schema,
            out_table,
        )
        con.execute(f"CREATE TEMP TABLE fresh AS SELECT {contract} FROM d EXCEPT SELECT {contract} FROM p")
        new = con.execute(f"SELECT count(*) FROM d ANTI JOIN p ON {on}").fetchall()[0][0]
        fresh = con.execute("SELECT count(*) FROM fresh").fetchall()[0][0]
        if changed_teachers is not None:
            con.execute(
                f"COPY (SELECT DISTINCT teacher_id FROM fresh WHERE teacher_id IS NOT NULL) "
                f"TO {_lit(str(changed_teachers))} (FORMAT parquet)"
            )
        return Merged(rows, int(new), int(fresh) - int(new))
    finally:
        con.close()
