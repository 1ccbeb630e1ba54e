"""Pair features (教师-课程配对特征): what the ranker sees about a (teacher, course) pair.

Teacher context and course statistics are computed once per block as aligned arrays (as of a cut date, so the
ranker can be trained on the past and applied now); pair features are gathered for whole candidate blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.need import fit_at

# Bayesian smoothing weight (pseudo-enrolments) for per-course and per-group rates
PRIOR_WEIGHT = 5.0
# the competency level (0-100) at which a course level is the right challenge: 入门 / 进阶 / 高级
LEVEL_CUTS = (45.0, 65.0)

FEATURES = (
    "need",
    "relevance",
    "gap_cov",
    "gap_max",
    "est_on_course",
    "se_on_course",
    "peer_gap",
    "level_gap",
    "abs_level_gap",
    "dense",
    "lexical",
    "format_taste",
    "collab",
    "transition",
    "popularity",
    "completion_rate",
    "satisfaction",
    "rated",
    "effect",
    "measured",
    "course_outcome",
    "outcomes_known",
    "mean_score",
    "peer_completion",
    "peer_share",
    "hours",
    "cost",
    "level",
    "practical",
    "mandatory_missing",
    "course_age_days",
    "comp_hours_3y",
    "tagged",
    "career_stage",
    "assessed",
    "n_records",
    "years_teaching",
    "rural",
)


@dataclass(frozen=True)
class CourseStats:
    """Per-course statistics from training records as of a cut date (arrays aligned with the catalogue)."""

    popularity: np.ndarray  # log1p(enrolments in the last 3 years)
    completion_rate: np.ndarray  # smoothed toward the overall rate
    satisfaction: np.ndarray  # smoothed mean satisfaction (1-5)
    n_rated: np.ndarray  # how many records carry a satisfaction rating
    mean_score: np.ndarray  # smoothed mean score (0-100)
    age_days: np.ndarray  # days since the first enrolment; NaN for a course nobody took yet
    group_keys: tuple[str, ...]  # peer groups: "stage|subject"
    group_enrol: sp.csr_matrix  # (G, C) enrolments per peer group
    group_complete: sp.csr_matrix  # (G, C) completions per peer group
    group_size: np.ndarray  # (G,) teachers per peer group
    # completions measured before and after (recommender.outcomes.course_changes): how many, their mean change
    # shrunk toward all courses' (what the ranker reads), and the plain mean and its standard error (reasons)
    n_measured: np.ndarray
    effect: np.ndarray
    change_mean: np.ndarray
    change_se: np.ndarray
    # what came of the course for its past takers (recommender.outcomes.course_outcomes): how many outcomes are
    # known and their empirical-Bayes mean, shrunk toward all courses' by how few they are
    n_outcomes: np.ndarray
    outcome: np.ndarray


@dataclass(frozen=True)
class CourseAttrs:
    """Static course attributes aligned with the catalogue."""

    hours: np.ndarray
    cost: np.ndarray
    level: np.ndarray  # 1-3, NaN unknown
    practical: np.ndarray  # 0/1
    format_idx: np.ndarray  # position in FORMATS, -1 unknown
    mandatory_idx: np.ndarray  # (C,) position of the course's mandatory topic in `topics`, -1 none
    topics: tuple[str, ...]  # the mandatory topics of the policy in force
    tagged: np.ndarray  # 1 when competencies came from the data, 0 when inferred


@dataclass(frozen=True)
class TeacherContext:
    """Per-teacher arrays for a block (rows aligned with the block's teacher_ids)."""

    estimate: np.ndarray  # (n, K) 0-100
    std_error: np.ndarray  # (n, K)
    peer_mean: np.ndarray  # (n, K)
    gaps: np.ndarray  # (n, K)
    relevance: np.ndarray  # (n, K) how much each competency matters to the teacher's job (features.need)
    need_base: np.ndarray  # (n, K) relevance × expected shortfall below the target (features.need)
    taste: np.ndarray  # (n, F) share of completed hours by format, smoothed
    history: sp.csr_matrix  # (n, C) interaction strength (completed 1, enrolled/dropped 0.5)
    last_course: np.ndarray  # (n,) position of the most recent course, -1 none
    comp_hours_3y: np.ndarray  # (n, K) completed hours per competency in the last 3 years
    group_idx: np.ndarray  # (n,) peer group position in CourseStats.group_keys, -1 none
    missing_mandatory: np.ndarray  # (n, T) bool over CourseAttrs.topics
    career_stage: np.ndarray  # (n,) position in CAREER_STAGES
    assessed: np.ndarray  # (n,) 0/1
    n_records: np.ndarray  # (n,)
    years_teaching: np.ndarray  # (n,) NaN unknown
    rural: np.ndarray  # (n,) 0/1, NaN unknown

    def rows(self, lo: int, hi: int) -> TeacherContext:
        """The context of teachers lo..hi-1 (every field is per teacher, first axis)."""
        return TeacherContext(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})


