"""Ingestion (数据接入): a folder of contract files → validated tables in the workspace, bad rows quarantined.

Every input row ends either in ``WS/tables/<table>.parquet`` or in ``WS/rejects/<table>.csv`` with its file,
row, column and a reason a clerk can act on: rows in = rows accepted + rows rejected, for every table, always.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data.readers import (
    RAW_LINE,
    READ_PROBLEM,
    ROW_NUMBER,
    SOURCE_FILE,
    SUPPORTED_SUFFIXES,
    RawFile,
    UnreadableFileError,
    read_file,
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
from data.workspace import Workspace, atomic_write, write_text_atomic

__all__ = ["IngestReport", "TableCounts", "SkippedFile", "UnreadableFileError", "ingest"]

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
    taxonomy_source: str  # "builtin" or the deployment's file names
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


def ingest(
    src_dir: str | Path,
    workspace: Workspace | str | Path,
    *,
    builtin_taxonomy: pd.DataFrame | None = None,
) -> IngestReport:
    """Validate every contract file in ``src_dir`` and load it into ``workspace``.

    A ``taxonomy`` file in the folder replaces the built-in framework (``builtin_taxonomy`` when given, else
    ``data.reference.load_taxonomy()``). References to a table absent from the folder are checked against the
    workspace's existing table. Raises UnreadableFileError, before writing anything, if a file cannot be read.
    """
    src = Path(src_dir)
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    if not src.is_dir():
        raise UnreadableFileError(src, "不是一个文件夹")
    files, skipped = _read_folder(src)

    ctx = _Context(ws)
    results: dict[str, _Validated] = {}
    if "taxonomy" in files:
        results["taxonomy"] = _validate(TAXONOMY, files["taxonomy"], ctx)
        taxonomy = _taxonomy_frame(results["taxonomy"].table)
        taxonomy_source = "、".join(f.path.name for f in files["taxonomy"])
    else:
        taxonomy = _taxonomy_frame(
            builtin_taxonomy if builtin_taxonomy is not None else _load_builtin_taxonomy()
        )
        taxonomy_source = "builtin"
    ctx.set_taxonomy(taxonomy)
    for name, spec in TABLES.items():
        if name == "taxonomy" or name not in files:
            continue
        results[name] = _validate(spec, files[name], ctx)
        ctx.add_table(name, results[name].table, results[name].rejected_keys)

    _write_table(ws, TAXONOMY, taxonomy)
    for name, result in results.items():
        if name != "taxonomy":
            _write_table(ws, TABLES[name], result.table)
        _write_rejects(result.rejects, ws.rejects_dir / f"{name}.csv")

    report = IngestReport(
        source=src.resolve(),
        workspace=ws.root,
        tables=tuple(
            TableCounts(
                name, tuple(f.path.name for f in files[name]), r.rows_in, len(r.table), len(r.rejects)
            )
            for name, r in results.items()
        ),
        taxonomy_source=taxonomy_source,
        taxonomy_codes=len(taxonomy),
        skipped=tuple(skipped),
    )
    write_text_atomic(
        ws.root / "ingest_report.json", json.dumps(report.to_dict(), ensure_ascii=False, indent=2)
    )
    for t in report.tables:
        log.info("ingested %s: %d in, %d accepted, %d rejected", t.table, t.rows_in, t.accepted, t.rejected)
    return report


def _write_table(ws: Workspace, spec: TableSpec, table: pd.DataFrame) -> None:
    """Parquet with list columns typed list<string> even when all lists are empty (else Arrow says null)."""
    schema = pa.Schema.from_pandas(table, preserve_index=False)
    for col in spec.columns:
        if col.kind == "list":
            i = schema.get_field_index(col.name)
            schema = schema.set(i, pa.field(col.name, pa.list_(pa.string())))
    atomic_write(ws.table_path(spec.name), lambda p: table.to_parquet(p, index=False, schema=schema))


def _write_rejects(rejects: pd.DataFrame, target: Path) -> None:
    """UTF-8 with BOM so that Excel shows the Chinese; CRLF line ends so that a raw value holding a bare
    carriage return is quoted and the file reads back with exactly one line per rejected row."""
    atomic_write(
        target, lambda p: rejects.to_csv(p, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    )


def _read_folder(src: Path) -> tuple[dict[str, list[RawFile]], list[SkippedFile]]:
    """Read every data file of the folder (by name, so that "first" is stable) and sort them by table."""
    files: dict[str, list[RawFile]] = {}
    skipped: list[SkippedFile] = []
    for path in sorted(p for p in src.iterdir() if p.is_file()):
        if path.name.startswith((".", "~$")):
            continue  # hidden files and Excel's lock files
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            skipped.append(SkippedFile(path.name, "不是 CSV、XLSX 或 Parquet 数据文件"))
            continue
        raw = read_file(path)
        table = identify_table(path.stem, raw.header)
        if table is None:
            skipped.append(SkippedFile(path.name, "无法从文件名或表头识别是哪张表"))
            continue
        files.setdefault(table, []).append(raw)
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
    """What later tables are checked against: accepted keys of earlier tables, the taxonomy, item maxima."""

    ws: Workspace
    keys: dict[str, pd.Index] = field(default_factory=dict)
    rejected_keys: dict[str, pd.Index] = field(default_factory=dict)
    max_scores: pd.Series | None = None
    codes: dict[str, str] = field(default_factory=dict)

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

    def add_table(self, name: str, table: pd.DataFrame, rejected_keys: pd.Index) -> None:
        spec = TABLES[name]
        if len(spec.key) == 1:
            self.keys[name] = pd.Index(table[spec.key[0]].dropna().unique())
            self.rejected_keys[name] = rejected_keys
        if name == "items":
            self.max_scores = table.set_index("item_id")["max_score"]

    def known_keys(self, name: str) -> pd.Index | None:
        """Keys of ``name`` from this ingest, else from the workspace's existing table, else None."""
        if name not in self.keys and self.ws.has_table(name):
            key = TABLES[name].key[0]
            table = pd.read_parquet(self.ws.table_path(name), columns=[key])
            self.keys[name] = pd.Index(table[key].dropna().unique())
            if name == "items":
                items = pd.read_parquet(self.ws.table_path(name), columns=["item_id", "max_score"])
                self.max_scores = items.set_index("item_id")["max_score"]
        return self.keys.get(name)


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
class _Validated:
    rows_in: int
    table: pd.DataFrame
    rejects: pd.DataFrame
    rejected_keys: pd.Index  # single-column keys seen only on rejected rows (so a reference can say why)


