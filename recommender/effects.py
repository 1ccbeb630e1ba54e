"""训后成效 of a workspace: growth measured at every assessment occasion, and what each course and project changed.

`measure_growth(ws)` reads the workspace's tables once, calibrates the diagnostic instrument as portraits do
(`features.portrait.calibrate_on`, the same seeded sample) and measures every teacher at each of their
assessment occasions (`features.growth`). It writes WS/effects/: `history.parquet` (the portrait as of each
occasion: teacher_id, date, competency, estimate, std_error, source), `changes.parquet` (pre/post per teacher and
competency, with county, city, school and stage for cohorts), and the completed units `exposures.parquet`
(kind, teacher_id, unit_id, date) with what they teach, `teaches.parquet` (kind, unit_id, competency), and the
province-wide effects `units.parquet` (`unit_effects`). `tdr effects` (when WS/effects/ is absent or older
than the tables) and `tdr demo` run it; the service reads those files.

`unit_effects(growth, by)` is `models.effects.estimate_effects` for courses and for projects, over the whole
province or per cohort (`by`), as the CLI contract's table: course_id / project_id, competency, effect, ci_low,
ci_high, n_treated, n_comparison, method (plus std_error and known).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.workspace import Workspace, write_parquet_atomic
from features.diagnostics import calibration_sample
from features.growth import (
    changes,
    course_teaches,
    exposures,
    independent,
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
    waves = unshrunk(
        occasion_measurements(independent(cal), tables.responses, tables.scores, cumulative=False)
    )
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
    # the province-wide effects, estimated once here: the service reads them instead of estimating per request
    write_parquet_atomic(unit_effects(growth), growth_dir(ws) / "units.parquet")
    log.info("growth: %d teachers with changes", growth.changes["teacher_id"].nunique())
    return growth


def province_effects(ws: Workspace, growth: Growth) -> pd.DataFrame:
    """`unit_effects(growth)` as `measure_growth` wrote it (WS/effects/units.parquet), estimated now when absent."""
    path = growth_dir(ws) / "units.parquet"
    return pd.read_parquet(path) if path.exists() else unit_effects(growth)


def _taxonomy(ws: Workspace) -> pd.DataFrame:
    from data.reference import load_taxonomy

    t = _read(ws, "taxonomy")
    return t if len(t) else load_taxonomy()


def read_growth(ws: Workspace, history: bool = True) -> Growth | None:
    """WS/effects/ as written by `measure_growth` (without the history, empty, unless `history`); None when it
    has not been measured."""
    folder = growth_dir(ws)
    if not all((folder / f"{n}.parquet").exists() for n in _FILES):
        return None
    frames = {n: pd.read_parquet(folder / f"{n}.parquet") for n in _FILES if history or n != "history"}
    return Growth(**{"history": pd.DataFrame(), **frames})


def history_of(ws: Workspace, teacher_id: str) -> pd.DataFrame:
    """One teacher's rows of WS/effects/history.parquet (filtered while reading; empty when not measured)."""
    path = growth_dir(ws) / "history.parquet"
    if not path.exists():
        return pd.DataFrame(columns=["teacher_id", "date", "competency", "estimate", "std_error", "source"])
    return pd.read_parquet(path, filters=[("teacher_id", "==", teacher_id)])


_INPUTS = ("teachers", "courses", "training_records", "items", "responses", "competency_scores")


def growth_of(ws: Workspace) -> Growth:
    """The workspace's growth as last measured, measured now when it has not been or when a table it is
    measured from changed since (a later `tdr ingest`)."""
    measured = growth_dir(ws) / "units.parquet"
    inputs = [ws.table_path(t) for t in _INPUTS if ws.has_table(t)]
    fresh = measured.exists() and all(p.stat().st_mtime <= measured.stat().st_mtime for p in inputs)
    return (read_growth(ws) if fresh else None) or measure_growth(ws)


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
        if kind == "project":
            # a project is estimated on every competency: the rows of competencies none of its takers was
            # assessed on twice say nothing (a course keeps its rows: that it has no number is news)
            e = e[e["n_treated"] > 0]
        other = UNIT_COLUMN["project" if kind == "course" else "course"]
        parts.append(e.rename(columns={"unit_id": UNIT_COLUMN[kind]}).assign(**{other: None}))
    return pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS]


# ------------------------------------------------------------------------------------------ against a truth

# recovery is reported for the (unit, competency) pairs with at least this many takers assessed twice
RECOVERY_TAKERS = (5, 30, 50)


