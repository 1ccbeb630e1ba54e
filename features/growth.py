"""Growth (成长轨迹): competencies measured at each assessment occasion, and the pre/post changes that training
effects are estimated from (`models.effects`).

An occasion is one sitting of a teacher's assessments: their dated responses and scores, grouped so that dates
less than WAVE_GAP_DAYS apart count as one occasion, dated by its last day. Each occasion is measured with the
province's calibration (`features.diagnostics.measure`, the portrait's own instrument), in one call for all
occasions (each teacher × occasion measured as its own respondent):

- `occasion_measurements(..., cumulative=True)`: the portrait as of each occasion — everything known up to that
  date, older measurements counting less, as `features.diagnostics.fuse` dates them (`tdr portraits --history`).
- `cumulative=False`: each occasion's own data only, so that successive measurements have independent errors
  (what pre→post changes need).

`changes` pairs a teacher's first and last occasion per competency. Item-based estimates are posterior means,
shrunk toward the population; a difference of two shrunk estimates understates a change, and their error is
not classical. `unshrunk` undoes the shrinkage (normal–normal: m = μ + r (x − μ), r = 1 − se²/σ²), giving
measurements that scatter around the truth with a known standard error, which the estimator corrects for.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from features.diagnostics import Calibration, measure

# a teacher's assessments less than this many days apart are one occasion (a test, its self-rating a week
# before and a classroom observation a month after belong together; training between them is rare)
WAVE_GAP_DAYS = 90
# shrinkage is undone at most down to this reliability (a nearly unmeasured competency is left out instead)
MIN_RELIABILITY = 0.2
# an occasion's key while it is measured as its own respondent
_SEP = "\x1f"
MEASUREMENT_COLUMNS = ["teacher_id", "date", "competency", "estimate", "std_error", "source"]


def independent(cal: Calibration) -> Calibration:
    """The calibration with the competencies independent a priori (identity prior correlation, items as they
    are): each competency is then read from its own items, so a change in one competency does not leak into the
    measurement of its correlated neighbours, and undoing the shrinkage (`unshrunk`) is exact per competency."""
    if cal.model is None:
        return cal
    model = copy.copy(cal.model)
    model.sigma_ = np.eye(len(model.sigma_))
    return replace(cal, model=model)


def occasions(responses: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """(teacher_id, taken_at, date): every dated assessment day of a teacher and the date of the occasion it
    belongs to (undated rows belong to none)."""
    days = pd.concat(
        [f[["teacher_id", "taken_at"]] for f in (responses, scores) if len(f) and "taken_at" in f.columns],
        ignore_index=True,
    )
    if days.empty:
        return pd.DataFrame(
            {
                "teacher_id": pd.Series(dtype=str),
                "taken_at": pd.Series(dtype="datetime64[ns]"),
                "date": pd.Series(dtype="datetime64[ns]"),
            }
        )
    days = days.dropna().assign(
        teacher_id=lambda d: d["teacher_id"].astype(str), taken_at=lambda d: pd.to_datetime(d["taken_at"])
    )
    days = (
        days.drop_duplicates().sort_values(["teacher_id", "taken_at"], kind="stable").reset_index(drop=True)
    )
    tid = days["teacher_id"].to_numpy()
    t = days["taken_at"].to_numpy(dtype="datetime64[ns]")
    new_teacher = np.r_[True, tid[1:] != tid[:-1]]
    gap = np.r_[np.timedelta64(0, "ns"), np.diff(t)] > np.timedelta64(WAVE_GAP_DAYS, "D")
    occasion = np.cumsum(new_teacher | gap)
    last = pd.Series(t).groupby(occasion).transform("max").to_numpy()
    return days.assign(date=last)


def _keyed(frame: pd.DataFrame, days: pd.DataFrame, cumulative: bool) -> pd.DataFrame:
    """`frame`'s dated rows with teacher_id replaced by the key of each occasion they count toward: their own,
    or (cumulative) their own and every later one of the same teacher."""
    if frame.empty:
        return frame
    f = frame.dropna(subset=["taken_at"]).assign(
        teacher_id=lambda d: d["teacher_id"].astype(str), taken_at=lambda d: pd.to_datetime(d["taken_at"])
    )
    f = f.merge(days, on=["teacher_id", "taken_at"], how="inner")
    if cumulative:
        later = days[["teacher_id", "date"]].drop_duplicates().rename(columns={"date": "as_of"})
        f = f.merge(later, on="teacher_id")
        f = f[f["as_of"] >= f["date"]].drop(columns="date").rename(columns={"as_of": "date"})
    key = f["teacher_id"] + _SEP + f["date"].dt.strftime("%Y-%m-%d")
    return f.drop(columns="date").assign(teacher_id=key)


def occasion_measurements(
    cal: Calibration, responses: pd.DataFrame, scores: pd.DataFrame, cumulative: bool
) -> pd.DataFrame:
    """MEASUREMENT_COLUMNS: each teacher's measured competencies at each of their occasions (see the module
    docstring), sorted by teacher, date and competency."""
    days = occasions(responses, scores)
    if days.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in MEASUREMENT_COLUMNS})
    r, s = _keyed(responses, days, cumulative), _keyed(scores, days, cumulative)
    asof = days["date"].max() + pd.Timedelta(days=1)
    m = measure(cal, r, s if len(s) else scores.iloc[:0], asof)
    parts = m["teacher_id"].str.split(_SEP, n=1, expand=True)
    out = m.assign(teacher_id=parts[0], date=pd.to_datetime(parts[1]))[MEASUREMENT_COLUMNS]
    return out.sort_values(["teacher_id", "date", "competency"], kind="stable").reset_index(drop=True)


def unshrunk(measured: pd.DataFrame) -> pd.DataFrame:
    """`measured` with shrunk (item-based or fused) estimates turned into classical measurements: per
    competency σ² = var(estimate) + mean(se²) (the spread of the truth), r = 1 − se²/σ², estimate → μ + (m − μ)/r,
    se → se/√r. Rows of reliability under MIN_RELIABILITY are dropped; scale-only scores are kept as they are."""
    m = measured.copy()
    shrunk = m["source"].isin(["items", "fused"]).to_numpy()
    g = m[shrunk].groupby("competency")
    mu = m["competency"].map(g["estimate"].mean())
    sigma2 = m["competency"].map(g["estimate"].var() + g["std_error"].apply(lambda s: float(np.mean(s**2))))
    se = m["std_error"].to_numpy(dtype=np.float64)
    r = 1.0 - se**2 / sigma2.to_numpy(dtype=np.float64)
    r = np.where(shrunk, r, 1.0)
    keep = ~(r < MIN_RELIABILITY)
    r = np.where(np.isfinite(r), np.maximum(r, MIN_RELIABILITY), 1.0)
    x = m["estimate"].to_numpy(dtype=np.float64)
    m["estimate"] = np.where(
        shrunk, mu.to_numpy(dtype=np.float64) + (x - mu.to_numpy(dtype=np.float64)) / r, x
    )
    m["std_error"] = se / np.sqrt(r)
    return m[keep].reset_index(drop=True)


def changes(
    measured: pd.DataFrame, teachers: pd.DataFrame, covariates: Sequence[str] = ("stage", "subject")
) -> pd.DataFrame:
    """Per teacher and competency measured on at least two occasions: the first (pre) and last (post)
    measurement, their dates and standard errors, the teacher's `covariates`, and `level` — the mean pre score
    of the teacher's other competencies (a steadier reading of overall ability, its error independent of this
    competency's), with `level_se`. The input of `models.effects.estimate_effects`."""
    m = measured.sort_values(["teacher_id", "competency", "date"], kind="stable")
    key = ["teacher_id", "competency"]
    first = m.drop_duplicates(key, keep="first")
    last = m.drop_duplicates(key, keep="last")
    both = first.merge(last, on=key, suffixes=("_pre", "_post")).set_index(key)
    both = both[both["date_post"] > both["date_pre"]]
    out = pd.DataFrame(
        {
            "pre": both["estimate_pre"],
            "pre_se": both["std_error_pre"],
            "pre_date": both["date_pre"],
            "post": both["estimate_post"],
            "post_se": both["std_error_post"],
            "post_date": both["date_post"],
        }
    ).reset_index()
    tid = out["teacher_id"]
    total = out.groupby("teacher_id")["pre"].transform("sum")
    var_total = (out["pre_se"] ** 2).groupby(tid).transform("sum")
    count = out.groupby("teacher_id")["pre"].transform("size")
    others = (count - 1).where(count > 1)
    out["level"] = (total - out["pre"]) / others
    out["level_se"] = np.sqrt((var_total - out["pre_se"] ** 2) / others**2)
    out["level"] = out["level"].fillna(out["pre"].mean())
    out["level_se"] = out["level_se"].fillna(0.0)
    cols = [c for c in covariates if c in teachers.columns]
    t = teachers[["teacher_id", *cols]].assign(teacher_id=teachers["teacher_id"].astype(str))
    return out.merge(t, on="teacher_id", how="left")


