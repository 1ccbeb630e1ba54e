"""Outcomes of taken courses (培训成效): what the ranker learns from and how the blend with the need prior is chosen.

A course a teacher took is judged by what came of it, not by the choice itself:

1. **measured change** — where the teacher was assessed on the course's competencies before the course started
   and again after it ended (same source: self-rating against self-rating, test against test; item responses as
   the mean item score above the item's own mean), the weighted mean change on those competencies;
2. else **how it went** — completion, satisfaction and score;
3. else nothing is known yet (enrolled, the choice alone): no outcome.

`measurements` turns the assessment tables into one long table of dated values; `measured_change` pairs each
record with the values around it; `outcome_gain` puts each taken course's outcome on one standardised scale: what
the ranker regresses (`recommender.ranking.fit_ranker`). The same outcomes, held out, choose how much of the
learned score to trust (`recommender.ranking.choose_blend`): the choice is made on what happened after courses,
never on which courses were chosen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.pairs import comp_entries

# an assessment counts as "after" a course within this long of its end
AFTER_WITHIN = pd.Timedelta(days=3 * 365)


def measurements(scores: pd.DataFrame, responses: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Dated values per teacher and competency: teacher_id, competency, source, taken_at, value (0–100 scale for
    scale scores; for item responses, 100 × the mean of score / max_score minus the item's own mean)."""
    parts = []
    if len(scores) and "taken_at" in scores:
        s = scores.dropna(subset=["taken_at", "score"])
        parts.append(
            pd.DataFrame(
                {
                    "teacher_id": s["teacher_id"].astype(str).to_numpy(),
                    "competency": s["competency"].astype(str).to_numpy(),
                    "source": s.get("source", pd.Series("unknown", index=s.index))
                    .fillna("unknown")
                    .astype(str),
                    "taken_at": pd.to_datetime(s["taken_at"]).to_numpy(),
                    "value": s["score"].to_numpy(dtype=np.float64),
                }
            )
        )
    if len(responses) and len(items) and "taken_at" in responses:
        it = items[["item_id", "competencies", "max_score"]].explode("competencies").dropna()
        r = responses.dropna(subset=["taken_at", "score"]).merge(
            items[["item_id", "max_score"]], on="item_id"
        )
        share = r["score"].to_numpy(dtype=np.float64) / r["max_score"].fillna(1.0).to_numpy(dtype=np.float64)
        r = r.assign(
            share=share - pd.Series(share).groupby(r["item_id"].to_numpy()).transform("mean").to_numpy()
        )
        m = r[["teacher_id", "item_id", "taken_at", "share"]].merge(
            it[["item_id", "competencies"]], on="item_id"
        )
        g = m.groupby(["teacher_id", "competencies", "taken_at"], as_index=False)["share"].mean()
        parts.append(
            pd.DataFrame(
                {
                    "teacher_id": g["teacher_id"].astype(str).to_numpy(),
                    "competency": g["competencies"].astype(str).to_numpy(),
                    "source": "items",
                    "taken_at": pd.to_datetime(g["taken_at"]).to_numpy(),
                    "value": 100.0 * g["share"].to_numpy(dtype=np.float64),
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            {
                "teacher_id": pd.Series(dtype=object),
                "competency": pd.Series(dtype=object),
                "source": pd.Series(dtype=object),
                "taken_at": pd.Series(dtype="datetime64[ns]"),
                "value": pd.Series(dtype=np.float64),
            }
        )
    return pd.concat(parts, ignore_index=True)


def measured_change(
    records: pd.DataFrame,
    course: np.ndarray,
    course_comp: np.ndarray,
    comp_codes: np.ndarray,
    values: pd.DataFrame,
) -> np.ndarray:
    """Per record (aligned with `records`, whose catalogue positions are `course`): the weighted mean change of
    the teacher's measured values on the course's competencies from the last assessment before its start to the
    first one after its end (within AFTER_WITHIN, same source); NaN where no competency was measured both sides."""
    out = np.full(len(records), np.nan)
    if not len(records) or not len(values):
        return out
    pair, code, weight = comp_entries(course_comp, np.asarray(course, dtype=np.int64))
    start = pd.to_datetime(records["start_date"]).to_numpy()
    end = pd.to_datetime(records["end_date"]).fillna(records["start_date"]).to_numpy()
    entries = pd.DataFrame(
        {
            "pair": pair,
            "teacher_id": records["teacher_id"].astype(str).to_numpy()[pair],
            "competency": np.asarray(comp_codes, dtype=object)[code],
            "weight": weight,
            "start": start[pair],
            "end": end[pair],
        }
    )
    v = values.assign(key=values["teacher_id"].astype(str) + "\x1f" + values["competency"].astype(str))
    e = entries.assign(key=entries["teacher_id"] + "\x1f" + entries["competency"].astype(str))
    e = e[e["key"].isin(set(v["key"]))]
    if not len(e):
        return out
    changes = []
    for source, vs in v.groupby("source", sort=False):
        vs = vs.sort_values("taken_at", kind="stable")[["key", "taken_at", "value"]]
        before = pd.merge_asof(
            e.sort_values("start", kind="stable"), vs.rename(columns={"value": "before"}),
            left_on="start", right_on="taken_at", by="key", direction="backward", allow_exact_matches=False,
        ).drop(columns="taken_at")  # fmt: skip
        both = pd.merge_asof(
            before.sort_values("end", kind="stable"), vs.rename(columns={"value": "after"}),
            left_on="end", right_on="taken_at", by="key", direction="forward", tolerance=AFTER_WITHIN,
        )  # fmt: skip
        changes.append(both.dropna(subset=["before", "after"]).assign(source=source))
    found = pd.concat(changes, ignore_index=True)
    if not len(found):
        return out
    # one change per record entry: the mean over sources measured both sides
    per_entry = found.assign(delta=found["after"] - found["before"]).groupby(["pair", "competency"])
    d = per_entry.agg(delta=("delta", "mean"), weight=("weight", "first")).reset_index()
    agg = (d["delta"] * d["weight"]).groupby(d["pair"]).sum() / d["weight"].groupby(d["pair"]).sum()
    out[agg.index.to_numpy(dtype=np.int64)] = agg.to_numpy()
    return out


def outcome_gain(records: pd.DataFrame, change: np.ndarray) -> np.ndarray:
    """A continuous outcome of each taken course for judging rankings on held-out data: the measured change
    where known (standardised), else a standardised mix of completion, satisfaction and score; NaN when only
    the choice is known (nothing happened yet)."""
    status = records["status"].astype(str).to_numpy()
    sat = records["satisfaction"].to_numpy(dtype=np.float64, na_value=np.nan)
    score = records["score"].to_numpy(dtype=np.float64, na_value=np.nan)

    def z(x: np.ndarray) -> np.ndarray:
        ok = np.isfinite(x)
        if ok.sum() < 2 or np.std(x[ok]) == 0:
            return np.where(ok, 0.0, np.nan)
        return (x - np.mean(x[ok])) / np.std(x[ok])

    parts = np.vstack([z(sat), z(score)])
    known = np.isfinite(parts)
    how = np.where(known, parts, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    finished = np.isin(status, ("completed", "dropped", "no_show"))
    went = np.where(status == "completed", 0.5 + 0.5 * how, np.where(finished, -1.0, np.nan))
    measured = np.isfinite(change)
    return np.where(measured, z(np.where(measured, change, np.nan)), went)


# pseudo-records of the average change that a course's own measured change is shrunk toward
EFFECT_PRIOR_WEIGHT = 5.0


def course_changes(change: np.ndarray, course: np.ndarray, n_courses: int) -> dict[str, np.ndarray]:
    """Per catalogue course, from the measured changes (`measured_change`, NaN where none) of completions at
    catalogue positions `course`: n (how many), mean and se (the plain mean change and its standard error, what a
    reason may quote), and effect (the mean shrunk toward the mean over all courses by EFFECT_PRIOR_WEIGHT
    pseudo-records, what the ranker reads). A naive pre/post mean: it carries the time trend and regression to the
    mean alike for every course, so it ranks courses; a reason states it as measured change, not as the
    course's effect."""
    ok = np.isfinite(change)
    at, x = np.asarray(course)[ok], change[ok]
    n = np.bincount(at, minlength=n_courses).astype(np.float64)
    total = np.bincount(at, weights=x, minlength=n_courses)
    squares = np.bincount(at, weights=x * x, minlength=n_courses)
    mean = np.divide(total, n, out=np.full(n_courses, np.nan), where=n > 0)
    var = np.divide(
        squares - n * np.nan_to_num(mean) ** 2, n - 1, out=np.full(n_courses, np.nan), where=n > 1
    )
    prior = float(x.mean()) if len(x) else 0.0
    return {
        "n": n,
        "mean": mean,
        "se": np.sqrt(np.maximum(var, 0.0) / np.maximum(n, 1.0)),
        "effect": (total + EFFECT_PRIOR_WEIGHT * prior) / (n + EFFECT_PRIOR_WEIGHT),
    }


def course_outcomes(gain: np.ndarray, course: np.ndarray, n_courses: int) -> dict[str, np.ndarray]:
    """Per catalogue course, an empirical-Bayes estimate of what came of taking it: the mean `outcome_gain` of
    its past takers (`gain`, NaN where unknown; catalogue positions `course`) shrunk toward the mean over all
    courses by n / (n + σ² / τ²), σ² the spread of one taker's outcome about their course's mean and τ² the
    spread of the courses' own means beyond that noise, the common mean the mean of their means (moments over
    courses with two or more outcomes). Its weight grows with the course's number of known outcomes: a course
    few have finished stays near the common mean. n, outcome (the estimate, 0 where nothing is known at all)
    and se (its posterior standard error)."""
    ok = np.isfinite(gain)
    at, x = np.asarray(course)[ok], gain[ok]
    n = np.bincount(at, minlength=n_courses).astype(np.float64)
    if len(x) < 2:
        return {"n": n, "outcome": np.zeros(n_courses), "se": np.ones(n_courses)}
    mean = np.bincount(at, weights=x, minlength=n_courses) / np.maximum(n, 1.0)
    resid = x - mean[at]
    several = n >= 2
    within = float(resid @ resid / max(len(x) - int((n > 0).sum()), 1))
    # the courses' common mean, each course counted once: a mean over records would sit with the popular
    # courses, above the typical course, and lift every course nobody has finished yet
    centre = float(mean[several].mean()) if several.any() else float(x.mean())
    spread = float(np.var(mean[several]) - np.mean(within / n[several])) if several.sum() >= 2 else 0.0
    # a floor keeps the ratio finite: with no spread between courses every course sits at the common mean
    between = max(spread, 1e-3 * within, 1e-12)
    shrink = n / (n + within / between)
    return {
        "n": n,
        "outcome": centre + shrink * (mean - centre),
        "se": np.sqrt(1.0 / (n / max(within, 1e-12) + 1.0 / between)),
    }