def effect_recovery(
    estimates: pd.DataFrame, truth: pd.DataFrame, key: str, untaught_zero: bool = False
) -> dict[str, Any]:
    """How `estimates` (unit_id, competency, effect, ci_low, ci_high, n_treated, known) recover the truth's mean
    effect between a teacher's two waves (`truth`: `key`, competency, effect_points_between, as
    `tdr generate` writes course_effects / project_effects): per minimum number of takers, the pairs given a
    number, Pearson correlation, mean bias (points), coverage of the interval and RMSE. `untaught_zero`: also
    the estimates of a unit of the truth on a competency it does not teach, whose true effect is nil (a project
    is estimated on every competency)."""
    t = truth.rename(columns={key: "unit_id"})[["unit_id", "competency", "effect_points_between"]]
    known = estimates[estimates["known"].astype(bool)]
    if untaught_zero:
        j = known[known["unit_id"].isin(t["unit_id"])].merge(
            t, on=["unit_id", "competency"], how="left", indicator=True
        )
        j = j[(j["_merge"] == "left_only") | j["effect_points_between"].notna()]
        j = j.assign(effect_points_between=j["effect_points_between"].fillna(0.0))
    else:
        j = known.merge(t.dropna(), on=["unit_id", "competency"])
    out: dict[str, Any] = {}
    for lo in RECOVERY_TAKERS:
        k = j[j["n_treated"] >= lo]
        true, est = k["effect_points_between"].to_numpy(), k["effect"].to_numpy(dtype=np.float64)
        figures: dict[str, Any] = {"pairs": int(len(k))}
        if len(k) >= 3:
            figures.update(
                correlation=round(float(np.corrcoef(est, true)[0, 1]), 3),
                bias=round(float(np.mean(est - true)), 2),
                coverage=round(float(np.mean((k["ci_low"] <= true) & (true <= k["ci_high"]))), 3),
                rmse=round(float(np.sqrt(np.mean((est - true) ** 2))), 2),
            )
        out[f"takers_ge_{lo}"] = figures
    return out


def truth_recovery(
    growth: Growth, course_truth: pd.DataFrame, project_truth: pd.DataFrame | None
) -> dict[str, Any]:
    """`tdr evaluate --truth`'s effects section: recovery of course and project effects by TDR's estimator and,
    for scale, by the naive pre/post difference, on the same changes."""
    report: dict[str, Any] = {"teachers_assessed_twice": int(growth.changes["teacher_id"].nunique())}
    for kind, truth, key in (("course", course_truth, "course_id"), ("project", project_truth, "project_id")):
        if truth is None:
            continue
        ex = growth.exposures[growth.exposures["kind"] == kind]
        te = growth.teaches[growth.teaches["kind"] == kind]
        report[f"{kind}s"] = {
            method: effect_recovery(estimate_effects(growth.changes, ex, te, method=method), truth, key)
            for method in ("adjusted", "naive")
        }
    return report


# ------------------------------------------------------------------------------------------ service views
# what the 训后成效 page and a teacher's 我的成长 read (the API's `EffectsReport` and `Growth` schemas)


def unit_outcomes(records: pd.DataFrame, teacher_ids: np.ndarray | None = None) -> pd.DataFrame:
    """Per (kind, unit_id): records ended one way or another (`n_records`), the share completed among them
    (enrolled ones are still open) and the mean satisfaction (1–5) of those who rated, over all teachers or
    `teacher_ids`."""
    r = records if teacher_ids is None else records[records["teacher_id"].astype(str).isin(teacher_ids)]
    parts = []
    for kind in KINDS:
        column = UNIT_COLUMN[kind]
        if column not in r.columns:
            continue
        closed = r[r[column].notna() & r["status"].isin(["completed", "dropped", "no_show"])]
        sat = (
            closed["satisfaction"]
            if "satisfaction" in closed.columns
            else pd.Series(np.nan, index=closed.index)
        )
        g = closed.assign(done=closed["status"] == "completed", sat=pd.to_numeric(sat, errors="coerce"))
        agg = g.groupby(g[column].astype(str)).agg(
            n_records=("done", "size"), completion_rate=("done", "mean"), satisfaction=("sat", "mean")
        )
        parts.append(agg.rename_axis("unit_id").reset_index().assign(kind=kind))
    empty = pd.DataFrame(columns=["unit_id", "n_records", "completion_rate", "satisfaction", "kind"])
    return pd.concat(parts, ignore_index=True) if parts else empty


