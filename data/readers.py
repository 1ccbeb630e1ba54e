"""Readers (读取): one CSV / XLSX / Parquet file into a DataFrame of strings, every row kept with its number.

No value is interpreted here; rows that cannot be split into the header's fields are kept and flagged so that
validation can reject them with a reason instead of losing them.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import functools
import io
import re
import sys
import zipfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from openpyxl.utils.cell import column_index_from_string, coordinate_from_string, get_column_letter

from data.schema import table_for_header

# Metadata columns every reader adds; their names cannot clash with contract columns.
SOURCE_FILE = "_source_file"
ROW_NUMBER = "_row_number"  # as a clerk sees it in Excel: the header is row 1, the first data row is row 2
READ_PROBLEM = "_read_problem"  # why the row could not be read as the header says; "" when it could
RAW_LINE = "_raw_line"  # the row's original text when its fields did not match the header
META_COLUMNS = (SOURCE_FILE, ROW_NUMBER, READ_PROBLEM, RAW_LINE)

CSV_SUFFIXES = frozenset({".csv", ".txt", ".tsv"})
XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
SUPPORTED_SUFFIXES = CSV_SUFFIXES | XLSX_SUFFIXES | PARQUET_SUFFIXES | {".xls"}

# Junk that no export puts in a cell on purpose: C0 controls other than tab/newline, and the replacement
# character left where undecodable bytes were.
_JUNK = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]"
_JUNK_RE = re.compile(_JUNK)
_JUNK_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
JUNK_PROBLEM = "该行含无法识别的字符（文件可能损坏或编码有误），请核对原始数据后重新导出"
# A decoded text with more junk than this is not a text file at all.
_MAX_JUNK_SHARE = 0.02
# A UTF-8 / GB18030 decode with fewer bad bytes than this (share of non-ASCII bytes) is a damaged file of that
# encoding, not a file of another one.
_MAX_BAD_SHARE = 0.02
_FEW_BAD_BYTES = 16
# a big CSV is read CHUNK_BYTES at a time, XLSX and Parquet CHUNK_ROWS rows at a time: what one ingest holds
CHUNK_BYTES = 8 << 20
CHUNK_ROWS = 100_000
# characters of a decoded text compared when two codecs both decode it
_SAMPLE = 1 << 16
# an XLSX sheet's header is looked for in its first rows (a title row or two may sit above it)
_HEADER_SEARCH_ROWS = 5


# ------------------------------------------------------------------------------------------------- mojibake

# Text decoded with the wrong codec: C1 controls (bytes read as Latin-1), private-use characters (bytes GB18030
# maps nowhere), kana / box drawing / Cyrillic (the GBK rows Big5 lead bytes fall in), and runs of rare
# characters (UTF-8 read as GBK lands in GB2312's second level and GBK's extension).
_C1_PRIVATE = re.compile("[\x80-\x9f\ue000-\uf8ff]")
_ODD_SCRIPTS = re.compile("[\u0400-\u04ff\u2500-\u257f\u3040-\u30ff]")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff"
# a cell is garbled when at least this many of its Chinese characters are rare, and they are at least half
_RARE_RUN = 2


@functools.cache
def _common_cjk() -> frozenset[str]:
    """The characters Chinese text is mostly made of: GB2312's first level (3 755 common simplified characters)
    and Big5's common set (5 401 traditional ones), read from the codecs themselves."""
    chars: set[str] = set()
    for codec, leads, trails in (
        ("gb2312", range(0xB0, 0xD8), range(0xA1, 0xFF)),
        ("big5", range(0xA4, 0xC7), [*range(0x40, 0x7F), *range(0xA1, 0xFF)]),
    ):
        for lead in leads:
            for trail in trails:
                with contextlib.suppress(UnicodeDecodeError):
                    chars.add(bytes([lead, trail]).decode(codec))
    return frozenset(chars)


@functools.cache
def _rare_cjk() -> re.Pattern[str]:
    common = "".join(sorted(_common_cjk()))
    return re.compile(f"[{_CJK}](?<![{re.escape(common)}])")


