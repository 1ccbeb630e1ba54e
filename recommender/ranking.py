"""Ranking (排序): teacher inputs for a block, collaborative signals as of a date, training the LambdaRank
model on past choices, and scoring candidate blocks.

Training looks back: features are computed as of a cut date from the records before it; labels are what the
teacher chose in the year after (graded by outcome). The model trains on an earlier cut and is early-stopped on
the latest one, so it is judged on choices it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.history import CAREER_STAGES, FORMATS
from features.pairs import FEATURES, CourseAttrs, CourseStats, TeacherContext, course_stats, pair_features
from models.collab import Interactions, ItemKNN, Transition
from models.ranker import Ranker
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
# graded labels: what the teacher did with a course in the year after the cut
GOOD_SCORE = 90.0
GOOD_SATISFACTION = 4.0
GREAT_SATISFACTION = 5.0
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


def fit_signals(records: pd.DataFrame, teachers: pd.DataFrame, cat: Catalogue, asof: pd.Timestamp) -> Signals:
    """Course statistics, item-item similarity and transitions from the records before `asof`."""
    keys = peer_group_key(teachers)
    group_keys = tuple(sorted(keys.unique()))
    group_pos = pd.Series(np.arange(len(group_keys)), index=group_keys)
    teacher_group = pd.Series(keys.map(group_pos).to_numpy(), index=teachers["teacher_id"].astype(str))
    course_pos = pd.Series(np.arange(cat.n_courses), index=cat.course_ids)
    stats = course_stats(records, course_pos, teacher_group, group_keys, cat.n_courses, asof)
    r = _course_records(records, cat, asof)
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
) -> tuple[TeacherBlock, TeacherContext]:
    """Retrieval block and pair-feature context for the teachers of `rows` (portrait rows as of `asof`)."""
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
    completed = sp.csr_matrix(
        (np.ones(done.sum()), (row_of[done], r["course"].to_numpy()[done])), shape=(n, c)
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


def grade(records: pd.DataFrame) -> pd.Series:
    """Graded label of a chosen course: 1 enrolled / dropped / no-show; a completion 2, plus one each for
    satisfaction ≥ 4, satisfaction ≥ 5 and a score ≥ 90 — how well it went is what a menu should predict."""
    completed = records["status"] == "completed"
    sat = records["satisfaction"].fillna(0).to_numpy()
    how_well = (
        (sat >= GOOD_SATISFACTION).astype(np.int64)
        + (sat >= GREAT_SATISFACTION)
        + (records["score"].fillna(0).to_numpy() >= GOOD_SCORE)
    )
    return pd.Series(np.where(completed, 2 + how_well, 1), index=records.index)


def labelled_pairs(
    block: TeacherBlock,
    cands: Candidates,
    records: pd.DataFrame,
    cat: Catalogue,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> tuple[Candidates, np.ndarray]:
    """Candidates plus the courses actually chosen in [start, end), and their graded labels (0 not chosen)."""
    pos = pd.Series(np.arange(cat.n_courses), index=cat.course_ids)
    ids = pd.Index(block.teacher_ids)
    r = records[
        (records["start_date"] >= start) & (records["start_date"] < end) & records["course_id"].notna()
    ]
    r = r[r["teacher_id"].isin(ids)]
    found = pd.DataFrame(
        {
            "row": ids.get_indexer(pd.Index(r["teacher_id"])),
            "course": r["course_id"].map(pos),
            "label": grade(r).to_numpy(),
        }
    ).dropna()
    chosen = found.astype(np.int64).groupby(["row", "course"], as_index=False)["label"].max()
    cand = pd.DataFrame(
        {"row": cands.row, "course": cands.course, "dense": cands.dense, "lexical": cands.lexical}
    )
    pairs = cand.merge(chosen, on=["row", "course"], how="outer")
    pairs["label"] = pairs["label"].fillna(0)
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
    return both, pairs["label"].to_numpy(np.int64)


@dataclass(frozen=True)
class RankingData:
    X: pd.DataFrame
    y: np.ndarray
    group: np.ndarray


def ranking_data(
    rows: pd.DataFrame,
    competencies: pd.DataFrame,
    records: pd.DataFrame,
    teachers: pd.DataFrame,
    cat: Catalogue,
    attrs: CourseAttrs,
    cut: pd.Timestamp,
    seed: int = 0,
) -> RankingData:
    """Features as of `cut`, labels from the year after; only teachers who chose something are kept."""
    signals = fit_signals(records, teachers, cat, cut)
    block, ctx = teacher_inputs(rows, competencies, records, cat, signals.stats, attrs.topics, cut)
    cands = eligible_negatives(block, cat, seed)
    labelled, y = labelled_pairs(block, cands, records, cat, cut, cut + pd.DateOffset(years=1))
    keep = training_rows(labelled.row, y, seed)
    labelled = Candidates(*(np.asarray(getattr(labelled, f.name))[keep] for f in fields(Candidates)))
    X = features_for(labelled, ctx, cat, attrs, signals)
    y, row = y[keep], labelled.row
    group = np.bincount(row)[np.unique(row)]
    return RankingData(X, y, group)


def eligible_negatives(block: TeacherBlock, cat: Catalogue, seed: int = 0) -> Candidates:
    """NEGATIVES_PER_TEACHER courses drawn uniformly from those open to each teacher (scores left to compute).

    Negatives from retrieval would make similarity separate chosen from not chosen by construction (every
    chosen course joins the pairs, retrieved or not), and the ranker would learn the retrieval back."""
    eligible = eligibility_matrix(block, cat)
    keys = np.where(eligible, np.random.default_rng(seed).random(eligible.shape), -1.0)
    n = min(NEGATIVES_PER_TEACHER, cat.n_courses)
    top = np.argpartition(-keys, n - 1, axis=1)[:, :n]
    ok = np.take_along_axis(keys, top, axis=1) >= 0
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


def fit_ranker(train: RankingData, valid: RankingData, seed: int = 0) -> Ranker:
    return Ranker(random_state=seed).fit(
        train.X, train.y, train.group, eval_set=(valid.X, valid.y, valid.group)
    )


def rank_scores(ranker: Ranker, X: pd.DataFrame) -> np.ndarray:
    return ranker.predict(X[list(FEATURES)])