def effects_report(
    growth: Growth,
    records: pd.DataFrame,
    titles: dict[str, str],
    names: dict[str, str],
    teacher_ids: np.ndarray | None,
    scope: str | None,
    province: pd.DataFrame | None = None,
) -> dict[str, object]:
    """The `EffectsReport` of the teachers `teacher_ids` (all when None): one row per unit and competency that
    someone in scope took (measured change with its interval, or none where evidence is thin), beside the
    unit's completion rate and satisfaction in scope; units nobody was measured on still show those two.
    `province`: the effects over all teachers when already estimated (used when the scope holds them all)."""
    everyone = teacher_ids is None or bool(growth.changes["teacher_id"].isin(teacher_ids).all())
    known = province if everyone else None
    effects = known if known is not None else unit_effects(growth, teacher_ids=teacher_ids)
    effects = effects.assign(
        kind=np.where(effects["course_id"].notna(), "course", "project"),
        unit_id=effects["course_id"].fillna(effects["project_id"]),
    )
    effects = effects[effects["n_treated"] > 0]
    outcomes = unit_outcomes(records, teacher_ids)
    rows = outcomes.merge(effects, on=["kind", "unit_id"], how="left")
    rows = rows.assign(
        title=rows["unit_id"].map(titles),
        competency_name=rows["competency"].map(names),
        n_treated=rows["n_treated"].fillna(0).astype(int),
        n_comparison=rows["n_comparison"].fillna(0).astype(int),
        known=rows["known"].fillna(False).astype(bool),
    )
    rows = rows.sort_values(["known", "effect"], ascending=[False, False], kind="stable")
    keep = [
        "kind", "unit_id", "title", "competency", "competency_name", "effect", "ci_low", "ci_high", "n_treated",
        "n_comparison", "known", "method", "n_records", "completion_rate", "satisfaction",
    ]  # fmt: skip
    measured = (
        growth.changes
        if teacher_ids is None
        else growth.changes[growth.changes["teacher_id"].isin(teacher_ids)]
    )
    return {
        "scope": scope,
        "n_teachers_measured": int(measured["teacher_id"].nunique()),
        "level": 0.9,
        "rows": rows[keep].astype(object).where(rows[keep].notna(), None).to_dict("records"),
    }


def teacher_growth(
    history: pd.DataFrame,
    records: pd.DataFrame,
    effects: pd.DataFrame,
    titles: dict[str, str],
    names: dict[str, tuple[str | None, str | None]],
) -> dict[str, object]:
    """The `Growth` of one teacher from their rows of WS/effects/history.parquet and of the training records:
    the trajectory (estimate and standard error per competency at each occasion), and each course completed
    between their first and last occasion with, per competency it teaches, the teacher's own measured change
    and the course's estimated effect across the province (`effects`: `unit_effects` rows)."""
    h = history.sort_values(["date", "competency"], kind="stable")
    dates = sorted(pd.to_datetime(h["date"]).dt.date.unique().tolist())
    points = [
        {
            "date": pd.Timestamp(d).date(),
            "competency": str(c),
            "name": names.get(str(c), (None, None))[0],
            "domain": names.get(str(c), (None, None))[1],
            "estimate": float(e),
            "std_error": float(s),
        }
        for d, c, e, s in zip(h["date"], h["competency"], h["estimate"], h["std_error"], strict=True)
    ]
    moved: list[dict[str, object]] = []
    if len(dates) >= 2 and len(records):
        by_comp = h.sort_values("date", kind="stable").groupby("competency")["estimate"]
        change_of = (by_comp.last() - by_comp.first()).to_dict()
        done = exposures(records, "course_id")
        lo, hi = pd.Timestamp(dates[0]), pd.Timestamp(dates[-1])
        done = done[(done["date"] > lo) & (done["date"] <= hi)].sort_values("date", kind="stable")
        e = effects[effects["course_id"].notna()].set_index(["course_id", "competency"])
        for cid, when in zip(done["unit_id"], done["date"], strict=True):
            rows = e.loc[cid] if cid in e.index.get_level_values(0) else pd.DataFrame()
            comps = []
            for comp, row in rows.iterrows():
                comps.append(
                    {
                        "competency": str(comp),
                        "name": names.get(str(comp), (None, None))[0],
                        "change": change_of.get(comp),
                        "effect": row["effect"],
                        "ci_low": row["ci_low"],
                        "ci_high": row["ci_high"],
                        "known": bool(row["known"]),
                    }
                )
            moved.append(
                {"course_id": cid, "title": titles.get(cid), "date": when.date(), "competencies": comps}
            )
    return {"dates": dates, "points": points, "courses": moved}