def mojibake(text: pd.Series) -> np.ndarray:
    """Per text, why it looks garbled by a wrong encoding (a short Chinese phrase), or None when it does not."""
    out = np.full(len(text), None, dtype=object)
    ascii_ = pc.string_is_ascii(pa.array(text.fillna(""), from_pandas=True).cast(pa.string()))
    rows = np.flatnonzero(~ascii_.to_numpy(zero_copy_only=False))
    if not rows.size:
        return out
    # a column repeats its Chinese values (counties, subjects): each distinct one is looked at once
    codes, distinct = pd.factorize(text.iloc[rows])
    cells = pd.Series(distinct, dtype="str")
    why = np.full(len(cells), None, dtype=object)
    rare = cells.str.count(_rare_cjk().pattern).to_numpy()
    cjk = cells.str.count(f"[{_CJK}]").to_numpy()
    why[(rare >= _RARE_RUN) & (2 * rare >= cjk)] = "不常见的汉字组合"
    why[cells.str.contains(_ODD_SCRIPTS.pattern).to_numpy(dtype=bool)] = "混入日文假名、制表符或西里尔字母"
    why[cells.str.contains(_C1_PRIVATE.pattern).to_numpy(dtype=bool)] = "控制字符或私用区字符"
    out[rows] = why[codes]
    return out


def plausibility(text: str) -> float:
    """Share of the Chinese characters of ``text`` that are common ones (1.0 without Chinese): how a right
    decoding of Chinese text looks."""
    chars = re.findall(f"[{_CJK}]", text)
    if not chars:
        return 0.0 if _C1_PRIVATE.search(text) or _ODD_SCRIPTS.search(text) else 1.0
    common = _common_cjk()
    return sum(ch in common for ch in chars) / len(chars) - 0.5 * bool(_ODD_SCRIPTS.search(text))


class UnreadableFileError(Exception):
    """A file that cannot be read at all (not CSV/XLSX/Parquet, corrupt, undecodable): names file and why."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


@dataclass(frozen=True)
class RawSource:
    """One file opened for reading: its header as written, and its rows as strings (``""`` for an empty cell)
    in frames of bounded size, each with META_COLUMNS; ``chunks()`` reads the file afresh at each call."""

    path: Path
    kind: str  # csv / xlsx / parquet
    encoding: str | None
    header: tuple[str, ...]
    chunks: Callable[[], Iterator[pd.DataFrame]]

    def frames(self) -> Iterator[pd.DataFrame]:
        """``chunks()``, a failure half-way through raised as the UnreadableFileError it is."""
        try:
            yield from self.chunks()
        except UnreadableFileError:
            raise
        except _READ_ERRORS as e:
            raise UnreadableFileError(self.path, f"无法读取（{type(e).__name__}: {e}）") from e


@dataclass(frozen=True)
class RawFile:
    """One file read whole (small files and tests): its header as written and all its rows."""

    path: Path
    kind: str  # csv / xlsx / parquet
    encoding: str | None
    header: tuple[str, ...]
    frame: pd.DataFrame  # header columns + META_COLUMNS


_READ_ERRORS = (OSError, zipfile.BadZipFile, pa.ArrowException, KeyError, ValueError, EOFError)


def open_file(path: Path) -> RawSource:
    """Open one contract file (its header is read now, its rows when asked for); raise UnreadableFileError
    when it cannot be read at all."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in CSV_SUFFIXES:
            return _csv_source(path)
        if suffix in XLSX_SUFFIXES:
            return _xlsx_source(path)
        if suffix in PARQUET_SUFFIXES:
            return _parquet_source(path)
    except UnreadableFileError:
        raise
    except _READ_ERRORS as e:
        raise UnreadableFileError(path, f"无法读取（{type(e).__name__}: {e}）") from e
    if suffix == ".xls":
        raise UnreadableFileError(path, "旧版 .xls 格式不受支持，请在 Excel 中另存为 .xlsx 或 CSV")
    raise UnreadableFileError(path, f"不支持的文件类型「{suffix}」，请提供 CSV、XLSX 或 Parquet 文件")


def read_file(path: Path) -> RawFile:
    """Read one contract file whole; raise UnreadableFileError when it cannot be read at all."""
    source = open_file(path)
    frames = list(source.frames())
    if frames:
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    else:
        frame = _empty_frame(source.header)
        frame[SOURCE_FILE] = pd.array([], dtype="str")
    return RawFile(source.path, source.kind, source.encoding, source.header, frame)