def _validate(spec: TableSpec, raws: list[RawFile], ctx: _Context) -> _Validated:
    frame, extras = _combine(spec, raws)
    n = len(frame)
    problems = _Problems(n)
    readable = (frame[READ_PROBLEM] == "").to_numpy(dtype=bool)
    problems.add(~readable, "", frame[READ_PROBLEM])

    values = {col.name: _check_column(col, frame, readable, problems, ctx) for col in spec.columns}
    _check_consistency(spec, values, problems, ctx)
    _check_references(spec, values, problems, ctx)
    _check_duplicates(spec, values, frame, problems)

    accepted = np.flatnonzero(~problems.rejected)
    table = pd.DataFrame({name: v.iloc[accepted] for name, v in values.items()})
    for name in extras:
        text = frame[name].iloc[accepted].fillna("").str.strip()
        table[name] = text.where(text != "")
    table = table.reset_index(drop=True)

    rejected = np.flatnonzero(problems.rejected)
    reasons = problems.collect()
    rejects = pd.DataFrame(
        dict(
            zip(
                REJECT_COLUMNS,
                (
                    frame[SOURCE_FILE].iloc[rejected].to_numpy(),
                    frame[ROW_NUMBER].iloc[rejected].to_numpy(),
                    reasons["column"].reindex(rejected).to_numpy(),
                    reasons["reason"].reindex(rejected).to_numpy(),
                ),
                strict=True,
            )
        )
    )
    raw_columns = [c.name for c in spec.columns if frame[c.name].notna().any()] + extras
    for name in raw_columns:
        rejects[name] = frame[name].iloc[rejected].fillna("").to_numpy()
    if (frame[RAW_LINE] != "").any():
        rejects["raw_line"] = frame[RAW_LINE].iloc[rejected].to_numpy()
    assert len(table) + len(rejects) == n, f"{spec.name}: rows in != accepted + rejected"
    rejected_keys = pd.Index([], dtype=object)
    if len(spec.key) == 1:
        key = values[spec.key[0]]
        rejected_keys = pd.Index(key.iloc[rejected].dropna().unique()).difference(
            pd.Index(table[spec.key[0]].dropna().unique())
        )
    return _Validated(n, table, rejects, rejected_keys)


