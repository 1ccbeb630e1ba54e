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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.schema import TABLES, TableSpec

# staged meta columns (a contract column never starts with "__")
FILE, ROW, ORD, COLUMN, REASON, RAW_LINE = "__file", "__row", "__ord", "__column", "__reason", "__raw_line"
RAW = "__raw__"  # + the position of a raw cell among the table's raw columns
# DuckDB's working memory for the joins and the sort (beyond it, it spills to the staging folder): it sets the
# ingest's peak (50 000 teachers: 1 GB here peaks at 1.3 GB resident, 256 MB at 0.7 GB for +40 % CPU)
MEMORY = "512MB"
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
    """Judge the staged rows of ``spec`` (one Parquet file): write the accepted ones as parts under
    ``out_table`` in ``schema``, hand the rejected ones to ``write_rejects(frame, first)`` batch by batch, and
    write the keys seen only on rejected rows to ``out_rejected_keys`` (single-column keys)."""
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": MEMORY, "temp_directory": str(spill), "threads": 2})
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"CREATE VIEW staged AS SELECT * FROM read_parquet({_lit(str(staged))})")
        refs, joins = [], []
        for i, col in enumerate(c for c in spec.columns if c.references):
            assert col.references is not None
            reason, join = _reference(i, col.name, col.label, col.references, targets(col.references))
            refs.append((col.name, f"__ref{i}", reason))
            joins.append(join)
        ref_names = [r[1] for r in refs]
        ok = " AND ".join([f"{REASON} IS NULL", *(f"{r} IS NULL" for r in ref_names)])
        keys = ", ".join(q(k) for k in spec.key)
        where = f"CASE WHEN __first_file = {FILE} THEN '第 ' || __first_row || ' 行' ELSE ' ' || __first_file || ' 第 ' || __first_row || ' 行' END"
        dup = f"CASE WHEN __rank > 1 THEN '与' || {where} || {_lit('的' + spec.key_label() + '重复，保留首行')} END"
        ref_select = "".join(f", {reason} AS {name}" for _, name, reason in refs)
        con.execute(
            f"""CREATE TEMP TABLE judged AS
            WITH j AS (SELECT s.*{ref_select} FROM staged s {" ".join(joins)}),
                 v AS (SELECT *, ({ok}) AS __ok FROM j)
            SELECT *,
                   CASE WHEN __ok THEN row_number() OVER w END AS __rank,
                   CASE WHEN __ok THEN first_value({FILE}) OVER w END AS __first_file,
                   CASE WHEN __ok THEN first_value({ROW}) OVER w END AS __first_row
            FROM v WINDOW w AS (PARTITION BY __ok, {keys} ORDER BY {ORD})"""
        )
        accepted = write_parts(
            con, f"SELECT * FROM judged WHERE __rank = 1 ORDER BY {ORD}", schema, out_table
        )
        rejected = _write_rejected(con, spec, refs, dup, raw_names, write_rejects)
        if len(spec.key) == 1:
            key = q(spec.key[0])
            con.execute(
                f"""COPY (SELECT DISTINCT {key} AS k FROM judged WHERE __rank IS DISTINCT FROM 1 AND {key} IS NOT NULL
                    EXCEPT SELECT {key} FROM judged WHERE __rank = 1) TO {_lit(str(out_rejected_keys))}
                    (FORMAT parquet)"""
            )
        return Outcome(accepted, rejected)
    finally:
        con.close()


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
    """The rows of ``query`` (in its order) as Parquet parts of PART_ROWS rows under ``folder``, typed as
    ``schema`` (its columns picked by name); returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    cols = ", ".join(q(n) for n in schema.names)
    reader = con.sql(f"SELECT {cols} FROM ({query})").to_arrow_reader(BATCH_ROWS)
    bare = schema.remove_metadata()
    part, in_part, total = 0, 0, 0
    writer = pq.ParquetWriter(folder / f"part-{part:05d}.parquet", schema)
    try:
        for batch in reader:
            if in_part >= PART_ROWS:
                writer.close()
                part, in_part = part + 1, 0
                writer = pq.ParquetWriter(folder / f"part-{part:05d}.parquet", schema)
            writer.write_batch(batch.cast(bare))
            in_part += batch.num_rows
            total += batch.num_rows
    finally:
        writer.close()
    return total


@dataclass(frozen=True)
class Merged:
    rows: int  # in the merged table
    new: int  # keys the table did not have
    changed: int  # keys whose row differs from the table's


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
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": MEMORY, "temp_directory": str(spill), "threads": 2})
    try:
        con.execute("SET enable_progress_bar = false")
        opts = "union_by_name = true, filename = true, file_row_number = true"
        con.execute(
            f"""CREATE VIEW p AS SELECT * EXCLUDE (filename, file_row_number),
                row_number() OVER (ORDER BY filename, file_row_number) AS __pos
                FROM read_parquet({[str(f) for f in previous]!r}, {opts})"""
        )
        con.execute(
            f"""CREATE VIEW d AS SELECT * EXCLUDE (filename, file_row_number),
                row_number() OVER (ORDER BY filename, file_row_number) AS __pos
                FROM read_parquet({[str(f) for f in day]!r}, {opts})"""
        )
        on = " AND ".join(f"p.{q(k)} IS NOT DISTINCT FROM d.{q(k)}" for k in spec.key)
        contract = ", ".join(q(c.name) for c in spec.columns)
        last = con.execute("SELECT coalesce(max(__pos), 0) FROM p").fetchall()[0][0]
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


def _write_rejected(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    refs: list[tuple[str, str, str]],
    dup: str,
    raw_names: list[str],
    write: Callable[[pd.DataFrame, bool], None],
) -> int:
    """The rejected rows in file order: file, row, the columns and reasons (every one, in check order), raw
    cells, and the raw line when some row of the table has one."""
    columns = f"nullif({COLUMN}, '')"
    for column, name, _ in refs:
        columns += (
            f", CASE WHEN {name} IS NOT NULL AND NOT list_contains(string_split(coalesce({COLUMN}, ''), '；'), "
            f"{_lit(column)}) THEN {_lit(column)} END"
        )
    columns += f", CASE WHEN __rank > 1 THEN {_lit('；'.join(spec.key))} END"
    reasons = ", ".join([REASON, *(name for _, name, _ in refs), dup])
    raw = ", ".join(f"{q(RAW + str(i))} AS {q(n)}" for i, n in enumerate(raw_names))
    with_line = con.execute(f"SELECT count(*) FROM judged WHERE {RAW_LINE} <> ''").fetchall()[0][0]
    line = f", {RAW_LINE} AS raw_line" if with_line else ""
    reader = con.sql(
        f"""SELECT {FILE} AS source_file, {ROW} AS row_number, concat_ws('；', {columns}) AS "column",
                   concat_ws('；', {reasons}) AS reason{", " + raw if raw else ""}{line}
            FROM judged WHERE __rank IS DISTINCT FROM 1 ORDER BY {ORD}"""
    ).to_arrow_reader(BATCH_ROWS)
    total, first = 0, True
    for batch in reader:
        write(batch.to_pandas(), first)
        first = False
        total += batch.num_rows
    if first:
        write(reader.schema.empty_table().to_pandas(), True)
    return total
