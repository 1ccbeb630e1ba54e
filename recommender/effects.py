"""训后成效 of a workspace: growth measured at every assessment occasion, and what each course and project changed.

`measure_growth(ws)` reads the workspace's tables once, calibrates the diagnostic instrument as portraits do
(`features.portrait.calibrate_on`, the same seeded sample) and measures every teacher at each of their
assessment occasions (`features.growth`). It writes WS/effects/: `history.parquet` (the portrait as of each
occasion: teacher_id, date, competency, estimate, std_error, source), `changes.parquet` (pre/post per teacher and
competency, with county, city, school and stage for cohorts), and the completed units `exposures.parquet`
(kind, teacher_id, unit_id, date) with what they teach, `teaches.parquet` (kind, unit_id, competency).
`tdr train` runs it after the portraits; `tdr effects` and the service read those files.

`unit_effects(growth, by)` is `models.effects.estimate_effects` for courses and for projects, over the whole
province or per cohort (`by`), as the CLI contract's table: course_id / project_id, competency, effect, ci_low,
ci_high, n_treated, n_comparison, method (plus std_error and known).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.workspace import Workspace, write_parquet_atomic
from features.diagnostics import calibration_sample
from features.growth import (
    changes,
    course_teaches,
    exposures,
    occasion_measurements,
    project_teaches,
    unshrunk,
)
from features.portrait import Tables, as_of, calibrate_on
from models.bundle import current_bundle_dir
from models.effects import Method, estimate_effects
from recommender.portraits import latest_dates

log = logging.getLogger(__name__)

KINDS = ("course", "project")
UNIT_COLUMN = {"course": "course_id", "project": "project_id"}
# cohort columns a teacher's changes carry (the CLI's --by)
COHORT_COLUMNS = ("county", "city", "school_id", "stage")
BY_ALIASES = {"school": "school_id"}
OUTPUT_COLUMNS = [
    "course_id", "project_id", "competency", "effect", "ci_low", "ci_high", "n_treated", "n_comparison", "method",
    "std_error", "known",
]  # fmt: skip
_FILES = ("history", "changes", "exposures", "teaches")


@dataclass(frozen=True)
class Growth:
    """WS/effects/: measurements at every occasion, pre/post changes, completed units and what they teach."""

    history: pd.DataFrame
    changes: pd.DataFrame
    exposures: pd.DataFrame
    teaches: pd.DataFrame


def growth_dir(ws: Workspace) -> Path:
    return ws.root / "effects"


def _courses_with_competencies(ws: Workspace) -> pd.DataFrame:
    """The catalogue with every course's competencies, the inferred ones of the current bundle when trained."""
    try:
        path = current_bundle_dir(ws.bundles_dir) / "courses.parquet"
    except FileNotFoundError:
        return ws.read_table("courses")
    c = pd.read_parquet(path, columns=["course_id", "competencies_used"])
    return c.rename(columns={"competencies_used": "competencies"})


def _read(ws: Workspace, name: str) -> pd.DataFrame:
    return ws.read_table(name) if ws.has_table(name) else pd.DataFrame()


def compute_growth(tables: Tables, courses: pd.DataFrame, asof: pd.Timestamp, seed: int = 0) -> Growth:
    """Growth from in-memory tables (`tables.responses` and `.scores` whole): see the module docstring."""
    sample = calibration_sample(tables.teachers["teacher_id"], seed)
    cal = calibrate_on(tables, sample, asof, seed)
    history = occasion_measurements(cal, tables.responses, tables.scores, cumulative=True)
    waves = unshrunk(occasion_measurements(cal, tables.responses, tables.scores, cumulative=False))
    cohort = [c for c in COHORT_COLUMNS if c in tables.teachers.columns]
    ch = changes(waves, tables.teachers[["teacher_id", *cohort, "subject"]], covariates=(*cohort, "subject"))
    codes = tables.taxonomy["code"].astype(str).tolist()
    exp = {kind: exposures(tables.records, UNIT_COLUMN[kind]) for kind in KINDS}
    teaches = {"course": course_teaches(courses), "project": project_teaches(exp["project"], codes)}
    return Growth(
        history=history,
        changes=ch,
        exposures=pd.concat([exp[k].assign(kind=k) for k in KINDS], ignore_index=True),
        teaches=pd.concat([teaches[k].assign(kind=k) for k in KINDS], ignore_index=True),
    )


def measure_growth(ws: Workspace, seed: int = 0) -> Growth:
    """Compute the workspace's growth (in memory) and write it under WS/effects/, each file atomically."""
    tables = Tables(
        teachers=ws.read_table("teachers"),
        courses=ws.read_table("courses"),
        records=_read(ws, "training_records"),
        items=_read(ws, "items"),
        responses=_read(ws, "responses"),
        scores=_read(ws, "competency_scores"),
        taxonomy=_taxonomy(ws),
    )
    growth = compute_growth(tables, _courses_with_competencies(ws), as_of(latest_dates(ws)), seed)
    for name in _FILES:
        write_parquet_atomic(getattr(growth, name), growth_dir(ws) / f"{name}.parquet")
    log.info("growth: %d teachers with changes", growth.changes["teacher_id"].nunique())
    return growth


def _taxonomy(ws: Workspace) -> pd.DataFrame:
    from data.reference import load_taxonomy

    t = _read(ws, "taxonomy")
    return t if len(t) else load_taxonomy()


def read_growth(ws: Workspace) -> Growth | None:
    """WS/effects/ as written by `measure_growth`; None when it has not been measured."""
    folder = growth_dir(ws)
    if not all((folder / f"{n}.parquet").exists() for n in _FILES):
        return None
    return Growth(**{n: pd.read_parquet(folder / f"{n}.parquet") for n in _FILES})


def growth_of(ws: Workspace) -> Growth:
    """The workspace's growth as `tdr train` wrote it, measured now when it has not been."""
    return read_growth(ws) or measure_growth(ws)


def unit_effects(
    growth: Growth,
    by: str | None = None,
    method: Method = "adjusted",
    teacher_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every course's and project's effects (OUTPUT_COLUMNS), over all teachers (or `teacher_ids`), or per
    cohort of the `by` column (then the cohort column comes first and each cohort's teachers are compared
    among themselves)."""
    ch = growth.changes
    if teacher_ids is not None:
        ch = ch[ch["teacher_id"].isin(np.asarray(teacher_ids).astype(str))]
    if by is None:
        return _effects(ch, growth, method)
    column = BY_ALIASES.get(by, by)
    if column not in COHORT_COLUMNS:
        raise ValueError(f"cannot group effects by {by!r}; one of county, city, school, stage")
    parts = [
        _effects(rows, growth, method).assign(**{column: group})
        for group, rows in ch.groupby(ch[column].astype(str), sort=True)
    ]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[column, *OUTPUT_COLUMNS])
    return out[[column, *OUTPUT_COLUMNS]]


def _effects(ch: pd.DataFrame, growth: Growth, method: Method) -> pd.DataFrame:
    parts = []
    for kind in KINDS:
        e = estimate_effects(
            ch,
            growth.exposures[growth.exposures["kind"] == kind],
            growth.teaches[growth.teaches["kind"] == kind],
            method=method,
        )
        other = UNIT_COLUMN["project" if kind == "course" else "course"]
        parts.append(e.rename(columns={"unit_id": UNIT_COLUMN[kind]}).assign(**{other: None}))
    return pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS]
