"""Ingestion (数据接入): a folder of contract files → validated tables in the workspace, bad rows quarantined.

Every input row ends either in ``WS/tables/<table>.parquet`` or in ``WS/rejects/<table>.csv`` with its file,
row, column and a reason a clerk can act on: rows in = rows accepted + rows rejected, for every table, always.

Streamed, so memory does not grow with the province: files are read in bounded chunks (data.readers), each chunk
checked on its own here (every column, then across columns) and staged; keys and references are then checked by
DuckDB over the staged rows (data.crosscheck). The tables of one ingest form a new workspace version, switched in
whole or not at all (data.workspace); an ingest that would lose data is refused before the switch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.crosscheck import COLUMN, FILE, ORD, RAW, REASON, ROW, Merged, Target, crosscheck, merge
from data.crosscheck import RAW_LINE as STAGED_LINE
from data.readers import (
    RAW_LINE,
    READ_PROBLEM,
    ROW_NUMBER,
    SOURCE_FILE,
    SUPPORTED_SUFFIXES,
    RawSource,
    UnreadableFileError,
    mojibake,
    open_file,
)
from data.schema import (
    FALSE_TOKENS,
    LIST_SPLIT_PATTERN,
    NULL_TOKENS,
    TABLES,
    TAXONOMY,
    TRUE_TOKENS,
    Column,
    TableSpec,
    identify_table,
    map_header,
    normalise_token,
)
from data.stream import parquet_files
from data.workspace import (
    MANIFEST,
    REPORT,
    Workspace,
    begin_version,
    commit_version,
    fault_point,
    ingest_lock,
)

__all__ = [
    "MAX_SHRINK",
    "IngestRefused",
    "IngestReport",
    "SkippedFile",
    "TableCounts",
    "UnreadableFileError",
    "ingest",
]

log = logging.getLogger(__name__)

FROM_XLSX = "_from_xlsx"
# the first columns of WS/rejects/<table>.csv; the row's raw cells follow
REJECT_COLUMNS = ("source_file", "row_number", "column", "reason")
TAXONOMY_COLUMNS = ("code", "name", "domain", "description", "environment", "dimension")
DATE_HINT = "可写作 2023-09-01、2023/9/1、2023年9月1日 或 20230901"
_DATE_PARTS = (
    r"^(?P<year>\d{4})\s*[-/.年]\s*(?P<month>\d{1,2})\s*[-/.月]\s*(?P<day>\d{1,2})\s*日?"
    r"(?:[\sT]+(?P<hour>\d{1,2})[:：](?P<minute>\d{1,2})(?:[:：](?P<second>\d{1,2})(?:\.\d+)?)?)?$"
)
_DATE_COMPACT = r"^(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})$"
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
_YEARS = (1900, 2100)


# ----------------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class TableCounts:
    """What happened to one table: the files it came from and how many rows were accepted and rejected."""

    table: str
    files: tuple[str, ...]
    rows_in: int
    accepted: int
    rejected: int


@dataclass(frozen=True)
class SkippedFile:
    """A file in the folder that holds no contract table (not a data file, or a table nobody recognises)."""

    file: str
    reason: str


@dataclass(frozen=True)
class IngestReport:
    """The outcome of one ``ingest``: per-table counts, the taxonomy in force and the files left aside."""

    source: Path
    workspace: Path
    tables: tuple[TableCounts, ...]
    taxonomy_source: str  # "builtin" or the deployment's file names (this ingest's or the version before's)
    taxonomy_codes: int
    skipped: tuple[SkippedFile, ...] = ()

    def counts(self, table: str) -> TableCounts:
        for t in self.tables:
            if t.table == table:
                return t
        raise KeyError(f"table {table!r} was not ingested from {self.source}")

    @property
    def rejected(self) -> int:
        return sum(t.rejected for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tables": {
                t.table: {
                    "files": list(t.files),
                    "rows_in": t.rows_in,
                    "accepted": t.accepted,
                    "rejected": t.rejected,
                }
                for t in self.tables
            },
            "taxonomy": {"source": self.taxonomy_source, "codes": self.taxonomy_codes},
            "skipped": [{"file": s.file, "reason": s.reason} for s in self.skipped],
        }


# ------------------------------------------------------------------------------------------------ entry point

# a table may shrink by at most this share of its rows in one ingest unless the caller says --replace (a
# truncated export or a wrong file must not silently empty a table; real provinces lose a few % a year)
MAX_SHRINK = 0.1


class IngestRefused(Exception):
    """An ingest that would lose data: nothing was written. ``problems`` name each file (or table) and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("；".join(problems))
        self.problems = problems