# -------------------------------------------------------------------------------------------------------- CSV


def _csv_source(path: Path) -> RawSource:
    """A CSV file: read whole when small (or UTF-16), else in pieces of CHUNK_BYTES cut between records, each
    parsed as its own small file under the header, the encoding and delimiter taken from the first piece."""
    with open(path, "rb") as f:
        head = f.read(CHUNK_BYTES + 1)
    if len(head) <= CHUNK_BYTES or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        frame, encoding = _parse_whole(path.read_bytes(), path)
        frame[SOURCE_FILE] = path.name
        header = tuple(c for c in frame.columns if c not in META_COLUMNS)
        return RawSource(path, "csv", encoding, header, lambda: iter([frame]))
    bom = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    sample = head[: _safe_cut(head) or len(head)]
    if _clean_utf8(sample[bom:]):
        encoding = "utf-8-sig" if bom else "utf-8"
    else:
        encoding = decode_text(sample, path)[1]
    header_bytes = sample[bom : bom + (_record_end(sample[bom:]) or len(sample) - bom)]
    header_text = header_bytes.decode(_codec(encoding), errors="replace")
    delimiter = _sniff_delimiter(header_text)
    header = tuple(_unique_names(next(csv.reader(io.StringIO(header_text, newline=""), delimiter=delimiter))))

    def chunks() -> Iterator[pd.DataFrame]:
        offset, pending = 0, b""
        with open(path, "rb") as f:
            f.seek(bom + len(header_bytes))
            while True:
                block = f.read(CHUNK_BYTES)
                data = pending + block
                cut = _safe_cut(data) if block else len(data)
                if cut is None:  # a value spanning the whole block: read on
                    pending = data
                    continue
                piece, pending = data[:cut], data[cut:]
                if piece:
                    frame, records = _parse_piece(header_bytes + piece, encoding, delimiter)
                    frame[ROW_NUMBER] += offset
                    frame[SOURCE_FILE] = path.name
                    offset += records
                    yield frame
                if not block:
                    return

    return RawSource(path, "csv", encoding, header, chunks)


def _codec(encoding: str) -> str:
    return "utf-8" if encoding == "utf-8-sig" else encoding  # the BOM is not part of any piece


def _clean_utf8(body: bytes) -> bool:
    return len(body.translate(None, _JUNK_BYTES)) == len(body) and _is_utf8(body)


def _record_end(data: bytes) -> int | None:
    """Where the first record ends (after its newline), or None: the first newline outside quotes."""
    at = data.find(b"\n")
    while at >= 0:
        if data.count(b'"', 0, at) % 2 == 0:
            return at + 1
        at = data.find(b"\n", at + 1)
    return None


def _safe_cut(data: bytes, tries: int = 10_000) -> int | None:
    """Where the last whole record of ``data`` ends: after the last newline outside quotes (RFC 4180 quotes
    pair up, so a newline is outside them when the quotes before it are even). None when none is near the end.

    GBK, GB18030 and Big5 never use the bytes of ``\n`` or ``"`` inside a character, so the cut is safe there too.
    """
    quotes = data.count(b'"')
    at = data.rfind(b"\n")
    while at >= 0 and tries:
        if (quotes - data.count(b'"', at)) % 2 == 0:
            return at + 1
        at = data.rfind(b"\n", 0, at)
        tries -= 1
    return None


def _parse_whole(raw: bytes, path: Path) -> tuple[pd.DataFrame, str]:
    body = raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw
    if _clean_utf8(body):
        # The common case, a clean UTF-8 file, goes straight to Arrow without becoming a Python str.
        parsed = _parse_csv_fast(body, _sniff_delimiter(body[:4096].decode("utf-8", "replace")))
        if parsed is not None:
            return parsed[0], "utf-8-sig" if body is not raw else "utf-8"
    text, encoding = decode_text(raw, path)
    return _parse_text(text, _sniff_delimiter(text), utf8=encoding.startswith("utf-8"))[0], encoding


def _parse_piece(data: bytes, encoding: str, delimiter: str) -> tuple[pd.DataFrame, int]:
    """One piece of a big CSV (its header first), read as ``_parse_whole`` reads a file."""
    utf8 = encoding.startswith("utf-8")
    if utf8 and _clean_utf8(data):
        parsed = _parse_csv_fast(data, delimiter)
        if parsed is not None:
            return parsed
    return _parse_text(data.decode(_codec(encoding), errors="replace"), delimiter, utf8=utf8)