def exposures(records: pd.DataFrame, unit: str) -> pd.DataFrame:
    """(teacher_id, unit_id, date): completed training records per `unit` column (course_id or project_id),
    dated by their end (their start when the end is blank)."""
    if records.empty or unit not in records.columns:
        return pd.DataFrame(
            {
                "teacher_id": pd.Series(dtype=str),
                "unit_id": pd.Series(dtype=str),
                "date": pd.Series(dtype="datetime64[ns]"),
            }
        )
    done = records[(records["status"] == "completed") & records[unit].notna()]
    date = pd.to_datetime(done["end_date"]).fillna(pd.to_datetime(done["start_date"]))
    return pd.DataFrame(
        {"teacher_id": done["teacher_id"].astype(str), "unit_id": done[unit].astype(str), "date": date}
    ).reset_index(drop=True)


def course_teaches(courses: pd.DataFrame) -> pd.DataFrame:
    """(unit_id, competency): each course and the competencies it teaches."""
    c = courses[["course_id", "competencies"]].explode("competencies").dropna()
    return pd.DataFrame({"unit_id": c["course_id"].astype(str), "competency": c["competencies"].astype(str)})


def project_teaches(exposed: pd.DataFrame, competencies: Sequence[str]) -> pd.DataFrame:
    """(unit_id, competency): a project's content is not coded by competency, so it is estimated on every one."""
    units = pd.DataFrame({"unit_id": np.sort(exposed["unit_id"].unique())})
    return units.merge(pd.DataFrame({"competency": list(competencies)}), how="cross")