def smoothed_rate(
    success: np.ndarray, total: np.ndarray, prior: float, weight: float = PRIOR_WEIGHT
) -> np.ndarray:
    return (np.asarray(success, dtype=np.float64) + weight * prior) / (
        np.asarray(total, dtype=np.float64) + weight
    )


def ideal_level(estimate: np.ndarray) -> np.ndarray:
    """The course level that is the right challenge for a competency estimate (1 入门, 2 进阶, 3 高级)."""
    return 1.0 + (estimate >= LEVEL_CUTS[0]) + (estimate >= LEVEL_CUTS[1])


def course_stats(
    records: pd.DataFrame,
    course_pos: pd.Series,
    teacher_group: pd.Series,
    group_keys: tuple[str, ...],
    n_courses: int,
    asof: pd.Timestamp,
) -> CourseStats:
    """Course popularity, completion, satisfaction and peer-group statistics from records before `asof`.

    `course_pos` maps course_id -> catalogue position; `teacher_group` maps teacher_id -> peer group position.
    """
    r = records[(records["start_date"] < asof) & records["course_id"].notna()]
    mapped = r["course_id"].map(course_pos)
    r = r[mapped.notna()]
    pos = mapped[mapped.notna()].astype(np.int64).to_numpy()
    completed = (r["status"] == "completed").to_numpy()
    recent = (r["start_date"] >= asof - pd.DateOffset(years=3)).to_numpy()
    enrol = np.bincount(pos, minlength=n_courses).astype(np.float64)
    done = np.bincount(pos, weights=completed, minlength=n_courses)
    overall = completed.mean() if len(completed) else 0.5

    def smoothed_mean(col: str, default: float) -> np.ndarray:
        v = r[col].to_numpy(dtype=np.float64)
        has = ~np.isnan(v)
        total = np.bincount(pos[has], weights=v[has], minlength=n_courses)
        count = np.bincount(pos[has], minlength=n_courses)
        prior = float(np.nanmean(v)) if has.any() else default
        return (total + PRIOR_WEIGHT * prior) / (count + PRIOR_WEIGHT)

    first = pd.Series(r["start_date"].to_numpy()).groupby(pos).min()
    age = np.full(n_courses, np.nan)
    age[first.index.to_numpy()] = (asof - pd.to_datetime(first.to_numpy())).days.to_numpy(dtype=np.float64)
    g = r["teacher_id"].map(teacher_group).fillna(-1).astype(np.int64).to_numpy()
    has_g = g >= 0
    shape = (len(group_keys), n_courses)
    group_enrol = sp.csr_matrix((np.ones(has_g.sum()), (g[has_g], pos[has_g])), shape=shape)
    group_complete = sp.csr_matrix((completed[has_g].astype(np.float64), (g[has_g], pos[has_g])), shape=shape)
    group_size = np.bincount(teacher_group.to_numpy(dtype=np.int64), minlength=len(group_keys)).astype(
        np.float64
    )
    return CourseStats(
        popularity=np.log1p(np.bincount(pos[recent], minlength=n_courses).astype(np.float64)),
        completion_rate=smoothed_rate(done, enrol, overall),
        satisfaction=smoothed_mean("satisfaction", 3.5),
        n_rated=np.bincount(pos[r["satisfaction"].notna().to_numpy()], minlength=n_courses).astype(
            np.float64
        ),
        mean_score=smoothed_mean("score", 75.0),
        age_days=age,
        group_keys=group_keys,
        group_enrol=group_enrol,
        group_complete=group_complete,
        group_size=group_size,
        n_measured=np.zeros(n_courses),
        effect=np.zeros(n_courses),
        change_mean=np.full(n_courses, np.nan),
        change_se=np.full(n_courses, np.nan),
        n_outcomes=np.zeros(n_courses),
        outcome=np.zeros(n_courses),
    )


# cells of one dense slice of a sparse matrix in sparse_at (float64): 32 MB
DENSE_CELLS = 1 << 22


def sparse_at(m: sp.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """m[rows[i], cols[i]] for every i, as float64: the rows asked for, a slice at a time made dense, then
    gathered. Scipy's own pair indexing scans a row's entries for each pair, slow on rows with hundreds."""
    m = sp.csr_matrix(m)
    out = np.zeros(len(rows))
    present = np.zeros(m.shape[0], dtype=bool)
    present[rows] = True
    wanted = np.flatnonzero(present)
    slot = np.cumsum(present) - 1  # row → position among the wanted rows
    at = slot[rows]
    step = max(1, DENSE_CELLS // max(m.shape[1], 1))
    for lo in range(0, len(wanted), step):
        sel = np.flatnonzero((at >= lo) & (at < lo + step)) if len(wanted) > step else np.arange(len(rows))
        dense = m[wanted[lo : lo + step]].toarray()
        out[sel] = dense[at[sel] - lo, cols[sel]]
    return out


def comp_entries(course_comp: np.ndarray, course: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pair, competency, weight) for every competency a pair's course works on, grouped by pair in order:
    the few nonzero weights of each course, not the whole row of the taxonomy."""
    m = sp.csr_matrix(course_comp)
    start = m.indptr[course]
    count = m.indptr[course + 1] - start
    pair = np.repeat(np.arange(len(course)), count)
    at = np.arange(len(pair)) - np.repeat(np.cumsum(count) - count, count) + np.repeat(start, count)
    return pair, m.indices[at].astype(np.int64), m.data[at].astype(np.float64)


def group_starts(pair: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in a grouped, non-empty array."""
    return np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])