def _parse_text(text: str, delimiter: str, *, utf8: bool) -> tuple[pd.DataFrame, int]:
    junk = _JUNK_RE.search(text) is not None
    # Arrow cannot say which row held junk, and a UTF-8 file here already failed Arrow: both go the exact way.
    parsed = _parse_csv_fast(text.encode("utf-8"), delimiter) if not junk and not utf8 else None
    frame, records = parsed if parsed is not None else _parse_csv_exact(text, delimiter)
    if junk:
        _flag_junk_rows(frame, tuple(c for c in frame.columns if c not in META_COLUMNS))
    return frame, records


def _is_utf8(body: bytes) -> bool:
    """Arrow's UTF-8 check over the bytes in place (an order of magnitude faster than ``bytes.decode``)."""
    offsets = pa.py_buffer(np.array([0, len(body)], dtype=np.int64))
    blob = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(body)])
    try:
        blob.view(pa.large_string()).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def decode_text(raw: bytes, path: Path) -> tuple[str, str]:
    """Decode a CSV: UTF-8 (with or without BOM), then GB18030 (a superset of GBK), then charset-normalizer.

    A file of one encoding with a few damaged bytes is decoded with U+FFFD in their place (those rows are
    then rejected, not guessed); a file that is mostly undecodable or binary is unreadable.
    """
    if raw.startswith(codecs.BOM_UTF16_LE) or raw.startswith(codecs.BOM_UTF16_BE):
        return _checked(raw.decode("utf-16", errors="replace"), "utf-16", path)
    body = raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw
    name = "utf-8-sig" if body is not raw else "utf-8"
    try:
        return _checked(body.decode("utf-8"), name, path)
    except UnicodeDecodeError:
        pass
    non_ascii = max(1, len(body) - len(body.translate(None, bytes(range(0x80, 0x100)))))
    utf8_bad = _bad_bytes(body, "utf-8")
    # Checked before GB18030 because UTF-8 Chinese with one damaged byte often decodes "cleanly" as GB18030
    # mojibake, while GBK text is never nearly valid UTF-8.
    if utf8_bad / non_ascii < _MAX_BAD_SHARE:
        return _checked(body.decode("utf-8", errors="replace"), name, path)
    try:
        gb = raw.decode("gb18030")
    except UnicodeDecodeError:
        pass
    else:
        # Big5 bytes mostly decode as GB18030 too, into garbage: keep whichever reads as Chinese
        big5 = _big5(raw)
        if big5 is not None and plausibility(big5[:_SAMPLE]) > plausibility(gb[:_SAMPLE]):
            return _checked(big5, "big5", path)
        return _checked(gb, "gb18030", path)
    gb_bad = _bad_bytes(raw, "gb18030")
    if min(utf8_bad, gb_bad) / non_ascii < _MAX_BAD_SHARE or min(utf8_bad, gb_bad) <= _FEW_BAD_BYTES:
        if utf8_bad <= gb_bad:
            return _checked(body.decode("utf-8", errors="replace"), name, path)
        return _checked(raw.decode("gb18030", errors="replace"), "gb18030", path)
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is None or best.encoding is None:
        raise UnreadableFileError(
            path, "无法识别文件编码（不是 UTF-8 或 GBK 文本），请另存为 UTF-8 编码的 CSV"
        )
    return _checked(str(best), best.encoding, path)


def _big5(raw: bytes) -> str | None:
    try:
        return raw.decode("big5")
    except UnicodeDecodeError:
        return None


def _bad_bytes(body: bytes, encoding: str) -> int:
    return body.decode(encoding, errors="replace").count("\ufffd")


def _checked(text: str, encoding: str, path: Path) -> tuple[str, str]:
    junk = len(_JUNK_RE.findall(text))
    if junk > _FEW_BAD_BYTES and junk / len(text) > _MAX_JUNK_SHARE:
        raise UnreadableFileError(path, "不是文本格式的 CSV 文件（含大量二进制内容或无法解码的字节）")
    return text, encoding


