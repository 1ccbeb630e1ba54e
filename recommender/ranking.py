"""Ranking (排序): teacher inputs for a block, collaborative signals as of a date, training the outcome model
on what came of past courses, its blend with the need prior, and scoring candidate blocks.

Training looks back: features are computed as of a cut date from the records before it; targets are the
outcomes of the courses the teacher took in the year after (`recommender.outcomes`). The model is early-stopped
on other teachers' outcomes, so it is judged on outcomes it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.diagnostics import fill_priors, peer_groups, with_priors
from features.history import CAREER_STAGES, FORMATS
from features.need import TARGET, relevance, shortfall
from features.pairs import FEATURES, CourseAttrs, CourseStats, TeacherContext, course_stats, pair_features
from features.portrait import Norms, add_gaps
from models.collab import Interactions, ItemKNN, Transition
from models.ranker import Ranker
from recommender.outcomes import course_changes, course_outcomes, measured_change, outcome_gain
from recommender.retrieval import (
    LEXICAL_WEIGHT,
    STAGES,
    Candidates,
    Catalogue,
    TeacherBlock,
    eligibility_matrix,
    lexical_scores,
    query_vectors,
)

# interaction strength of a record in a teacher's history, by status
HISTORY_WEIGHT = {"completed": 1.0, "enrolled": 0.5, "dropped": 0.5, "no_show": 0.25}
TRAIN_TEACHERS = 6000
NEGATIVES_PER_TEACHER = 5


@dataclass(frozen=True)
class Signals:
    """Everything learned from records as of a date that pair features need."""

    stats: CourseStats
    item_sim: sp.csr_matrix
    transition: sp.csr_matrix


def peer_group_key(teachers: pd.DataFrame) -> pd.Series:
    return teachers["stage"].astype(str) + "|" + teachers["subject"].astype(str)


def _course_records(records: pd.DataFrame, cat: Catalogue, asof: pd.Timestamp) -> pd.DataFrame:
    pos = pd.Series(np.arange(cat.n_courses), index=cat.course_ids)
    r = records[(records["start_date"] < asof) & records["course_id"].notna()]
    r = r.assign(course=r["course_id"].map(pos))
    return r[r["course"].notna()].astype({"course": np.int64})


def fit_signals(
    records: pd.DataFrame,
    teachers: pd.DataFrame,
    cat: Catalogue,
    asof: pd.Timestamp,
    values: pd.DataFrame | None = None,
) -> Signals:
    """Course statistics, item-item similarity and transitions from the records before `asof`, with each course's
    empirical-Bayes outcome over the courses finished by then (`recommender.outcomes.course_outcomes`); with
    `values` (dated assessments, `recommender.outcomes.measurements`) measured changes count in that outcome and
    the courses' own measured changes are kept too."""
    keys = peer_group_key(teachers)
    group_keys = tuple(sorted(keys.unique()))
    group_pos = pd.Series(np.arange(len(group_keys)), index=group_keys)
    teacher_group = pd.Series(keys.map(group_pos).to_numpy(), index=teachers["teacher_id"].astype(str))
    course_pos = pd.Series(np.arange(cat.n_courses), index=cat.course_ids)
    stats = course_stats(records, course_pos, teacher_group, group_keys, cat.n_courses, asof)
    r = _course_records(records, cat, asof)
    finished = r[pd.to_datetime(r["end_date"]).fillna(r["start_date"]) < asof]
    course = finished["course"].to_numpy()
    seen = values[values["taken_at"] < asof] if values is not None else pd.DataFrame()
    change = measured_change(finished, course, cat.course_comp, cat.comp_codes, seen)
    done = (finished["status"] == "completed").to_numpy()
    c = course_changes(np.where(done, change, np.nan), course, cat.n_courses)
    o = course_outcomes(outcome_gain(finished, change), course, cat.n_courses)
    stats = replace(
        stats,
        n_measured=c["n"],
        effect=c["effect"],
        change_mean=c["mean"],
        change_se=c["se"],
        n_outcomes=o["n"],
        outcome=o["outcome"],
    )
    users = pd.Index(np.sort(r["teacher_id"].astype(str).unique()))
    log = Interactions.from_arrays(
        users.get_indexer(r["teacher_id"].astype(str)),
        r["course"].to_numpy(),
        r["start_date"].to_numpy().astype("datetime64[D]").astype(np.float64),
        n_users=len(users),
        n_items=cat.n_courses,
    )
    item_sim = (
        ItemKNN(k=50, shrink=10.0).fit(log.matrix()).similarity_
        if len(log)
        else sp.csr_matrix((cat.n_courses, cat.n_courses), dtype=np.float32)
    )
    transition = Transition(window=2, shrink=5.0).fit(log).transitions_ if len(log) else item_sim
    return Signals(stats, item_sim, transition)