def ingest(
    src_dir: str | Path,
    workspace: Workspace | str | Path,
    *,
    builtin_taxonomy: pd.DataFrame | None = None,
    replace: bool = False,
    append: bool = False,
    max_shrink: float = MAX_SHRINK,
) -> IngestReport:
    """Validate every contract file in ``src_dir`` and load it into ``workspace`` as a new version.

    A ``taxonomy`` file in the folder replaces the framework in force (a deployment's own framework ingested
    before, else ``builtin_taxonomy`` when given, else ``data.reference.load_taxonomy()``). Tables absent from the folder are kept as they are, and
    references to them are checked against them. All tables switch together (``data.workspace``); on any error
    the workspace is left as it was. Raises UnreadableFileError if a file cannot be read, IngestRefused if a
    file lacks a required column or holds no data row, or a table would shrink by more than ``max_shrink`` of
    its rows (unless ``replace``).

    With ``append`` the folder holds a day's new or changed rows: each table's accepted rows are merged into the
    workspace's table by key (``data.crosscheck.merge``; the same folder twice changes nothing), and the
    manifest lists the teachers whose rows are new or changed (``changed_teachers.parquet``), for a later
    incremental train or score. Without it, a table in the folder replaces the workspace's.
    """
    src = Path(src_dir)
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    if not src.is_dir():
        raise UnreadableFileError(src, "不是一个文件夹")
    files, skipped = _read_folder(src)
    _refuse_unusable(files)
    with ingest_lock(ws):
        previous = ws.pinned()
        staged = begin_version(ws)
        try:
            out = staged.folder
            ctx = _Context(previous, out, append=append)
            counts: dict[str, Counts] = {}
            if "taxonomy" in files:
                counts["taxonomy"] = _validate(TAXONOMY, files["taxonomy"], ctx)
                taxonomy = _taxonomy_frame(pd.read_parquet(ctx.written("taxonomy")))
                taxonomy_source = "、".join(f.path.name for f in files["taxonomy"])
            elif _deployment_taxonomy(previous) is not None:
                taxonomy = _taxonomy_frame(previous.read_table("taxonomy"))
                taxonomy_source = str(_deployment_taxonomy(previous))
            else:
                taxonomy = _taxonomy_frame(
                    builtin_taxonomy if builtin_taxonomy is not None else _load_builtin_taxonomy()
                )
                taxonomy_source = "builtin"
            _write_table(out / "tables", TAXONOMY, taxonomy)
            ctx.set_taxonomy(taxonomy)
            for name, spec in TABLES.items():
                if name != "taxonomy" and name in files:
                    counts[name] = _validate(spec, files[name], ctx)
                    fault_point("table_written")
            problems = ctx.empty_files
            if not replace:
                new_rows = {
                    n: ctx.merged[n].rows if n in ctx.merged else c.accepted for n, c in counts.items()
                }
                new_rows["taxonomy"] = len(taxonomy)
                problems = problems + _shrinking(previous, new_rows, files, max_shrink)
            if problems:
                raise IngestRefused(problems)
            changed = _changed_teachers(ctx) if append else None
            shutil.rmtree(ctx.work)
            (out / "rejects").mkdir(exist_ok=True)
            kept = _keep_previous(previous, out, {"taxonomy", *counts})
            report = IngestReport(
                source=src.resolve(),
                workspace=ws.root,
                tables=tuple(
                    TableCounts(
                        name, tuple(f.path.name for f in files[name]), c.rows_in, c.accepted, c.rejected
                    )
                    for name, c in counts.items()
                ),
                taxonomy_source=taxonomy_source,
                taxonomy_codes=len(taxonomy),
                skipped=tuple(skipped),
            )
            (out / REPORT).write_text(
                json.dumps(report.to_dict() | {"version": staged.name}, ensure_ascii=False, indent=2),
                encoding="utf-8",
            )
            manifest = _manifest(staged.name, previous, src, out, kept) | {
                "mode": "append" if append else "full",
                "appended": {n: vars(m) for n, m in ctx.merged.items()},
                "changed_teachers": changed,
            }
            (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
            commit_version(ws, staged)
        finally:
            if staged.folder.exists():
                shutil.rmtree(staged.folder, ignore_errors=True)
    for t in report.tables:
        log.info("ingested %s: %d in, %d accepted, %d rejected", t.table, t.rows_in, t.accepted, t.rejected)
    return report


def _deployment_taxonomy(ws: Workspace) -> str | None:
    """The files the workspace's own framework came from; None when it uses the built-in one (or has none)."""
    report = (ws.version_dir or ws.root) / REPORT
    if not ws.has_table("taxonomy") or not report.exists():
        return None
    source = json.loads(report.read_text(encoding="utf-8"))["taxonomy"]["source"]
    return None if source == "builtin" else str(source)


def _refuse_unusable(files: dict[str, list[RawSource]]) -> None:
    """Refuse, before reading any row, a file that cannot yield one: 0 bytes, or a required column missing.
    (A file with a header and no row is found while it is read: ``_Context.empty_files``.)"""
    problems = []
    for name, sources in files.items():
        spec = TABLES[name]
        for source in sources:
            if source.path.stat().st_size == 0:
                problems.append(f"{source.path.name}（{spec.label}）是空文件（0 字节）")
                continue
            missing = [c for c in spec.required if c not in map_header(spec, source.header).values()]
            if missing:
                labels = "、".join(f"「{spec.column(c).label}」（{c}）" for c in missing)
                problems.append(f"{source.path.name}（{spec.label}）缺少必填列 {labels}")
    if problems:
        raise IngestRefused(problems)


def table_rows(ws: Workspace, name: str) -> int:
    """Rows of a workspace table, from the Parquet footers (nothing is read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in ws.table_files(name))


def _shrinking(
    previous: Workspace, new_rows: dict[str, int], files: dict[str, list[RawSource]], max_shrink: float
) -> list[str]:
    """Why each table that would lose more than ``max_shrink`` of its rows must not (empty: none would)."""
    problems = []
    for name, rows in new_rows.items():
        if not previous.has_table(name):
            continue
        before = table_rows(previous, name)
        if before and rows < before * (1 - max_shrink):
            source = "、".join(f.path.name for f in files.get(name, [])) or "内置能力框架"
            problems.append(
                f"{TABLES[name].label}将从 {before:,} 行减少到 {rows:,} 行（减少 {1 - rows / before:.0%}，"
                f"超过允许的 {max_shrink:.0%}），来自 {source}；若确需替换整张表，请加 --replace 重新导入"
            )
    return problems


CHANGED_TEACHERS = "changed_teachers.parquet"


def _changed_teachers(ctx: _Context) -> dict[str, Any]:
    """The teachers an append touched, sorted, as the version's CHANGED_TEACHERS file; its name and count."""
    parts = sorted((ctx.work / "changed").glob("*.parquet"))
    target = ctx.out / CHANGED_TEACHERS
    query = (
        f"SELECT DISTINCT teacher_id FROM read_parquet({[str(p) for p in parts]!r}) ORDER BY teacher_id"
        if parts
        else "SELECT NULL::VARCHAR AS teacher_id WHERE false"
    )
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)")
    finally:
        con.close()
    return {"file": CHANGED_TEACHERS, "count": pq.ParquetFile(target).metadata.num_rows}