def _combine(spec: TableSpec, raws: list[RawFile]) -> tuple[pd.DataFrame, list[str]]:
    """All files of one table under contract column names; a column a file lacks is null (not "") there."""
    frames: list[pd.DataFrame] = []
    extras: list[str] = []
    for raw in raws:
        mapping = map_header(spec, raw.header)
        f = raw.frame.rename(columns=mapping)
        f[FROM_XLSX] = raw.kind == "xlsx"
        extras.extend(h for h in raw.header if h not in mapping and h not in extras)
        frames.append(f)
    wanted = [c.name for c in spec.columns] + extras
    for f in frames:
        for name in wanted:
            if name not in f:
                f[name] = pd.Series(np.nan, index=f.index, dtype="str")
    frame = pd.concat(frames, ignore_index=True)
    for name in (SOURCE_FILE, READ_PROBLEM, RAW_LINE):
        frame[name] = frame[name].fillna("").astype("str")
    frame[FROM_XLSX] = frame[FROM_XLSX].astype(bool)
    return frame, extras


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
        ctx.known_keys("items")
        if ctx.max_scores is not None:
            maxima = values["item_id"].map(ctx.max_scores).astype("float64")
            above = (values["score"] > maxima).fillna(False).to_numpy(dtype=bool)
            score = values["score"][above].map("{:g}".format).astype("str")
            top = maxima[above].map("{:g}".format).astype("str")
            problems.add(above, "score", "「得分」的值「" + score + "」超过该题满分 " + top)


def _check_references(
    spec: TableSpec, values: dict[str, pd.Series], problems: _Problems, ctx: _Context
) -> None:
    """A value naming another table's row must name one that was accepted (or already is in the workspace)."""
    for col in spec.columns:
        if col.references is None:
            continue
        ids = values[col.name]
        present = ids.notna().to_numpy()
        known = ctx.known_keys(col.references)
        target = TABLES[col.references].label
        if known is None:
            missing = present
            problems.add(
                missing,
                col.name,
                f"{col.label} "
                + ids[missing]
                + f" 无法核对：本次未导入{target}，请把{target}文件放入同一文件夹后重新导入",
            )
            continue
        missing = present & ~_isin(ids, known)
        if not missing.any():
            continue
        bad_row = missing & _isin(ids, ctx.rejected_keys.get(col.references, pd.Index([], dtype=object)))
        problems.add(
            bad_row,
            col.name,
            f"{col.label} "
            + ids[bad_row]
            + f" 在{target}中的行未通过校验（见 rejects/{col.references}.csv），"
            "请先更正该行",
        )
        absent = missing & ~bad_row
        problems.add(
            absent,
            col.name,
            f"{col.label} " + ids[absent] + f" 在{target}中不存在，请核对编号，或先在{target}中补录",
        )


def _isin(ids: pd.Series, keys: pd.Index) -> np.ndarray:
    """Whether each id is one of keys (Arrow's hash lookup: millions of ids against millions of keys)."""
    found = pc.is_in(pa.array(ids.array), value_set=pa.array(keys.to_numpy(dtype=object), pa.string()))
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _check_duplicates(
    spec: TableSpec, values: dict[str, pd.Series], frame: pd.DataFrame, problems: _Problems
) -> None:
    """The first valid row of a key wins; a later valid row with the same key is rejected, pointing at it."""
    valid = np.flatnonzero(~problems.rejected)
    if valid.size == 0:
        return
    if len(spec.key) == 1:
        keys = pa.array(values[spec.key[0]].iloc[valid].array)
        if len(pc.unique(keys)) == valid.size:
            return
    group = np.zeros(valid.size, dtype=np.int64)
    for k in spec.key:
        codes, uniques = pd.factorize(values[k].iloc[valid], use_na_sentinel=False)
        group = pd.factorize(group * (len(uniques) + 1) + codes)[0]
    _, first_index, inverse = np.unique(group, return_index=True, return_inverse=True)
    first_seen = valid[first_index[inverse]]
    later = first_seen != valid
    if not later.any():
        return
    dup_rows, first_rows = valid[later], first_seen[later]
    files = frame[SOURCE_FILE].astype(object).to_numpy()
    first_file = pd.Series(files[first_rows], index=dup_rows)
    first_number = pd.Series(frame[ROW_NUMBER].to_numpy()[first_rows], index=dup_rows).astype(str)
    same_file = files[dup_rows] == files[first_rows]
    where = ("第 " + first_number + " 行").where(same_file, " " + first_file + " 第 " + first_number + " 行")
    mask = np.zeros(problems.n, dtype=bool)
    mask[dup_rows] = True
    problems.add(mask, "；".join(spec.key), "与" + where + f"的{spec.key_label()}重复，保留首行")