def _flag_junk_rows(frame: pd.DataFrame, header: tuple[str, ...]) -> None:
    junk = pd.Series(False, index=frame.index)
    for name in header:
        junk |= frame[name].str.contains(_JUNK, regex=True).fillna(False).astype(bool)
    frame.loc[junk & (frame[READ_PROBLEM] == ""), READ_PROBLEM] = JUNK_PROBLEM


def _sniff_delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    return "\t" if first.count("\t") > first.count(",") else ","


def _parse_csv_fast(data: bytes, delimiter: str) -> tuple[pd.DataFrame, int] | None:
    """Arrow's parser for well-formed files, and for files whose only fault is rows with the wrong number of
    fields when every record sits on one line (then Arrow can say where they are); None otherwise. Also
    returns how many records the data held (blank lines included), where the next piece's numbering goes on.
    """
    header = _first_record(data, delimiter)
    if header is None:
        return None
    names = _unique_names(header)
    parsed = _arrow_csv(data, delimiter, len(names), threads=True)
    if parsed is None:
        return None
    table, invalid = parsed
    if invalid:
        # Only the serial parser knows the line numbers of the rows it skips.
        parsed = _arrow_csv(data, delimiter, len(names), threads=False)
        if parsed is None:
            return None
        table, invalid = parsed
        if not _one_line_per_record(data, table.num_rows + len(invalid)):
            return None
    frame: pd.DataFrame = table.rename_columns(names).to_pandas()
    numbers = np.arange(2, table.num_rows + len(invalid) + 2)
    if invalid:
        bad = np.array([row.number for row in invalid], dtype=np.int64)
        frame[ROW_NUMBER] = numbers[~np.isin(numbers, bad)]
        flagged = _flagged_rows(names, [(row.number, row.text) for row in invalid], delimiter)
        frame[READ_PROBLEM], frame[RAW_LINE] = "", ""
        frame = pd.concat([frame, flagged], ignore_index=True).sort_values(ROW_NUMBER, kind="stable")
    else:
        frame[ROW_NUMBER] = numbers
        frame[READ_PROBLEM], frame[RAW_LINE] = "", ""
    frame[ROW_NUMBER] = frame[ROW_NUMBER].astype("int64")
    # a blank line is no row, but it still counts in the numbering, as in Excel
    blank = (frame[names] == "").all(axis=1) & (frame[READ_PROBLEM] == "")
    return frame.loc[~blank].reset_index(drop=True), table.num_rows + len(invalid)


def _arrow_csv(
    data: bytes, delimiter: str, width: int, *, threads: bool
) -> tuple[pa.Table, list[pa_csv.InvalidRow]] | None:
    invalid: list[pa_csv.InvalidRow] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    columns = [f"c{i}" for i in range(width)]
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(column_names=columns, skip_rows=1, use_threads=threads),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except pa.ArrowInvalid:
        return None
    if invalid and any(row.number is None for row in invalid) and not threads:
        return None
    return table, invalid


def _one_line_per_record(data: bytes, records: int) -> bool:
    """Whether the file has exactly one line per record (no value spans lines), header included."""
    if data.count(b"\r") != data.count(b"\r\n"):
        return False
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return lines == records + 1


def _flagged_rows(names: list[str], rows: list[tuple[int, str]], delimiter: str) -> pd.DataFrame:
    """Rows whose field count is not the header's, kept with their fields filled in by position."""
    width = len(names)
    columns: list[list[str]] = [[] for _ in range(width)]
    problems: list[str] = []
    for _, text in rows:
        record = next(csv.reader([text], delimiter=delimiter), [])
        for col, value in zip(columns, record[:width] + [""] * (width - len(record)), strict=True):
            col.append(value)
        problems.append(_field_count_problem(width, len(record)))
    frame = pd.DataFrame({name: pd.array(col, dtype="str") for name, col in zip(names, columns, strict=True)})
    frame[ROW_NUMBER] = np.array([number for number, _ in rows], dtype=np.int64)
    frame[READ_PROBLEM] = pd.array(problems, dtype="str")
    frame[RAW_LINE] = pd.array([text for _, text in rows], dtype="str")
    return frame


def _field_count_problem(width: int, found: int) -> str:
    return f"字段数与表头不符（表头 {width} 列，该行 {found} 列），请检查该行是否缺项、多出分隔符或引号未闭合"