def _keep_previous(previous: Workspace, out: Path, written: set[str]) -> list[str]:
    """Carry the previous version's other tables (and their rejects) into the new one, as hard links."""
    kept = []
    for name in TABLES:
        if name in written or not previous.has_table(name):
            continue
        target = out / "tables" / f"{name}.parquet"
        target.mkdir(parents=True)
        for i, part in enumerate(previous.table_files(name)):
            _link(part, target / f"part-{i:05d}.parquet")
        rejects = previous.rejects_dir / f"{name}.csv"
        if rejects.exists():
            _link(rejects, out / "rejects" / rejects.name)
        kept.append(name)
    return kept


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)


def _manifest(name: str, previous: Workspace, src: Path, out: Path, kept: list[str]) -> dict[str, Any]:
    tables = {}
    for folder in sorted((out / "tables").iterdir()):
        parts = parquet_files(folder)
        table = folder.name.removesuffix(".parquet")
        tables[table] = {
            "rows": sum(pq.ParquetFile(p).metadata.num_rows for p in parts),
            "parts": [p.name for p in parts],
            "kept": table in kept,
        }
    return {
        "version": name,
        "previous": previous.version,
        "source": str(src.resolve()),
        "tables": tables,
    }


def _write_table(folder: Path, spec: TableSpec, table: pd.DataFrame) -> None:
    """Parquet with list columns typed list<string> even when all lists are empty (else Arrow says null)."""
    schema = pa.Schema.from_pandas(table, preserve_index=False)
    for col in spec.columns:
        if col.kind == "list":
            i = schema.get_field_index(col.name)
            schema = schema.set(i, pa.field(col.name, pa.list_(pa.string())))
    target = folder / f"{spec.name}.parquet"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    table.to_parquet(target / "part-00000.parquet", index=False, schema=schema)


def _write_rejects(handle: TextIO, rejects: pd.DataFrame, first: bool) -> None:
    """Append a batch of rejected rows to the rejects file ``handle`` (opened as ``_open_rejects`` does), with
    the header when ``first``; cells a spreadsheet would run as formulas are escaped (see ``escape_formulas``)."""
    escape_formulas(rejects).to_csv(handle, index=False, header=first, lineterminator="\r\n")