def _wide(long: pd.DataFrame, ids: pd.Index, codes: np.ndarray, fills: dict[str, float]) -> list[np.ndarray]:
    """(teachers × competencies) arrays of the long table's columns, in ``fills`` order: the first non-null
    value of each (teacher, competency), ``fills[col]`` where there is none."""
    t = ids.get_indexer(pd.Index(long["teacher_id"].astype(str)))
    k = pd.Index(codes).get_indexer(pd.Index(long["competency"]))
    out = []
    for col, fill in fills.items():
        wide = np.full((len(ids), len(codes)), fill, dtype=np.float64)
        v = pd.to_numeric(long[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        at = np.flatnonzero((t >= 0) & (k >= 0) & ~np.isnan(v))
        at = at[np.unique(t[at] * len(codes) + k[at], return_index=True)[1]]
        wide[t[at], k[at]] = v[at]
        out.append(wide)
    return out


def teacher_inputs(
    rows: pd.DataFrame,
    competencies: pd.DataFrame,
    records: pd.DataFrame,
    cat: Catalogue,
    stats: CourseStats,
    topics: tuple[str, ...],
    asof: pd.Timestamp,
    target: float = TARGET,
) -> tuple[TeacherBlock, TeacherContext]:
    """Retrieval block and pair-feature context for the teachers of `rows` (portrait rows as of `asof`);
    `target` is the portraits' target level (the need prior's shortfall is measured below it)."""
    ids = pd.Index(rows["teacher_id"].astype(str))
    n, c = len(ids), cat.n_courses
    comp = competencies[competencies["teacher_id"].isin(ids)]
    fills = {"estimate": 50.0, "gap": 0.0, "std_error": 15.0, "peer_mean": 50.0}
    estimate, gaps, std_error, peer_mean = _wide(comp, ids, cat.comp_codes, fills)
    r = _course_records(records[records["teacher_id"].isin(ids)], cat, asof)
    row_of = ids.get_indexer(pd.Index(r["teacher_id"].astype(str)))
    # explicit dtypes: a block whose teachers have no records (new hires) gives empty object columns
    weight = r["status"].map(HISTORY_WEIGHT).fillna(0.0).to_numpy(dtype=np.float64)
    history = sp.csr_matrix((weight, (row_of, r["course"])), shape=(n, c))
    history.sum_duplicates()
    history.data = np.minimum(history.data, 1.0)
    done = (r["status"] == "completed").to_numpy(dtype=bool)
    # completed: the records' completions and the portrait's list (which also holds completed events)
    listed_row, listed_course = _listed_courses(rows, cat)
    completed = sp.csr_matrix(
        (
            np.ones(done.sum() + len(listed_row)),
            (np.r_[row_of[done], listed_row], np.r_[r["course"].to_numpy()[done], listed_course]),
        ),
        shape=(n, c),
    )
    completed.data[:] = 1.0
    recent = done & (r["start_date"] >= asof - pd.DateOffset(years=3)).to_numpy()
    hours = pd.to_numeric(r["hours"], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
    recent_hours = sp.csr_matrix(
        (hours[recent], (row_of[recent], r["course"].to_numpy()[recent])), shape=(n, c)
    )
    last = np.full(n, -1, dtype=np.int64)
    if len(r):
        latest = (
            r.assign(_row=row_of).sort_values(["_row", "start_date"], kind="stable").groupby("_row").tail(1)
        )
        last[latest["_row"].to_numpy()] = latest["course"].to_numpy()
    stage_pos = {s: i for i, s in enumerate(STAGES)}
    group_pos = {g: i for i, g in enumerate(stats.group_keys)}
    taste_cols = [f"format_share_{f}" for f in FORMATS]
    taste = rows.reindex(columns=taste_cols).fillna(1.0 / len(FORMATS)).to_numpy(dtype=np.float64)
    missing = rows.get("missing_mandatory", pd.Series([[]] * n))
    missing_m = np.array([[t in set(m) for t in topics] for m in missing], dtype=bool).reshape(n, len(topics))
    career = {s: i for i, s in enumerate(CAREER_STAGES)}
    rel = relevance(
        cat.comp_codes, rows["stage"].to_numpy(), rows["career_stage"].to_numpy(), teacher_roles(rows)
    )
    block = TeacherBlock(
        teacher_ids=ids.to_numpy(),
        stage_idx=rows["stage"].map(stage_pos).fillna(-1).to_numpy(dtype=np.int64),
        subjects=rows["subject"].astype(str).to_numpy(),
        gaps=gaps,
        completed=completed.tocsr(),
    )
    ctx = TeacherContext(
        estimate=estimate,
        std_error=std_error,
        peer_mean=peer_mean,
        gaps=gaps,
        relevance=rel,
        need_base=rel * shortfall(estimate, std_error, target),
        taste=taste,
        history=history.tocsr(),
        last_course=last,
        comp_hours_3y=np.asarray(recent_hours @ cat.course_comp),
        group_idx=peer_group_key(rows).map(group_pos).fillna(-1).to_numpy(dtype=np.int64),
        missing_mandatory=missing_m,
        career_stage=rows["career_stage"].map(career).fillna(1).to_numpy(dtype=np.int64),
        assessed=rows.get("assessed", pd.Series(False, index=rows.index)).to_numpy(dtype=np.float64),
        n_records=rows.get("n_records", pd.Series(0, index=rows.index)).fillna(0).to_numpy(dtype=np.float64),
        years_teaching=pd.to_numeric(
            rows.get("years_teaching", pd.Series(np.nan, index=rows.index)), errors="coerce"
        ).to_numpy(dtype=np.float64),
        rural=rows["school_type"].map({"rural": 1.0, "town": 0.0, "urban": 0.0}).to_numpy(dtype=np.float64),
    )
    return block, ctx


def _listed_courses(rows: pd.DataFrame, cat: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """(row, course position) of every course in the rows' completed_course_ids (none without the column)."""
    if "completed_course_ids" not in rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    lists = rows["completed_course_ids"].reset_index(drop=True)
    flat = lists.explode().dropna()
    course = pd.Index(cat.course_ids).get_indexer(flat.astype(str))
    ok = course >= 0
    return flat.index.to_numpy(dtype=np.int64)[ok], course[ok].astype(np.int64)


def competencies_asof(
    history: pd.DataFrame,
    rows: pd.DataFrame,
    norms: Norms,
    codes: list[str],
    cut: pd.Timestamp,
    target: float = TARGET,
) -> pd.DataFrame:
    """The competency portrait of the teachers of `rows` (with stage, subject, career_stage) as it stood on
    `cut`: per teacher and competency the latest measurement of `history` (`features.growth.occasion_measurements`
    with cumulative=True, the portrait as of each assessment occasion) dated before `cut`, the province's
    cold-start prior (`norms`) where there is none yet, with peer means and gaps as a portrait has them.

    A training example's features must not know what came after its course: the current portrait was measured
    after the training whose measured change is the label, so a large gain would show as a small need."""
    past = history[pd.to_datetime(history["date"]) < cut].sort_values(
        ["teacher_id", "competency", "date"], kind="stable"
    )
    measured = past.drop_duplicates(["teacher_id", "competency"], keep="last")
    measured = measured[measured["teacher_id"].isin(rows["teacher_id"].astype(str))]
    measured = measured[["teacher_id", "competency", "estimate", "std_error", "source"]]
    groups = peer_groups(rows)
    comp = with_priors(measured, fill_priors(measured, groups, norms.priors, codes), rows["teacher_id"])
    return add_gaps(comp, groups, norms.peer_mean, target)


def teacher_roles(rows: pd.DataFrame) -> list[frozenset[str]]:
    roles = rows["roles"] if "roles" in rows else pd.Series([None] * len(rows))
    return [
        frozenset(str(r) for r in v) if isinstance(v, (list, tuple, np.ndarray)) else frozenset()
        for v in roles
    ]


def features_for(
    cands: Candidates, ctx: TeacherContext, cat: Catalogue, attrs: CourseAttrs, signals: Signals
) -> pd.DataFrame:
    return pair_features(
        cands.row,
        cands.course,
        cands.dense,
        cands.lexical,
        ctx,
        cat.course_comp,
        attrs,
        signals.stats,
        signals.item_sim,
        signals.transition,
    )


def labelled_pairs(
    block: TeacherBlock,
    cands: Candidates,
    records: pd.DataFrame,
    cat: Catalogue,
    start: pd.Timestamp,
    end: pd.Timestamp,
    values: pd.DataFrame,
) -> tuple[Candidates, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates plus the courses taken in [start, end): whether taken (1, else 0), their outcomes
    (`outcome_gain`, NaN where none is known) and whether that outcome is a measured change."""
    pos = pd.Series(np.arange(cat.n_courses), index=cat.course_ids)
    ids = pd.Index(block.teacher_ids)
    r = records[
        (records["start_date"] >= start) & (records["start_date"] < end) & records["course_id"].notna()
    ]
    r = r[r["teacher_id"].isin(ids) & r["course_id"].isin(pos.index)]
    course = r["course_id"].map(pos).to_numpy(dtype=np.int64)
    change = measured_change(r, course, cat.course_comp, cat.comp_codes, values)
    found = pd.DataFrame(
        {
            "row": ids.get_indexer(pd.Index(r["teacher_id"])),
            "course": course,
            "label": 1,
            "gain": outcome_gain(r, change),
            "measured": np.isfinite(change),
        }
    )
    chosen = found.groupby(["row", "course"], as_index=False).agg(
        label=("label", "max"), gain=("gain", "mean"), measured=("measured", "max")
    )
    cand = pd.DataFrame(
        {"row": cands.row, "course": cands.course, "dense": cands.dense, "lexical": cands.lexical}
    )
    pairs = cand.merge(chosen, on=["row", "course"], how="outer")
    pairs["label"] = pairs["label"].fillna(0)
    pairs["measured"] = pairs["measured"].fillna(False).astype(bool)
    # chosen courses the retrieval missed still need their dense / lexical scores
    missing = pairs["dense"].isna().to_numpy()
    if missing.any():
        rr, cc = pairs.loc[missing, "row"].to_numpy(), pairs.loc[missing, "course"].to_numpy()
        q = query_vectors(block, cat)
        pairs.loc[missing, "dense"] = np.einsum("ij,ij->i", q[rr], cat.vectors[cc])
        pairs.loc[missing, "lexical"] = lexical_scores(block, cat)[rr, cc]
    pairs = pairs.sort_values(["row", "course"], kind="stable")
    dense, lexical = pairs["dense"].to_numpy(np.float64), pairs["lexical"].to_numpy(np.float64)
    both = Candidates(
        pairs["row"].to_numpy(np.int64),
        pairs["course"].to_numpy(np.int64),
        dense,
        lexical,
        dense + LEXICAL_WEIGHT * lexical,
    )
    return (
        both,
        pairs["label"].to_numpy(np.int64),
        pairs["gain"].to_numpy(np.float64),
        pairs["measured"].to_numpy(bool),
    )


@dataclass(frozen=True)
class RankingData:
    """Pairs of the teachers who took something in a period: the courses taken and exposure-matched untaken
    ones (`exposure_matched_negatives`), whose features measure the scale of scores over courses a teacher
    could be shown, not over taken ones alone."""

    X: pd.DataFrame
    row: np.ndarray  # teacher row of each pair (pairs grouped by row)
    gain: np.ndarray  # outcome of a taken course (outcomes.outcome_gain); NaN for the rest
    measured: np.ndarray  # whether that outcome is a measured change (assessed before and after)

    def teachers(self, keep: np.ndarray) -> RankingData:
        """The pairs of the teachers (rows) where `keep` (indexed by row) is True."""
        at = np.asarray(keep, dtype=bool)[self.row]
        return RankingData(self.X[at].reset_index(drop=True), self.row[at], self.gain[at], self.measured[at])


def ranking_data(
    rows: pd.DataFrame,
    competencies: pd.DataFrame,
    records: pd.DataFrame,
    teachers: pd.DataFrame,
    cat: Catalogue,
    attrs: CourseAttrs,
    cut: pd.Timestamp,
    values: pd.DataFrame,
    seed: int = 0,
) -> RankingData:
    """Features as of `cut`, outcomes in the year after; only teachers who took something are kept.
    `values` are the dated assessment values (`recommender.outcomes.measurements`)."""
    signals = fit_signals(records, teachers, cat, cut, values)
    block, ctx = teacher_inputs(rows, competencies, records, cat, signals.stats, attrs.topics, cut)
    end = cut + pd.DateOffset(years=1)
    taken = _course_records(records[records["start_date"] >= cut], cat, end)["course"].to_numpy()
    cands = exposure_matched_negatives(block, cat, np.bincount(taken, minlength=cat.n_courses), seed)
    labelled, taken, gain, measured = labelled_pairs(block, cands, records, cat, cut, end, values)
    keep = training_rows(labelled.row, taken, seed)
    labelled = labelled.take(keep)
    return RankingData(
        features_for(labelled, ctx, cat, attrs, signals), labelled.row, gain[keep], measured[keep]
    )


def exposure_matched_negatives(
    block: TeacherBlock, cat: Catalogue, taken: np.ndarray, seed: int = 0
) -> Candidates:
    """NEGATIVES_PER_TEACHER courses open to each teacher, drawn in proportion to 1 + how often each course was
    taken in the label period (`taken`, per catalogue position; scores left to compute).

    They stand for the courses a teacher could be shown (popular ones were shown more) beside the ones taken:
    the blend measures the spread of the learned score and of the need prior over both (`choose_blend`).
    Negatives from retrieval would stand for what retrieval finds, not for what teachers see."""
    eligible = eligibility_matrix(block, cat)
    rng = np.random.default_rng(seed)
    # Gumbel top-k: the n largest of log(weight) + Gumbel noise are a weighted draw without replacement
    keys = np.log1p(np.asarray(taken, dtype=np.float64))[None, :] - np.log(
        rng.standard_exponential(eligible.shape)
    )
    keys = np.where(eligible, keys, -np.inf)
    n = min(NEGATIVES_PER_TEACHER, cat.n_courses)
    top = np.argpartition(-keys, n - 1, axis=1)[:, :n]
    ok = np.isfinite(np.take_along_axis(keys, top, axis=1))
    row = np.repeat(np.arange(len(block)), n).reshape(-1, n)[ok]
    course = top[ok]
    nan = np.full(len(row), np.nan)
    return Candidates(row.astype(np.int64), course.astype(np.int64), nan, nan, nan)


def training_rows(row: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pairs worth training on: teachers who chose something; all their chosen courses and a seeded random
    NEGATIVES_PER_TEACHER of the rest (LambdaRank's cost grows with the square of a query's size)."""
    has_pos = pd.Series(y > 0).groupby(row).transform("any").to_numpy()
    noise = np.random.default_rng(seed).random(len(row))
    neg = (y == 0) & has_pos
    order = np.lexsort((noise, ~neg, row))
    ranked = np.empty(len(row), dtype=np.int64)
    ranked[order] = np.arange(len(row)) - np.searchsorted(row[order], row[order], side="left")
    keep = has_pos & ((y > 0) | (ranked < NEGATIVES_PER_TEACHER))
    return np.flatnonzero(keep)


# ---------------------------------------------------------------------------------------------------------
# the blend of the learned score with the need prior


# the course-level evidence of the prior: what came of each course for its past takers — the empirical-Bayes
# outcome (`recommender.outcomes.course_outcomes`), their mean satisfaction and their completion rate, each shrunk
# toward all courses' by how few stand behind it (`features.pairs.course_stats`) — and how many took it in the
# last three years (popularity: a choice, weighed only as far as held-out outcomes follow it)
COURSE_PARTS = ("course_outcome", "satisfaction", "completion_rate", "popularity")


@dataclass(frozen=True)
class Blend:
    """score = a · learned / sd_learned + (1 − a) · prior, prior = (1 − course_share) · need / sd_need +
    course_share · Σ_j course_mix_j · b · (part_j − mean_course_j) / sd_course_j over COURSE_PARTS,
    b = m / (m + COURSE_EVIDENCE) for the course's rated records (a course-level part counts as far as ratings back
    it, so a course few have taken cannot top the prior on a few good marks, but sits at the training pairs' mean
    of the part), each term centred per teacher, with
    a = min(1, weight · evidence): evidence = n / (n + TEACHER_EVIDENCE) for the teacher's past records times
    m / (m + COURSE_EVIDENCE) for the course's rated records. The prior is the fallback the ranker cannot lose:
    the need prior, mixed with what came of each course for its past takers (each part at the common mean until
    enough outcomes are known). Every part is on one scale (a unit spread), so that where evidence is thin the
    prior's scores spread no wider than the learned score's. weight 0 is the prior alone, a large weight the
    learned score wherever anything is known; course_share 0 the need prior alone. All three are chosen on
    held-out outcomes (`choose_blend`)."""

    weight: float
    sd_learned: float
    sd_need: float
    course_share: float = 0.0
    course_mix: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)  # over COURSE_PARTS, summing to 1
    sd_course: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    mean_course: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "sd_learned": self.sd_learned,
            "sd_need": self.sd_need,
            "course_share": self.course_share,
            "course_mix": dict(zip(COURSE_PARTS, self.course_mix, strict=True)),
            "sd_course": dict(zip(COURSE_PARTS, self.sd_course, strict=True)),
            "mean_course": dict(zip(COURSE_PARTS, self.mean_course, strict=True)),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Blend:
        # a bundle from before #16's outcome model keeps its parts' sds, the need prior's first; one from before
        # the course outcome in the prior has the need prior alone there; one from before the course mix has the
        # course outcome alone in it
        sd_need = d["sd_need"] if "sd_need" in d else d["sds"][0]
        mix = d.get("course_mix", {"course_outcome": 1.0})
        sds = d.get("sd_course", {"course_outcome": d.get("sd_outcome", 1.0)})
        return cls(
            float(d["weight"]),
            float(d["sd_learned"]),
            float(sd_need),
            float(d.get("course_share", 0.0)),
            tuple(float(mix.get(p, 0.0)) for p in COURSE_PARTS),
            tuple(float(sds.get(p, 1.0)) for p in COURSE_PARTS),
            tuple(float(d.get("mean_course", {}).get(p, 0.0)) for p in COURSE_PARTS),
        )


TEACHER_EVIDENCE, COURSE_EVIDENCE = 3.0, 10.0
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 1e6)
# the course-level evidence's share of the prior, up to all of it where held-out outcomes say the course itself
# matters more than the teacher's need; and its mixes: each part alone, then all three alike
COURSE_SHARES = (0.0, 0.1, 0.2, 1 / 3, 0.5, 2 / 3, 0.8, 1.0)
COURSE_MIXES = tuple(
    tuple(float(i == j) for j in range(len(COURSE_PARTS))) for i in range(len(COURSE_PARTS))
) + ((1 / len(COURSE_PARTS),) * len(COURSE_PARTS),)
# held-out teachers (teacher-periods with two or more known outcomes) needed before anything beyond the need
# prior is trusted
MIN_OUTCOME_TEACHERS = 30


def _centred(values: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Values minus their teacher's mean (rows grouped or not)."""
    total = np.bincount(row, weights=values)
    count = np.maximum(np.bincount(row), 1)
    return values - (total / count)[row]


def _column(X: pd.DataFrame, name: str) -> np.ndarray:
    return np.nan_to_num(X[name].to_numpy(dtype=np.float64))


def blend_scores(blend: Blend, learned: np.ndarray, X: pd.DataFrame, row: np.ndarray) -> np.ndarray:
    # the evidence behind a pair: the teacher's past records and the course's rated ones (`Blend`)
    n, m = _column(X, "n_records"), np.expm1(_column(X, "rated"))
    backed = m / (m + COURSE_EVIDENCE)
    a = np.minimum(1.0, blend.weight * ((n / (n + TEACHER_EVIDENCE)) * backed))
    s = blend.course_share
    prior = (1 - s) * _centred(_column(X, "need"), row) / blend.sd_need
    # each course-level part counts as far as the course's rated records support it
    for j, part in enumerate(COURSE_PARTS):
        if s and blend.course_mix[j]:
            v = backed * (_column(X, part) - blend.mean_course[j])
            prior += s * blend.course_mix[j] * _centred(v, row) / blend.sd_course[j]
    return a * _centred(learned, row) / blend.sd_learned + (1 - a) * prior


@dataclass(frozen=True)
class OutcomeJudge:
    """How well scores rank teachers' taken courses by their known outcomes (`outcome_judge`): the pairs judged
    (`at`, grouped by teacher), each teacher's position among `teachers`, the outcome's rank among the teacher's
    known ones as the gain, and the ideal DCG."""

    at: np.ndarray
    slot: np.ndarray
    teachers: np.ndarray
    gain: np.ndarray
    idcg: np.ndarray

    def __call__(self, score: np.ndarray) -> pd.Series:
        """NDCG per teacher of `score` (over every pair) on the judged pairs."""
        order = np.lexsort((-score[self.at], self.slot))
        dcg = np.bincount(
            self.slot[order],
            self.gain[order] / np.log2(_positions(self.slot[order]) + 2.0),
            len(self.teachers),
        )
        ok = self.idcg > 0
        return pd.Series(dcg[ok] / self.idcg[ok], index=self.teachers[ok])


def _positions(slot: np.ndarray) -> np.ndarray:
    """Each element's place within its run of equal values, over values sorted ascending."""
    return np.arange(len(slot)) - np.searchsorted(slot, slot, side="left")


def outcome_judge(gain: np.ndarray, row: np.ndarray) -> OutcomeJudge:
    """The judge of rankings of the teachers' (rows') taken courses with a known outcome (`gain` finite), with
    the outcome's rank among them as the gain (ties share); teachers with fewer than two are left out."""
    known = np.flatnonzero(np.isfinite(gain))
    several = np.bincount(row[known], minlength=int(row.max(initial=-1)) + 1)[row[known]] >= 2
    at = known[several]
    at = at[np.argsort(row[at], kind="stable")]
    teachers, slot = np.unique(row[at], return_inverse=True)
    g = pd.Series(gain[at]).groupby(slot).rank(method="average").to_numpy() - 1.0
    order = np.lexsort((-g, slot))
    idcg = np.bincount(slot[order], g[order] / np.log2(_positions(slot[order]) + 2.0), len(teachers))
    return OutcomeJudge(at, slot, teachers, g, idcg)


def outcome_ndcg(score: np.ndarray, gain: np.ndarray, row: np.ndarray) -> pd.Series:
    """NDCG per teacher (indexed by row) of their taken courses with a known outcome, ranked by `score`
    (`outcome_judge`)."""
    return outcome_judge(gain, row)(score)


def blend_grid() -> list[tuple[float, float, tuple[float, ...]]]:
    """(weight, course share, course mix) of every blend considered, in the order of trust: the learned score
    least first, then the course-level evidence least (the need prior alone first), then the mixes in order."""
    none = COURSE_MIXES[0]
    return [
        (w, c, mix)
        for w in sorted(BLEND_WEIGHTS)
        for c in COURSE_SHARES
        for mix in ((none,) if c == 0 else COURSE_MIXES)
    ]


def choose_blend(
    learned: np.ndarray,
    held_out: RankingData,
    sd_need: float,
    sd_course: tuple[float, ...],
    mean_course: tuple[float, ...] = (0.0,) * len(COURSE_PARTS),
) -> tuple[Blend, dict[str, float]]:
    """The weight of the learned score against the prior, the course-level evidence's share of the prior and
    its mix, judged by how well they rank held-out taken courses by their outcomes (`outcome_ndcg` over every
    known outcome: measured changes, completion, satisfaction and score). `learned` are out-of-fold predictions,
    already on the scale of their model's spread (`fit_ranker`).

    One standard error: of the blends whose mean is within one standard error of the best one's (of the
    teachers' paired differences to it), the first in `blend_grid`'s order: the one that trusts the learned
    score least, then the course-level evidence least. With too few held-out teachers the need prior alone."""
    grid = blend_grid()
    judge = outcome_judge(held_out.gain, held_out.row)
    per_teacher = pd.DataFrame(
        {
            i: judge(
                blend_scores(
                    Blend(w, 1.0, sd_need, c, mix, sd_course, mean_course), learned, held_out.X, held_out.row
                )
            )
            for i, (w, c, mix) in enumerate(grid)
        }
    )
    teachers = len(per_teacher)
    results = {"outcome_teachers": float(teachers)}
    if teachers < MIN_OUTCOME_TEACHERS:
        return Blend(0.0, 1.0, sd_need, 0.0, COURSE_MIXES[0], sd_course, mean_course), results
    mean = per_teacher.mean()
    behind = per_teacher.rsub(per_teacher[mean.idxmax()], axis=0)
    se = behind.std() / np.sqrt(teachers)
    # the first close enough, in the grid's order of trust, is the choice
    chosen = int(np.flatnonzero((behind.mean() <= se).to_numpy())[0])
    w, c, mix = grid[chosen]
    results["outcome_ndcg_need_prior"] = float(mean[0])
    results["outcome_ndcg_best"] = float(mean.max())
    results["outcome_ndcg_chosen"] = float(mean[chosen])
    best = grid[int(np.argmax(mean.to_numpy()))]
    results |= {"best_weight": best[0], "best_course_share": best[1]}
    return Blend(w, 1.0, sd_need, c, mix, sd_course, mean_course), results


# the outcome model learns from single noisy outcomes: slower steps and larger leaves than a ranker of choices
OUTCOME_LEARNING_RATE, OUTCOME_MIN_CHILD = 0.05, 100
# teachers are split in FOLDS: each fold's outcomes are predicted by a model that never saw them (trained on
# three other folds, early-stopped on the fourth), and the blend is chosen on all of them
FOLDS = 5


def fit_outcome_model(
    periods: list[RankingData], train_rows: np.ndarray, stop_rows: np.ndarray, seed: int = 0
) -> tuple[Ranker, float]:
    """A pointwise LightGBM regression of each taken course's outcome (`outcome_gain`) on its pair features,
    trained on the teachers (rows) of `train_rows` in every period and early-stopped on those of `stop_rows` in
    the latest; with the spread of its scores over the training pairs (taken and not)."""
    train = [p.teachers(train_rows) for p in periods]
    X = pd.concat([t.X for t in train], ignore_index=True)
    gain = np.concatenate([t.gain for t in train])
    stop = periods[-1].teachers(stop_rows)
    # no outcome known yet (every course still running): a model of nothing, and the need prior alone ranks
    known = np.isfinite(gain) if np.isfinite(gain).any() else np.ones(len(gain), dtype=bool)
    stop_known = np.isfinite(stop.gain)
    ranker = Ranker(
        objective="regression",
        learning_rate=OUTCOME_LEARNING_RATE,
        min_child_samples=OUTCOME_MIN_CHILD,
        random_state=seed,
    ).fit(
        X[known].reset_index(drop=True),
        np.nan_to_num(gain[known]),
        None,
        eval_set=(
            (stop.X[stop_known].reset_index(drop=True), stop.gain[stop_known], None)
            if stop_known.any()
            else None
        ),
    )
    return ranker, float(np.std(ranker.predict(X[list(FEATURES)]))) or 1.0


def fit_ranker(
    periods: list[RankingData], n_teachers: int, seed: int = 0
) -> tuple[Ranker, Blend, dict[str, float]]:
    """The outcome model and its blend with the prior, from the ranking data of consecutive periods (the same
    `n_teachers` sampled teachers, rows aligned). What is learnt is what came of a course, not whether it was
    chosen (`fit_outcome_model`), so a course's rating, popularity or measured change weighs only as much as it
    predicts outcomes. Teachers are split into FOLDS: the blend is chosen on every teacher-period's outcomes,
    each predicted by a model that did not see that teacher (cross-fitting); the bundle's model is trained on
    all folds but one, which early-stops it on the latest period. The latest period holds the service's newest
    feedback, so it is learnt from at once."""
    fold = np.random.default_rng(seed).permutation(n_teachers) % FOLDS
    pooled = RankingData(
        pd.concat([p.X for p in periods], ignore_index=True),
        np.concatenate([p.row + i * n_teachers for i, p in enumerate(periods)]),
        np.concatenate([p.gain for p in periods]),
        np.concatenate([p.measured for p in periods]),
    )
    pair_fold = fold[pooled.row % n_teachers]
    learned = np.zeros(len(pooled.row))
    for k in range(FOLDS):
        stop = (k + 1) % FOLDS
        model, sd = fit_outcome_model(periods, (fold != k) & (fold != stop), fold == stop, seed)
        at = pair_fold == k
        learned[at] = model.predict(pooled.X[at][list(FEATURES)]) / sd
    sd_need = float(np.std(_column(pooled.X, "need"))) or 1.0
    sd_course = tuple(float(np.std(_column(pooled.X, p))) or 1.0 for p in COURSE_PARTS)
    mean_course = tuple(float(np.mean(_column(pooled.X, p))) for p in COURSE_PARTS)
    chosen, metrics = choose_blend(learned, pooled, sd_need, sd_course, mean_course)
    ranker, sd_learned = fit_outcome_model(periods, fold != 0, fold == 0, seed)
    return ranker, replace(chosen, sd_learned=sd_learned), metrics


def rank_scores(ranker: Ranker, X: pd.DataFrame) -> np.ndarray:
    return ranker.predict(X[list(FEATURES)])
