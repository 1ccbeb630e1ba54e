"""The training project (培训项目) as selection reads it: one row of the projects contract, with the extra
columns selection reads, and the small parsers of its cells (list cells, per-county quotas, Chinese labels)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from data.reference import load_jiangxi_projects
from data.schema import FORMAT, EnumSpec
from data.workspace import Workspace

# Extra text columns of a project row that describe its content, in the order they are joined.
CONTENT_COLUMNS: Final = ("name", "description", "content", "培训内容", "target_text")
LIST_SEPARATORS: Final = re.compile(r"[;；、,，]")
UNREGISTERED: Final = "未登记"


class SelectionError(ValueError):
    """A project or allocation that cannot be used; the message is for the clerk who supplied it."""


def zh_label(spec: EnumSpec, value: object) -> str:
    """The Chinese label of a contract value (its first accepted spelling), or the value itself."""
    if _missing(value):
        return UNREGISTERED
    return spec.label(value)


def _labels(spec: EnumSpec, values: Iterable[str]) -> str:
    return "、".join(zh_label(spec, v) for v in values)


def _text(value: object) -> str:
    return unicodedata.normalize("NFKC", str(value)).strip()


def _missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def as_list(cell: object) -> list[str]:
    """A list cell of any origin (Parquet list, numpy array, 'a;b' text of an extra column), cleaned."""
    if isinstance(cell, list | tuple | np.ndarray | pd.Series):
        return [_text(v) for v in cell if not _missing(v) and _text(v)]
    if isinstance(cell, str):
        return [_text(v) for v in LIST_SEPARATORS.split(cell) if _text(v)]
    return []


def parse_county_quotas(cell: object) -> dict[str, int]:
    """Per-county allocations (各县名额) from a mapping or from text such as '修水县:50;武宁县:40'."""
    if isinstance(cell, Mapping):
        pairs = [(str(k), v) for k, v in cell.items()]
    else:
        pairs = []
        for part in as_list(cell):
            county, sep, number = part.replace("：", ":").rpartition(":")
            if not sep:
                raise SelectionError(f"各县名额“{part}”应写作 县区:人数，如 修水县:50")
            pairs.append((county, number))
    quotas: dict[str, int] = {}
    for county, number in pairs:
        try:
            value = int(str(number).strip())
        except ValueError:
            raise SelectionError(f"{county} 的名额“{number}”不是整数") from None
        if value < 0:
            raise SelectionError(f"{county} 的名额不能为负数（{value}）")
        quotas[_text(county)] = value
    return quotas


def _optional_int(value: object) -> int | None:
    return None if _missing(value) else int(value)  # type: ignore[call-overload]


def _float(value: object) -> float:
    return 0.0 if _missing(value) else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Project:
    """培训项目: one row of the projects contract, with the extra columns selection reads
    (target_school_types, excluded_subjects, county_quotas, competencies, description)."""

    project_id: str
    name: str
    text: str
    target_stages: tuple[str, ...]
    target_subjects: tuple[str, ...]
    excluded_subjects: tuple[str, ...]
    target_roles: tuple[str, ...]
    target_school_types: tuple[str, ...]
    min_title: str | None
    min_years: int | None
    scope_counties: tuple[str, ...]
    format: str | None
    days: float
    online_hours: float
    quota: int | None
    class_size: int
    county_quotas: tuple[tuple[str, int], ...]
    competencies: tuple[str, ...]

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], default_class_size: int) -> Project:
        parts = [_text(row[c]) for c in CONTENT_COLUMNS if c in row and not _missing(row[c])]
        min_title = row.get("min_title")
        fmt = row.get("format")
        return cls(
            project_id=_text(row["project_id"]),
            name=_text(row["name"]),
            text="。".join(dict.fromkeys(p for p in parts if p)),
            target_stages=tuple(as_list(row.get("target_stages"))),
            target_subjects=tuple(as_list(row.get("target_subjects"))),
            excluded_subjects=tuple(as_list(row.get("excluded_subjects"))),
            target_roles=tuple(as_list(row.get("target_roles"))),
            target_school_types=tuple(as_list(row.get("target_school_types"))),
            min_title=None if _missing(min_title) else _text(min_title),
            min_years=_optional_int(row.get("min_years")),
            scope_counties=tuple(as_list(row.get("scope_counties"))),
            format=None if _missing(fmt) else _text(fmt),
            days=_float(row.get("days")),
            online_hours=_float(row.get("online_hours")),
            quota=_optional_int(row.get("quota")),
            class_size=_optional_int(row.get("class_size")) or default_class_size,
            county_quotas=tuple(parse_county_quotas(row.get("county_quotas")).items()),
            competencies=tuple(as_list(row.get("competencies"))),
        )

    @property
    def format_label(self) -> str:
        """The format's Chinese label (未登记 when the row gives none)."""
        return zh_label(FORMAT, self.format) if self.format else UNREGISTERED

    @property
    def scope_text(self) -> str:
        if not self.scope_counties:
            return "全省"
        shown = "、".join(self.scope_counties[:5])
        more = f"等 {len(self.scope_counties)} 个县区" if len(self.scope_counties) > 5 else ""
        return shown + more


def project_table(ws: Workspace) -> pd.DataFrame:
    """The workspace's projects table, or the built-in Jiangxi 2022 table (seed 004) when it has none."""
    return ws.read_table("projects") if ws.has_table("projects") else load_jiangxi_projects()
