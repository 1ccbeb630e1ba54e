"""The contract tables (and the course truth table) in Arrow form, and their atomic writers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from data.synthetic.catalogue import Catalogue
from data.synthetic.common import (
    FORMATS,
    MANDATORY_TOPICS,
    PROVINCE,
    ROLES,
    SCHOOL_TYPES,
    STAGES,
    STATUSES,
    SUBJECTS,
    TITLES,
    as_list,
)
from data.synthetic.teachers import Teachers
from data.workspace import atomic_write

CSV_OPTIONS = pacsv.WriteOptions(quoting_style="needed")


def write_csv(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda p: pacsv.write_csv(table, p, write_options=CSV_OPTIONS))


# rows of a large table turned into Arrow (strings) and written at a time: bounds the memory of a big province
CSV_SLICE = 4_000_000


def write_csv_sliced(rows: int, table_of: Callable[[slice], pa.Table], path: Path) -> int:
    """Write, as `write_csv` would, the table of `rows` rows whose row slices `table_of` builds, one slice at a
    time; returns `rows`."""

    def write(target: Path) -> None:
        first = table_of(slice(0, min(rows, CSV_SLICE)))
        with pacsv.CSVWriter(target, first.schema, write_options=CSV_OPTIONS) as writer:
            writer.write_table(first)
            for lo in range(CSV_SLICE, rows, CSV_SLICE):
                writer.write_table(table_of(slice(lo, lo + CSV_SLICE)))

    atomic_write(path, write)
    return rows


def write_parquet(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p))


def dates_array(days: np.ndarray) -> pa.Array:
    days = np.asarray(days, dtype=np.int64)
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=days < 0)


def _floats(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, mask=np.isnan(values))


def _join(parts: np.ndarray, vocabulary: Sequence[str]) -> list[str | None]:
    """';'-joined names of the true entries of each row of a bool matrix (None when empty)."""
    out: list[str | None] = []
    for row in parts:
        names = [vocabulary[int(j)] for j in np.flatnonzero(row)]
        out.append(";".join(names) if names else None)
    return out


def teachers_table(t: Teachers, geo: pd.DataFrame) -> pa.Table:
    role_names = np.array(
        _join(np.array([[(m >> j) & 1 for j in range(len(ROLES))] for m in range(32)]), ROLES)
    )
    mask = (t.roles * (1 << np.arange(len(ROLES)))).sum(axis=1)
    county_ids = t.county
    return pa.table(
        {
            "teacher_id": pa.array(t.ids),
            "province": pa.array(np.full(len(t.ids), PROVINCE)),
            "city": pa.array(geo["city"].to_numpy()[county_ids]),
            "county": pa.array(geo["county"].to_numpy()[county_ids]),
            "school_id": pa.array(np.char.add("S", np.char.zfill((t.school + 1).astype(str), 6))),
            "school_type": pa.array(np.array(SCHOOL_TYPES)[t.school_type]),
            "stage": pa.array(np.array(STAGES)[t.stage]),
            "subject": pa.array(np.array(SUBJECTS)[t.subject]),
            "title": pa.array(np.array(TITLES)[t.title]),
            "years_teaching": pa.array(t.years.astype(np.int64)),
            "roles": pa.array(role_names[mask]),
            "birth_year": pa.array(t.birth_year.astype(np.int64)),
            "gender": pa.array(np.where(t.female, "女", "男")),
        }
    )


def courses_table(cat: Catalogue, codes: Sequence[str]) -> pa.Table:
    code_lists = [[codes[j] for j in row[row < len(codes)]] for row in cat.comp_idx]
    comp = [";".join(cl) if tag else None for cl, tag in zip(code_lists, cat.tagged, strict=True)]
    topics = list(MANDATORY_TOPICS)
    return pa.table(
        {
            "course_id": pa.array(cat.ids),
            "title": pa.array(cat.titles),
            "description": pa.array(cat.descriptions),
            "hours": pa.array(cat.hours.astype(np.float64)),
            "format": pa.array(np.array(FORMATS)[cat.fmt]),
            "competencies": pa.array(comp, type=pa.string()),
            "stages": pa.array(
                [
                    s if r else None
                    for s, r in zip(_join(cat.stage_mask, STAGES), cat.stage_restricted, strict=True)
                ],
                type=pa.string(),
            ),
            "subjects": pa.array([SUBJECTS[s] if s >= 0 else None for s in cat.subject], type=pa.string()),
            "level": pa.array(cat.level.astype(np.int64)),
            "practical": pa.array(cat.practical == 1, mask=cat.practical < 0),
            "mandatory_topic": pa.array(
                [topics[m] if m >= 0 else None for m in cat.mandatory], type=pa.string()
            ),
            "prerequisites": pa.array([cat.ids[p] if p >= 0 else None for p in cat.prereq], type=pa.string()),
            "provider": pa.array(np.array(cat.providers)[cat.provider]),
            "cost_yuan": pa.array(cat.cost.astype(np.float64)),
            "active": pa.array(cat.active),
        }
    )


def course_truth_table(cat: Catalogue, codes: Sequence[str]) -> pa.Table:
    k = len(codes)
    return pa.table(
        {
            "course_id": pa.array(cat.ids),
            "competencies": pa.array([[codes[j] for j in row[row < k]] for row in cat.comp_idx]),
            "weights": pa.array(
                [w[row < k].tolist() for row, w in zip(cat.comp_idx, cat.comp_w, strict=True)]
            ),
            "quality": pa.array(cat.quality),
            "level": pa.array(cat.level.astype(np.int64)),
            "popularity": pa.array(cat.popularity),
            "tagged": pa.array(cat.tagged),
            "stages": pa.array(
                [
                    [STAGES[j] for j in np.flatnonzero(m)] if r else []
                    for m, r in zip(cat.stage_mask, cat.stage_restricted, strict=True)
                ]
            ),
            "subjects": pa.array(
                [[SUBJECTS[s]] if s >= 0 else [] for s in cat.subject], type=pa.list_(pa.string())
            ),
            "practical": pa.array(cat.practical == 1, mask=cat.practical < 0),
            "active": pa.array(cat.active),
            "prerequisites": pa.array(
                [[cat.ids[p]] if p >= 0 else [] for p in cat.prereq], type=pa.list_(pa.string())
            ),
            "launch_year": pa.array(cat.launch_year.astype(np.int64)),
        }
    )


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """prefix + zero-padded 1..n, built in Arrow (millions of ids without a Python loop)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _take(values: Sequence[str] | np.ndarray, index: np.ndarray) -> pa.Array:
    """values[index] as an Arrow string column, null where index < 0."""
    index = np.asarray(index, dtype=np.int64)
    return pa.array(list(values), type=pa.string()).take(pa.array(index, mask=index < 0))