def _first_record(data: bytes, delimiter: str) -> list[str] | None:
    head = data[: 1 << 16].decode("utf-8", errors="replace")
    for record in csv.reader(io.StringIO(head, newline=""), delimiter=delimiter):
        return record
    return None


def _parse_csv_exact(text: str, delimiter: str) -> tuple[pd.DataFrame, int]:
    """Python's csv module, record by record: rows with the wrong number of fields are kept and flagged.

    A record that swallowed several lines (a stray quote) and still does not fit is split back into its lines,
    so one bad quote cannot make the rows after it vanish.
    """
    csv.field_size_limit(sys.maxsize)
    lines = list(io.StringIO(text, newline=""))
    reader = csv.reader(lines, delimiter=delimiter)
    records: list[tuple[list[str], str]] = []
    consumed = 0
    for record in reader:
        span = lines[consumed : reader.line_num]
        consumed = reader.line_num
        records.append((record, "".join(span)))
    if not records:
        return _empty_frame(()), 0
    header = _unique_names(records[0][0])
    width = len(header)
    expanded: list[tuple[list[str], str]] = []
    for record, source in records[1:]:
        if len(record) != width and source.count("\n") + source.count("\r") > 1:
            for line in io.StringIO(source, newline=""):
                expanded.extend((r, line) for r in csv.reader([line], delimiter=delimiter))
        else:
            expanded.append((record, source))
    columns: list[list[str]] = [[] for _ in range(width)]
    row_numbers: list[int] = []
    problems: list[str] = []
    raw_lines: list[str] = []
    for number, (record, source) in enumerate(expanded, start=2):
        if not any(record) and len(record) in (0, width):
            continue  # a blank line is no row, but it still counts in the numbering, as in Excel
        fields = record[:width] + [""] * (width - len(record))
        for col, value in zip(columns, fields, strict=True):
            col.append(value)
        row_numbers.append(number)
        if len(record) != width:
            problems.append(_field_count_problem(width, len(record)))
            raw_lines.append(source.rstrip("\r\n"))
        else:
            problems.append("")
            raw_lines.append("")
    frame = pd.DataFrame(
        {name: pd.array(col, dtype="str") for name, col in zip(header, columns, strict=True)}
    )
    frame[ROW_NUMBER] = pd.array(row_numbers, dtype="int64")
    frame[READ_PROBLEM] = pd.array(problems, dtype="str")
    frame[RAW_LINE] = pd.array(raw_lines, dtype="str")
    return frame, len(expanded)


def _unique_names(header: list[str] | tuple[str, ...]) -> list[str]:
    """Header cells as column names: stripped, blanks named by position, repeats suffixed ``.1``, ``.2`` …"""
    names: list[str] = []
    seen: set[str] = set()
    for i, cell in enumerate(header):
        base = str(cell).strip().lstrip("\ufeff") or f"column_{i + 1}"
        name, k = base, 0
        while name in seen or name in META_COLUMNS:
            k += 1
            name = f"{base}.{k}"
        seen.add(name)
        names.append(name)
    return names


def _empty_frame(header: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.array([], dtype="str") for name in header})
    frame[ROW_NUMBER] = pd.array([], dtype="int64")
    frame[READ_PROBLEM] = pd.array([], dtype="str")
    frame[RAW_LINE] = pd.array([], dtype="str")
    return frame


# ------------------------------------------------------------------------------------------------------- XLSX


def _xlsx_source(path: Path) -> RawSource:
    """An XLSX file's data sheet, streamed row by row (openpyxl's read-only mode) in frames of CHUNK_ROWS."""
    rows = _sheet_rows(path)
    head: list[list[str]] = []
    try:
        for _, cells, _ in rows:
            head.append(cells)
            if sum(map(any, head)) >= _HEADER_SEARCH_ROWS:
                break
    finally:
        rows.close()
    first = _table_header(head)
    if first is None:
        first = next((i for i, row in enumerate(head) if any(row)), None)
    if first is None:
        return RawSource(path, "xlsx", None, (), lambda: iter(()))
    header_cells = head[first]
    while header_cells and not header_cells[-1]:
        header_cells = header_cells[:-1]
    header = _unique_names(header_cells)
    return RawSource(path, "xlsx", None, tuple(header), lambda: _xlsx_chunks(path, header, first + 1))


