"""Excel workbooks (.xlsx) for trainers: write-only sheets with a bold header row, every text cell kept as text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

_BOLD = Font(bold=True)


def _cell(sheet: Any, value: Any, bold: bool = False) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        # text stays text: a school named "=HYPERLINK(…)" must not become a formula in a clerk's Excel
        cell.data_type = "s"
    if bold:
        cell.font = _BOLD
    return cell


def append_sheet(wb: Workbook, title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A new sheet ``title`` of a write-only workbook: the header in bold, then the rows."""
    sheet = wb.create_sheet(title)
    sheet.append([_cell(sheet, h, bold=True) for h in header])
    for row in rows:
        sheet.append([_cell(sheet, v) for v in row])