def record_order(rec: dict[str, np.ndarray], proj: dict[str, np.ndarray]) -> np.ndarray:
    """The order of training_records.csv: course records then project records, sorted by start date, then
    teacher, then that order; row i of the file (record R{i+1:08d}) is record order[i] of the two."""
    teacher = np.concatenate([rec["teacher"], proj["teacher"]]).astype(np.int64)
    start = np.concatenate([rec["start"], proj["start"]]).astype(np.int64)
    return np.lexsort((np.arange(len(teacher)), teacher, start))


def records_table(
    rec: dict[str, np.ndarray],
    proj: dict[str, np.ndarray],
    cat: Catalogue,
    ids: pa.Array,
    rng: np.random.Generator,
) -> pa.Table:
    """Course and project records together, ordered by start date then teacher, then numbered."""
    n_rec = len(rec["teacher"])
    p_n = len(proj["teacher"])
    none = np.full(p_n, -1, dtype=np.int64)

    def both(key: str, project_values: np.ndarray) -> np.ndarray:
        return np.concatenate([rec[key], project_values])

    order = record_order(rec, proj)
    done = proj["status"] == 1
    p_score = np.where(done, np.round(rng.normal(86, 6, p_n).clip(60, 100), 1), np.nan)
    p_sat = np.where(done, np.clip(np.round(rng.normal(4.3, 0.6, p_n)), 1, 5), np.nan)
    teacher = both("teacher", proj["teacher"]).astype(np.int64)
    start = both("start", proj["start"]).astype(np.int64)
    course = np.concatenate([rec["course"], none])[order]
    run = np.concatenate([np.full(n_rec, -1, dtype=np.int64), proj["run"]])[order]
    run_format = [FORMATS.index(f) if f in FORMATS else 1 for f in proj["run_format"]]
    fmt = np.concatenate([cat.fmt[rec["course"]], np.asarray(run_format, dtype=np.int64)[proj["run"]]])[order]
    return pa.table(
        {
            "record_id": _ids("R", n_rec + p_n, 8),
            "teacher_id": ids.take(pa.array(teacher[order])),
            "course_id": _take(cat.ids, course),
            "project_id": _take(proj["run_id"], run),
            "project_name": _take(proj["run_name"], run),
            "start_date": dates_array(start[order]),
            "end_date": dates_array(both("end", proj["end"])[order]),
            "hours": pa.array(both("hours", proj["hours"])[order].astype(np.float64)),
            "format": _take(FORMATS, fmt),
            "status": _take(STATUSES, both("status", proj["status"])[order]),
            "score": _floats(both("score", p_score)[order]),
            "satisfaction": _floats(both("satisfaction", p_sat)[order]),
        }
    )


def projects_table(projects: pd.DataFrame) -> pa.Table:
    """The reference project table in the contract's file form (list cells joined with ';')."""
    df = projects.copy()
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            df[col] = df[col].map(lambda v: ";".join(map(str, v)) if len(as_list(v)) else None)
    return pa.Table.from_pandas(df, preserve_index=False)