def _open_rejects(target: Path) -> TextIO:
    """UTF-8 with BOM so that Excel shows the Chinese; CRLF line ends (see ``_write_rejects``) so that a raw value
    holding a bare carriage return is quoted and the file reads back with exactly one line per rejected row."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return open(target, "w", encoding="utf-8-sig", newline="")


# OWASP's CSV-injection rule: a cell starting with one of these is run as a formula by Excel / WPS / LibreOffice
_FORMULA_START = r"^[=+\-@\t\r]"
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would evaluate (``=HYPERLINK(…)``, ``@SUM(…)``, ``-1+2``) get a leading
    ``'``, which shows them as text; plain numbers such as ``-5`` stay as they are, since they run nothing."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype.kind in "iufb":
            continue
        text = out[name].astype("str")
        risky = text.str.contains(_FORMULA_START, regex=True) & ~text.str.fullmatch(_PLAIN_NUMBER)
        if risky.any():
            out[name] = text.where(~risky, "'" + text)
    return out


def _read_folder(src: Path) -> tuple[dict[str, list[RawSource]], list[SkippedFile]]:
    """Open every data file of the folder (by name, so that "first" is stable) and sort them by table; only
    headers are read here."""
    files: dict[str, list[RawSource]] = {}
    skipped: list[SkippedFile] = []
    for path in sorted(p for p in src.iterdir() if p.is_file()):
        if path.name.startswith((".", "~$")):
            continue  # hidden files and Excel's lock files
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            skipped.append(SkippedFile(path.name, "不是 CSV、XLSX 或 Parquet 数据文件"))
            continue
        source = open_file(path)
        table = identify_table(path.stem, source.header)
        if table is None:
            skipped.append(SkippedFile(path.name, "无法从文件名或表头识别是哪张表"))
            continue
        files.setdefault(table, []).append(source)
    return files, skipped


def _load_builtin_taxonomy() -> pd.DataFrame:
    from data.reference import load_taxonomy

    return load_taxonomy()


def _taxonomy_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The taxonomy in force with the six contract columns first (absent ones null), codes as strings."""
    out = df.copy()
    for name in TAXONOMY_COLUMNS:
        out[name] = (
            out[name].astype("str") if name in out else pd.Series(np.nan, index=out.index, dtype="str")
        )
    extras = [c for c in out.columns if c not in TAXONOMY_COLUMNS]
    return out[[*TAXONOMY_COLUMNS, *extras]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------- context


@dataclass
class _Context:
    """What later tables are checked against: the tables written so far in this ingest's staging folder ``out``
    (else the workspace's ``previous`` version), keys seen only on rejected rows, the taxonomy, item maxima."""

    previous: Workspace
    out: Path
    append: bool = False
    max_scores: pd.Series | None = None
    codes: dict[str, str] = field(default_factory=dict)
    empty_files: list[str] = field(default_factory=list)
    merged: dict[str, Merged] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.out / "_work"

    def written(self, name: str) -> Path:
        return self.out / "tables" / f"{name}.parquet"

    def set_taxonomy(self, taxonomy: pd.DataFrame) -> None:
        """Codes match exactly, case- and width-insensitively, or by their unique Chinese name."""
        codes = taxonomy["code"].dropna().astype(str).str.strip()
        names = taxonomy["name"].astype("str").str.strip()
        by_name = pd.Series(codes.to_numpy(), index=names.to_numpy()).loc[lambda s: s.index.notna()]
        by_name = by_name[~by_name.index.duplicated(keep=False)]
        lookup = {normalise_token(str(n)): c for n, c in by_name.items()}
        lookup.update({normalise_token(c): c for c in codes})
        lookup.update({c: c for c in codes})
        self.codes = lookup

    def rejected_keys(self, name: str) -> Path:
        return self.work / "rejected_keys" / f"{name}.parquet"

    def target(self, name: str) -> Target:
        """The accepted rows of ``name``: from this ingest, else the workspace's table, else none."""
        if self.written(name).exists():
            keys = self.rejected_keys(name)
            return Target(parquet_files(self.written(name)), keys if keys.exists() else None)
        if self.previous.has_table(name):
            return Target(self.previous.table_files(name), None)
        return Target(None, None)

    def item_maxima(self) -> pd.Series | None:
        if self.max_scores is None:
            files = self.target("items").files
            if files is not None:
                items = pq.read_table(files, columns=["item_id", "max_score"]).to_pandas()
                self.max_scores = items.set_index("item_id")["max_score"]
        return self.max_scores


# --------------------------------------------------------------------------------------------------- problems


class _Problems:
    """Reasons collected column by column over a whole table, joined per row at the end."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rejected = np.zeros(n, dtype=bool)
        self._parts: list[pd.DataFrame] = []

    def add(self, mask: pd.Series | np.ndarray, column: str, reason: str | pd.Series) -> None:
        """Reject the rows of ``mask``; ``reason`` is one text or a Series indexed by (at least) them."""
        mask = np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return
        texts = (
            np.full(rows.size, reason, dtype=object)
            if isinstance(reason, str)
            else reason.reindex(rows).astype(object).to_numpy()
        )
        order = len(self._parts)
        self._parts.append(pd.DataFrame({"row": rows, "order": order, "column": column, "reason": texts}))
        self.rejected |= mask

    def collect(self) -> pd.DataFrame:
        """One line per rejected row (index: row position) with its columns and reasons joined by ``；``."""
        if not self._parts:
            return pd.DataFrame({"column": pd.Series(dtype=object), "reason": pd.Series(dtype=object)})
        long = pd.concat(self._parts, ignore_index=True).sort_values(["row", "order"], kind="stable")
        several = long["row"].duplicated(keep=False).to_numpy()
        single = long.loc[~several].set_index("row")[["column", "reason"]]
        if not several.any():
            return single
        joined = (
            long.loc[several]
            .groupby("row", sort=True)
            .agg(
                column=("column", lambda c: "；".join(dict.fromkeys(x for x in c if x))),
                reason=("reason", "；".join),
            )
        )
        return pd.concat([single, joined]).sort_index()


# ------------------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Counts:
    rows_in: int
    accepted: int
    rejected: int


def _validate(spec: TableSpec, sources: list[RawSource], ctx: _Context) -> Counts:
    """Check a table chunk by chunk and stage every row (data.crosscheck's columns); then let DuckDB check
    keys and references over the staged rows and write the accepted rows and the rejects."""
    mappings = [map_header(spec, s.header) for s in sources]
    extras: list[str] = []
    for source, mapping in zip(sources, mappings, strict=True):
        extras.extend(h for h in source.header if h not in mapping and h not in extras)
    present = {c for m in mappings for c in m.values()}
    raw_names = [c.name for c in spec.columns if c.name in present] + extras
    schema = _table_schema(spec, extras)
    staged = ctx.work / "staged" / f"{spec.name}.parquet"
    staged.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    n = 0
    try:
        for source, mapping in zip(sources, mappings, strict=True):
            rows = 0
            for chunk in source.frames():
                frame = _conform(spec, chunk, mapping, extras, source.kind == "xlsx")
                checked = _check_chunk(spec, frame, schema, raw_names, ctx, n)
                # staged rows live minutes: written uncompressed and without dictionaries, for speed
                writer = writer or pq.ParquetWriter(
                    staged, checked.schema, compression="none", use_dictionary=False, write_statistics=False
                )
                writer.write_table(checked)
                n += len(frame)
                rows += len(frame)
            if rows == 0:
                ctx.empty_files.append(f"{source.path.name}（{spec.label}）只有表头，没有数据行")
        if writer is None:  # no rows at all: stage an empty table of the right shape
            empty = _conform(spec, _empty_raw(sources[0].header), mappings[0], extras, False)
            writer = pq.ParquetWriter(staged, _check_chunk(spec, empty, schema, raw_names, ctx, 0).schema)
    finally:
        if writer is not None:
            writer.close()
    merging = ctx.append and ctx.previous.has_table(spec.name)
    day = ctx.work / "day" / f"{spec.name}.parquet" if merging else ctx.written(spec.name)
    with _open_rejects(ctx.out / "rejects" / f"{spec.name}.csv") as handle:
        outcome = crosscheck(
            spec,
            staged,
            schema,
            raw_names,
            ctx.target,
            day,
            _ensure_parent(ctx.rejected_keys(spec.name)),
            lambda rejects, first: _write_rejects(handle, rejects, first),
            ctx.work / "duckdb",
        )
    assert outcome.accepted + outcome.rejected == n, f"{spec.name}: rows in != accepted + rejected"
    if ctx.append:
        _append(spec, day, extras, ctx)
    return Counts(n, outcome.accepted, outcome.rejected)


def _append(spec: TableSpec, day: Path, extras: list[str], ctx: _Context) -> None:
    """Merge a day's accepted rows (``day``) into the workspace's table; note the teachers they touch."""
    changed = (
        _ensure_parent(ctx.work / "changed" / f"{spec.name}.parquet")
        if spec.has_column("teacher_id")
        else None
    )
    if not ctx.previous.has_table(spec.name):  # a table the workspace lacked: every row is new
        if changed is not None:
            con = duckdb.connect()
            try:
                con.execute(
                    f"COPY (SELECT DISTINCT teacher_id FROM read_parquet('{day}/*.parquet') "
                    f"WHERE teacher_id IS NOT NULL) TO '{changed}' (FORMAT parquet)"
                )
            finally:
                con.close()
        return
    previous = ctx.previous.table_files(spec.name)
    before = [n for n in pq.read_schema(previous[0]).names if not spec.has_column(n)]
    schema = _table_schema(spec, before + [e for e in extras if e not in before])
    ctx.merged[spec.name] = merge(
        spec, previous, parquet_files(day), schema, ctx.written(spec.name), changed, ctx.work / "duckdb"
    )


def _ensure_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _empty_raw(header: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame({h: pd.Series(dtype="str") for h in header})
    frame[ROW_NUMBER] = pd.Series(dtype="int64")
    for name in (SOURCE_FILE, READ_PROBLEM, RAW_LINE):
        frame[name] = pd.Series(dtype="str")
    return frame


_DTYPES = {"str": "str", "int": "Int64", "float": "float64", "bool": "boolean", "date": "datetime64[us]"}


def _table_schema(spec: TableSpec, extras: list[str]) -> pa.Schema:
    """The Arrow schema of a validated table (with the pandas metadata that gives readers today's dtypes):
    contract columns, then the extra columns as text; list columns list<string>."""
    frame = pd.DataFrame(
        {
            c.name: pd.Series(
                dtype="bool" if c.kind == "bool" and c.default is not None else _DTYPES.get(c.kind, object)
            )
            for c in spec.columns
        }
        | {e: pd.Series(dtype="str") for e in extras}
    )
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    for col in spec.columns:
        if col.kind == "list":
            schema = schema.set(schema.get_field_index(col.name), pa.field(col.name, pa.list_(pa.string())))
    return schema


def _check_chunk(
    spec: TableSpec, frame: pd.DataFrame, schema: pa.Schema, raw_names: list[str], ctx: _Context, start: int
) -> pa.Table:
    """One chunk's rows checked on their own (each column, then across columns), staged with their raw cells,
    origin, order and reasons so far."""
    n = len(frame)
    problems = _Problems(n)
    readable = (frame[READ_PROBLEM] == "").to_numpy(dtype=bool)
    problems.add(~readable, "", frame[READ_PROBLEM])
    values = {col.name: _check_column(col, frame, readable, problems, ctx) for col in spec.columns}
    _check_consistency(spec, values, problems, ctx)
    typed = pd.DataFrame(values)
    for name in schema.names[len(spec.columns) :]:
        text = frame[name].fillna("").str.strip()
        typed[name] = text.where(text != "")
    table = pa.Table.from_pandas(typed.reset_index(drop=True), schema=schema, preserve_index=False)
    reasons = problems.collect().reindex(np.arange(n))
    meta = {
        **{RAW + str(i): _text(frame[name].fillna("")) for i, name in enumerate(raw_names)},
        FILE: _text(frame[SOURCE_FILE]),
        ROW: pa.array(frame[ROW_NUMBER].to_numpy(dtype=np.int64)),
        ORD: pa.array(np.arange(start, start + n, dtype=np.int64)),
        COLUMN: pa.array(reasons["column"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        REASON: pa.array(reasons["reason"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        STAGED_LINE: _text(frame[RAW_LINE]),
    }
    for name, array in meta.items():
        table = table.append_column(name, array)
    return table.replace_schema_metadata(None)


def _text(column: pd.Series) -> pa.Array:
    """A text column as Arrow strings (pandas' str columns are Arrow already: no copy through Python)."""
    return pa.array(column, from_pandas=True).cast(pa.string())


def _conform(
    spec: TableSpec, chunk: pd.DataFrame, mapping: dict[str, str], extras: list[str], xlsx: bool
) -> pd.DataFrame:
    """A chunk under contract column names; a column its file lacks is null (not "") there."""
    frame = chunk.rename(columns=mapping).reset_index(drop=True)
    frame[FROM_XLSX] = xlsx
    for name in [c.name for c in spec.columns] + extras:
        if name not in frame:
            frame[name] = pd.Series(np.nan, index=frame.index, dtype="str")
    for name in (SOURCE_FILE, READ_PROBLEM, RAW_LINE):
        frame[name] = frame[name].fillna("").astype("str")
    frame[FROM_XLSX] = frame[FROM_XLSX].astype(bool)
    return frame


# Parsers work on the distinct cell texts of a column (few for enums, dates and numbers, so a 3-million-row
# column costs little) and return, per distinct text, the typed value and why it is rejected (None: fine).
_Parser = Callable[[Column, pd.Series, "_Context", bool], tuple[pd.Series, np.ndarray]]


def _check_column(
    col: Column, frame: pd.DataFrame, readable: np.ndarray, problems: _Problems, ctx: _Context
) -> pd.Series:
    """Parse one column into its contract type, rejecting the rows whose value does not fit."""
    raw = frame[col.name]
    absent = raw.isna().to_numpy()
    plain = col.kind == "str" and col.enum is None and not col.taxonomy
    if plain:
        # ids and free text: nothing to parse, and too many distinct values for factorising to pay
        codes, text = np.arange(len(raw)), _blank_nulls(raw.fillna("").str.strip())
    else:
        codes, uniques = pd.factorize(raw.fillna(""))
        text = _blank_nulls(pd.Series(uniques, dtype="str").str.strip())
    empty = (text == "").to_numpy()[codes]
    if col.required:
        problems.add(readable & absent, col.name, f"文件缺少必填列「{col.label}」（{col.name}）")
        problems.add(readable & ~absent & empty, col.name, f"必填字段「{col.label}」为空")
    parse = _PARSERS[col.kind]
    parsed, reasons = parse(col, text, ctx, False)
    if col.kind == "date" and frame[FROM_XLSX].any():  # Excel serial day numbers only mean dates in XLSX
        serial, serial_reasons = parse(col, text, ctx, True)
        xlsx = frame[FROM_XLSX].to_numpy()
        rows = pd.Series(
            np.where(xlsx, serial.to_numpy()[codes], parsed.to_numpy()[codes]), index=frame.index
        )
        reasons = np.where(xlsx, serial_reasons[codes], reasons[codes])
        bad = readable & pd.notna(reasons)
        problems.add(bad, col.name, pd.Series(reasons[bad], index=np.flatnonzero(bad)))
        return rows.astype(parsed.dtype)
    bad_values = pd.notna(reasons)
    if bad_values.any():
        bad = readable & bad_values[codes]
        problems.add(bad, col.name, pd.Series(reasons[codes[bad]], index=np.flatnonzero(bad)))
    if col.default is not None:
        parsed = parsed.where(text != "", col.default)
        if col.kind == "bool":  # a column with a default is never null, so it can be a plain bool
            parsed = parsed.fillna(bool(col.default)).astype(bool)
    if len(parsed) == len(frame) and plain:
        return parsed.set_axis(frame.index)
    rows = parsed.take(codes)
    rows.index = frame.index
    return rows


def _blank_nulls(text: pd.Series) -> pd.Series:
    """Cells spelling "no value" (``NULL``, ``nan`` …) become empty; only short cells can be one."""
    short = (text.str.len() <= max(map(len, NULL_TOKENS))).to_numpy()
    nulls = np.zeros(len(text), dtype=bool)
    nulls[short] = text[short].str.lower().isin(NULL_TOKENS).to_numpy()
    return text.mask(nulls, "") if nulls.any() else text


def _no_reasons(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


def _flag(reasons: np.ndarray, bad: np.ndarray, template: str, text: pd.Series | None = None) -> None:
    """Give the values of ``bad`` that have no reason yet ``template``, its ``{}`` filled with the value.

    The first problem of a value is enough; texts are built only for the (few) bad values.
    """
    bad = bad & pd.isna(reasons)
    if bad.any():
        reasons[bad] = template if text is None else [template.format(v) for v in text[bad]]


def _quoted(col: Column) -> str:
    return f"「{col.label}」的值「{{}}」"


def _fold(text: pd.Series) -> pd.Series:
    """Width- and case-folded text, the key enum spellings and codes are looked up by."""
    return text.str.normalize("NFKC").str.strip().str.lower()


def _code_lookup(text: pd.Series, codes: dict[str, str]) -> pd.Series:
    """Competency codes as written, else folded (``a1`` → ``A1``), else by their unique Chinese name."""
    exact = text.map(codes)
    return exact.where(exact.notna(), _fold(text).map(codes))


def _parse_str(col: Column, text: pd.Series, ctx: _Context, excel: bool) -> tuple[pd.Series, np.ndarray]:
    reasons = _no_reasons(len(text))
    present = (text != "").to_numpy()
    if col.enum is not None:
        mapped = _fold(text).map(col.enum.lookup())
        bad = present & mapped.isna().to_numpy()
        _flag(reasons, bad, _quoted(col) + f"不在允许值 {col.enum.labels()} 中", text)
        return mapped.astype("str"), reasons
    if col.taxonomy:
        mapped = _code_lookup(text, ctx.codes)
        bad = present & mapped.isna().to_numpy()
        _flag(reasons, bad, f"「{col.label}」中的代码「{{}}」不在能力框架中", text)
        return mapped.astype("str"), reasons
    garbled = mojibake(text)
    for i in np.flatnonzero(present & pd.notna(garbled)):
        reasons[i] = (
            f"{_quoted(col).format(text.iloc[i])}疑似乱码（{garbled[i]}），文件编码可能有误，请以 UTF-8 编码重新导出"
        )
    return text.where(text != "").astype("str"), reasons


def _parse_number(col: Column, text: pd.Series, ctx: _Context, excel: bool) -> tuple[pd.Series, np.ndarray]:
    reasons = _no_reasons(len(text))
    present = (text != "").to_numpy()
    source = text.str.normalize("NFKC")
    if col.enum is not None:  # e.g. 层级 入门/进阶/高级 → 1/2/3
        source = _fold(text).map(col.enum.lookup()).fillna(source)
    number = pd.to_numeric(source.where(text != ""), errors="coerce").astype("float64")
    number = number.where(np.isfinite(number))
    unparsed = present & number.isna().to_numpy()
    if col.enum is not None:
        _flag(reasons, unparsed, _quoted(col) + f"不在允许值 {col.enum.labels()} 中", text)
    else:
        _flag(reasons, unparsed, _quoted(col) + ("不是整数" if col.kind == "int" else "不是数字"), text)
    if col.kind == "int":
        _flag(reasons, (number != number.round()).to_numpy() & present, _quoted(col) + "不是整数", text)
    outside = np.zeros(len(text), dtype=bool)
    if col.min_value is not None:
        outside |= (number <= col.min_value if col.min_exclusive else number < col.min_value).to_numpy()
    if col.max_value is not None:
        outside |= (number > col.max_value).to_numpy()
    _flag(reasons, outside & present, _quoted(col) + f"超出允许范围（{col.range_text()}）", text)
    if col.kind == "int":
        return number.where(pd.isna(reasons)).round().astype("Int64"), reasons
    return number, reasons


def _parse_bool(col: Column, text: pd.Series, ctx: _Context, excel: bool) -> tuple[pd.Series, np.ndarray]:
    key = _fold(text)
    out = pd.Series(pd.NA, index=text.index, dtype="boolean")
    out[key.isin(TRUE_TOKENS).to_numpy()] = True
    out[key.isin(FALSE_TOKENS).to_numpy()] = False
    reasons = _no_reasons(len(text))
    _flag(reasons, (text != "").to_numpy() & out.isna().to_numpy(), _quoted(col) + "应为 是 或 否", text)
    return out, reasons


def _parse_date(col: Column, text: pd.Series, ctx: _Context, excel: bool) -> tuple[pd.Series, np.ndarray]:
    dates = parse_dates(text, excel_serials=excel)
    reasons = _no_reasons(len(text))
    bad = (text != "").to_numpy() & dates.isna().to_numpy()
    _flag(reasons, bad, _quoted(col) + f"不是有效日期（{DATE_HINT}）", text)
    return dates, reasons


def parse_dates(text: pd.Series, excel_serials: bool = False) -> pd.Series:
    """Dates written as 2023-09-01, 2023/9/1, 2023.9.1, 2023年9月1日 or 20230901 (a time may follow), and
    Excel serial day numbers when ``excel_serials``; NaT where none fits or the year is implausible.
    """
    out = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce").astype("datetime64[us]")
    rest = text[out.isna().to_numpy() & (text != "").to_numpy()].str.normalize("NFKC").str.strip()
    if len(rest):
        parts = rest.str.extract(_DATE_PARTS)
        compact = rest.str.extract(_DATE_COMPACT)
        parts[["year", "month", "day"]] = parts[["year", "month", "day"]].fillna(compact)
        parts = parts.apply(pd.to_numeric, errors="coerce").fillna({"hour": 0, "minute": 0, "second": 0})
        assembled = pd.to_datetime(parts, errors="coerce").astype("datetime64[us]")
        if excel_serials:
            serial = rest[rest.str.fullmatch(r"\d{1,7}(\.\d+)?").fillna(False).to_numpy(dtype=bool)]
            days = pd.to_numeric(serial)
            days = days.where((days >= 1) & (days < 2958466))
            stamps = (_EXCEL_EPOCH + pd.to_timedelta(days, unit="D")).dt.round("s")
            assembled.loc[stamps.index] = stamps.astype("datetime64[us]")
        out.loc[rest.index] = assembled
    years = out.dt.year
    return out.where((years >= _YEARS[0]) & (years <= _YEARS[1]))


def _parse_list(col: Column, text: pd.Series, ctx: _Context, excel: bool) -> tuple[pd.Series, np.ndarray]:
    """Split on ``;``, ``；`` and ``、``; map enum elements and taxonomy codes; Python lists of str."""
    reasons = _no_reasons(len(text))
    present = (text != "").to_numpy()
    elements = text[present].str.split(LIST_SPLIT_PATTERN, regex=True).explode().astype("str").str.strip()
    elements = elements[elements.notna() & (elements != "")]
    if col.required:
        blank = present & ~np.isin(np.arange(len(text)), elements.index.to_numpy())
        _flag(reasons, blank, f"必填字段「{col.label}」为空")
    if col.enum is not None or col.taxonomy:
        if col.enum is not None:
            mapped = _fold(elements).map(col.enum.lookup())
            template = f"「{col.label}」中的值「{{}}」不在允许值 {col.enum.labels()} 中"
        else:
            mapped = _code_lookup(elements, ctx.codes)
            template = f"「{col.label}」中的代码「{{}}」不在能力框架中"
        unknown = elements[mapped.isna()]
        if len(unknown):
            listed = unknown.groupby(level=0).agg("、".join).reindex(text.index)
            _flag(reasons, listed.notna().to_numpy(), template, listed)
        elements = mapped.dropna()
    pairs = pd.DataFrame({"row": elements.index.to_numpy(), "value": elements.to_numpy(dtype=object)})
    pairs = pairs.drop_duplicates()
    counts = np.bincount(pairs["row"].to_numpy(dtype=np.int64), minlength=len(text))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(pairs["value"].tolist(), type=pa.string()))
    return pd.Series(lists.to_pylist(), index=text.index, dtype=object), reasons


_PARSERS: dict[str, _Parser] = {
    "str": _parse_str,
    "int": _parse_number,
    "float": _parse_number,
    "bool": _parse_bool,
    "date": _parse_date,
    "list": _parse_list,
}


def _check_consistency(
    spec: TableSpec, values: dict[str, pd.Series], problems: _Problems, ctx: _Context
) -> None:
    """Across columns: a record cannot end before it starts; a response cannot beat its item's maximum."""
    if spec.has_column("end_date") and spec.has_column("start_date"):
        backwards = (values["end_date"] < values["start_date"]).fillna(False).to_numpy(dtype=bool)
        problems.add(backwards, "end_date", "「结束日期」早于「开始日期」")
    if spec.name == "responses":
        max_scores = ctx.item_maxima()
        if max_scores is not None:
            maxima = values["item_id"].map(max_scores).astype("float64")
            above = (values["score"] > maxima).fillna(False).to_numpy(dtype=bool)
            score = values["score"][above].map("{:g}".format).astype("str")
            top = maxima[above].map("{:g}".format).astype("str")
            problems.add(above, "score", "「得分」的值「" + score + "」超过该题满分 " + top)