def _sheet_rows(path: Path) -> Generator[tuple[int, list[str], list[tuple[int, str]] | None]]:
    """The data sheet's rows as (Excel row number, cell texts with merged ranges filled, the row's formula
    cells that have no value)."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as e:
        raise UnreadableFileError(
            path, f"不是有效的 XLSX 文件（{type(e).__name__}），请在 Excel 中重新保存"
        ) from e
    try:
        if not book.worksheets:
            raise UnreadableFileError(path, "XLSX 文件中没有工作表")
        sheet = _data_sheet(book.worksheets)
        merged, valueless = _sheet_extras(book, sheet)
        starts: dict[int, list[_Range]] = {}
        for r in merged:
            starts.setdefault(r[0], []).append(r)
        active: list[tuple[_Range, str]] = []
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            cells = [_cell_text(v) for v in row]
            active = [(r, v) for r, v in active if r[2] >= number]
            for r in starts.get(number, ()):
                active.append((r, cells[r[1] - 1] if r[1] <= len(cells) else ""))
            for (_, c1, _, c2), value in active:
                if len(cells) < c2:
                    cells.extend([""] * (c2 - len(cells)))
                cells[c1 - 1 : c2] = [value] * (c2 - c1 + 1)
            yield number, cells, valueless.get(number)
    finally:
        book.close()


def _xlsx_chunks(path: Path, header: list[str], header_row: int) -> Iterator[pd.DataFrame]:
    width = len(header)
    columns: list[list[str]] = [[] for _ in range(width)]
    row_numbers: list[int] = []
    problems: list[str] = []
    raw_lines: list[str] = []

    def frame() -> pd.DataFrame:
        out = pd.DataFrame(
            {name: pd.array(col, dtype="str") for name, col in zip(header, columns, strict=True)}
        )
        out[ROW_NUMBER] = pd.array(row_numbers, dtype="int64")
        out[READ_PROBLEM] = pd.array(problems, dtype="str")
        out[RAW_LINE] = pd.array(raw_lines, dtype="str")
        out[SOURCE_FILE] = path.name
        for col in columns:
            col.clear()
        row_numbers.clear()
        problems.clear()
        raw_lines.clear()
        return out

    for number, cells, formulas in _sheet_rows(path):
        if number <= header_row or not any(cells):
            continue
        used = len(cells)
        while used and not cells[used - 1]:
            used -= 1
        fields = cells[:width] + [""] * (width - min(len(cells), width))
        for col, value in zip(columns, fields, strict=True):
            col.append(value)
        row_numbers.append(number)
        if used > width:
            problems.append(_field_count_problem(width, used))
            raw_lines.append(",".join(cells[:used]))
        elif formulas:
            problems.append(_formula_problem(header, formulas))
            raw_lines.append("")
        else:
            problems.append("")
            raw_lines.append("")
        if len(row_numbers) >= CHUNK_ROWS:
            yield frame()
    if row_numbers:
        yield frame()


# (first row, first column, last row, last column), 1-based as in Excel
_Range = tuple[int, int, int, int]


def _sheet_extras(book: Any, sheet: Any) -> tuple[list[_Range], dict[int, list[tuple[int, str]]]]:
    """What openpyxl's streaming reader does not give: the sheet's merged ranges, and its formula cells that
    carry no computed value (a file written by a program, never opened in Excel) by row: (column, formula).

    One streaming pass over the sheet's XML; memory holds only these cells.
    """
    merged: list[_Range] = []
    valueless: dict[int, list[tuple[int, str]]] = {}
    with book._archive.open(sheet._worksheet_path) as xml:
        for _, element in ElementTree.iterparse(xml):
            tag = element.tag.rsplit("}", 1)[-1]
            if tag == "c":
                formula = value = None
                for child in element:
                    child_tag = child.tag.rsplit("}", 1)[-1]
                    if child_tag == "f":
                        formula = child.text or ""
                    elif child_tag in ("v", "is"):
                        value = child
                if formula is not None and (value is None or not "".join(value.itertext())):
                    column, row = coordinate_from_string(element.get("r", "A1"))
                    valueless.setdefault(row, []).append((column_index_from_string(column), formula))
                element.clear()
            elif tag == "row":
                element.clear()
            elif tag == "mergeCell":
                low, _, high = element.get("ref", "A1").partition(":")
                high = high or low
                (c1, r1), (c2, r2) = coordinate_from_string(low), coordinate_from_string(high)
                merged.append((r1, column_index_from_string(c1), r2, column_index_from_string(c2)))
    return merged, valueless


def _formula_problem(header: list[str], formulas: list[tuple[int, str]]) -> str:
    cells = "、".join(
        f"「{header[c - 1] if c <= len(header) else get_column_letter(c)}」（={f}）" for c, f in formulas
    )
    return f"公式单元格 {cells} 没有计算结果，请在 Excel 中打开、保存后重新导出，或把公式粘贴为数值"


def _data_sheet(sheets: list[Any]) -> Any:
    """The sheet holding the table: the first whose header names a contract table's required columns, else
    the first with any content (exports often put a 填表说明 sheet before the data)."""
    first_filled = None
    for sheet in sheets:
        head = [[_cell_text(v) for v in row] for row in sheet.iter_rows(max_row=10, values_only=True)]
        if _table_header(head) is not None:
            return sheet
        if first_filled is None and any(any(row) for row in head):
            first_filled = sheet
    return first_filled or sheets[0]


def _table_header(rows: list[list[str]]) -> int | None:
    """Index of the row among the first filled ones that names a contract table's required columns (a title
    row such as 「2024年教师名单」 may sit above the header); None when none does."""
    filled = [i for i, row in enumerate(rows) if any(row)][:_HEADER_SEARCH_ROWS]
    return next((i for i in filled if table_for_header(rows[i]) is not None), None)


def _cell_text(value: object) -> str:
    """A cell as the text a clerk sees; whole floats lose their ``.0`` so that ids and counts read back."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return (
            value.strftime("%Y-%m-%d") if value.time() == dt.time(0) else value.strftime("%Y-%m-%d %H:%M:%S")
        )
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d")
    return str(value)