def pair_features(
    row: np.ndarray,
    course: np.ndarray,
    dense: np.ndarray,
    lexical: np.ndarray,
    ctx: TeacherContext,
    course_comp: np.ndarray,
    attrs: CourseAttrs,
    stats: CourseStats,
    item_sim: sp.csr_matrix,
    transition: sp.csr_matrix,
) -> pd.DataFrame:
    """Features of the pairs (ctx row, course position), in FEATURES order, one row per pair."""
    m = len(row)
    pair, code, weight = comp_entries(course_comp, course)
    at_row = row[pair]
    covered = np.bincount(pair, minlength=m) > 0

    def weighted(values: np.ndarray) -> np.ndarray:
        """Σ over the course's competencies of weight × the teacher's value there, per pair."""
        return np.bincount(pair, weights=weight * values[at_row, code], minlength=m)

    gap_at = ctx.gaps[at_row, code]
    gap_max = np.zeros(m)
    if len(pair):
        first = group_starts(pair)
        gap_max[pair[first]] = np.maximum.reduceat(gap_at, first)
    est_on = np.where(covered, weighted(ctx.estimate), np.nan)
    level = attrs.level[course]
    level_gap = level - ideal_level(np.nan_to_num(est_on, nan=50.0))
    fmt = attrs.format_idx[course]
    taste = np.where(fmt >= 0, ctx.taste[row, np.maximum(fmt, 0)], np.nan)
    # Σ_j history[teacher, j] × similarity[j, course]: one sparse product for the block, then the pairs
    collab = sparse_at(ctx.history @ item_sim, row, course)
    last = ctx.last_course[row]
    trans = np.zeros(len(row))
    has_last = last >= 0
    trans[has_last] = sparse_at(transition, last[has_last], course[has_last])
    g = ctx.group_idx[row]
    has_g = g >= 0
    peer_enrol = np.zeros(len(row))
    peer_done = np.zeros(len(row))
    peer_enrol[has_g] = sparse_at(stats.group_enrol, g[has_g], course[has_g])
    peer_done[has_g] = sparse_at(stats.group_complete, g[has_g], course[has_g])
    group_size = np.where(has_g, stats.group_size[np.maximum(g, 0)], np.nan)
    topic = attrs.mandatory_idx[course]
    missing = np.zeros(len(row), dtype=bool)
    has_t = topic >= 0
    missing[has_t] = ctx.missing_mandatory[row[has_t], topic[has_t]]
    need_at = weight * ctx.need_base[at_row, code] * fit_at(level[pair], ctx.estimate[at_row, code])
    columns = {
        "need": np.bincount(pair, weights=need_at, minlength=m),
        "relevance": np.where(covered, weighted(ctx.relevance), np.nan),
        "gap_cov": np.bincount(pair, weights=weight * gap_at, minlength=m),
        "gap_max": gap_max,
        "est_on_course": est_on,
        "se_on_course": np.where(covered, weighted(ctx.std_error), np.nan),
        "peer_gap": np.where(covered, weighted(ctx.peer_mean) - est_on, np.nan),
        "level_gap": level_gap,
        "abs_level_gap": np.abs(level_gap),
        "dense": dense,
        "lexical": lexical,
        "format_taste": taste,
        "collab": collab,
        "transition": trans,
        "popularity": stats.popularity[course],
        "completion_rate": stats.completion_rate[course],
        "satisfaction": stats.satisfaction[course],
        "rated": np.log1p(stats.n_rated[course]),
        "effect": stats.effect[course],
        "measured": np.log1p(stats.n_measured[course]),
        "course_outcome": stats.outcome[course],
        "outcomes_known": np.log1p(stats.n_outcomes[course]),
        "mean_score": stats.mean_score[course],
        "peer_completion": smoothed_rate(peer_done, peer_enrol, stats.completion_rate[course]),
        "peer_share": peer_enrol / np.maximum(group_size, 1.0),
        "hours": attrs.hours[course],
        "cost": attrs.cost[course],
        "level": level,
        "practical": attrs.practical[course],
        "mandatory_missing": missing.astype(np.float64),
        "course_age_days": stats.age_days[course],
        "comp_hours_3y": weighted(ctx.comp_hours_3y),
        "tagged": attrs.tagged[course],
        "career_stage": ctx.career_stage[row].astype(np.float64),
        "assessed": ctx.assessed[row],
        "n_records": ctx.n_records[row],
        "years_teaching": ctx.years_teaching[row],
        "rural": ctx.rural[row],
    }
    # one float64 matrix, row-major: the ranker reads it as it is, without a copy per column
    matrix = np.empty((m, len(FEATURES)))
    for j, name in enumerate(FEATURES):
        matrix[:, j] = columns[name]
    return pd.DataFrame(matrix, columns=list(FEATURES), copy=False)