# ---------------------------------------------------------------------------------------------------- Parquet


def _parquet_source(path: Path) -> RawSource:
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowException, OSError) as e:
        raise UnreadableFileError(
            path, "不是有效的 Parquet 文件（文件可能已损坏或并非 Parquet 格式），请重新导出"
        ) from e
    header = _unique_names(names)

    def chunks() -> Iterator[pd.DataFrame]:
        first = 2
        for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=CHUNK_ROWS):
            frame = pd.DataFrame(
                {name: _arrow_text(batch.column(i)).to_pandas() for i, name in enumerate(header)},
                index=pd.RangeIndex(batch.num_rows),
            )
            for name in header:
                frame[name] = frame[name].astype("str")
            frame[ROW_NUMBER] = pd.array(range(first, first + batch.num_rows), dtype="int64")
            frame[READ_PROBLEM] = ""
            frame[RAW_LINE] = ""
            frame[SOURCE_FILE] = path.name
            first += batch.num_rows
            yield frame

    return RawSource(path, "parquet", None, tuple(header), chunks)


def _arrow_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A Parquet column as strings: nulls become ``""``, lists join with ``;``, whole floats lose ``.0``."""
    t = col.type
    if pa.types.is_dictionary(t):
        return _arrow_text(col.cast(t.value_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pc.fill_null(pc.binary_join(_list_of_text(col), ";"), "")
    if pa.types.is_floating(t):
        values = col.to_numpy(zero_copy_only=False)
        finite = values[~pd.isna(values)]
        if finite.size and bool((finite == finite.round()).all()):
            col = pc.cast(pc.if_else(pc.is_nan(col), None, col), pa.int64())
        else:
            col = pc.if_else(pc.is_nan(col), None, col)
    elif pa.types.is_timestamp(t):  # whole seconds: Arrow's %S would print the fraction too
        col = pc.strftime(col.cast(pa.timestamp("s", t.tz), safe=False), format="%Y-%m-%d %H:%M:%S")
    elif pa.types.is_boolean(t):
        col = pc.if_else(col, "true", "false")
    return pc.fill_null(pc.cast(col, pa.string()), "")


def _list_of_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    value_type = col.type.value_type
    if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
        return col
    return pc.cast(col, pa.list_(pa.string()))
