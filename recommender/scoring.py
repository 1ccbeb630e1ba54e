"""The online scoring core (打分): `rank_block` retrieves, featurises and ranks the catalogue for a block of
teachers, `score_batch` adds the policy-bound menus — pure functions of a block and the artifacts, which the
service (for one teacher), `tdr score` and every batch engine call, so all paths give the same answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.need import need_matrix
from features.pairs import TeacherContext, comp_entries, group_starts, sparse_at
from recommender.artifacts import Artifacts
from recommender.explain import FORMAT_ZH, reasons
from recommender.menu import plan_menus
from recommender.ranking import blend_scores, features_for, teacher_inputs
from recommender.retrieval import eligibility_matrix, retrieve, top_per_row

CANDIDATES = 200
# courses of highest need prior added to each teacher's candidates (features.need)
PRIOR_CANDIDATES = 50
# courses of highest mean satisfaction, and of highest popularity, added to each teacher's candidates
COURSE_CANDIDATES = 25
# courses of each mandatory topic a teacher owes, of highest need prior, that join its candidates and menu pool
OWED_CANDIDATES = 20
MENU_POOL = 40
# teachers whose pairs are featurised and scored together: their feature matrix (~12 MB) is reused from the heap
# block after block, where a block's (~100 MB) would be mapped afresh and page-faulted in every time
SCORE_TEACHERS = 250
REC_COLUMNS = ["teacher_id", "rank", "course_id", "score", "reason"]
MENU_COLUMNS = ["teacher_id", "position", "course_id", "hours", "reason", "status", "message"]


@dataclass(frozen=True)
class PortraitBlock:
    """A block of teachers to score: portrait rows, their competencies (long) and their training records."""

    rows: pd.DataFrame
    competencies: pd.DataFrame
    records: pd.DataFrame
    # teacher_id, course_id: dismissals beyond the bundle's (the service's events since it was trained)
    dismissed: pd.DataFrame | None = None


def _facts(
    block: PortraitBlock, art: Artifacts, ctx: TeacherContext, row: np.ndarray, course: np.ndarray
) -> pd.DataFrame:
    """The numbers a reason may cite, for (row, course) pairs: the course competency where the teacher's need is
    largest, peer uptake, satisfaction, mandatory topic owed, format and level."""
    cat, attrs, stats, c = art.catalogue, art.attrs, art.signals.stats, ctx
    # the course's competency (lowest code position on a tie) where gap + shortfall from peers is largest
    pair, code, _ = comp_entries(cat.course_comp, course)
    at = row[pair]
    need = c.gaps[at, code] + np.maximum(c.peer_mean[at, code] - c.estimate[at, code], 0)
    k = np.zeros(len(row), dtype=np.int64)
    has = np.zeros(len(row), dtype=bool)
    if len(pair):
        first = group_starts(pair)
        top = np.repeat(np.maximum.reduceat(need, first), np.diff(np.r_[first, len(pair)]))
        hit = np.flatnonzero(need == top)
        hit = hit[group_starts(pair[hit])]
        k[pair[hit]] = code[hit]
        has[pair[hit]] = np.isfinite(need[hit])
    names = dict(zip(art.taxonomy["code"], art.taxonomy["name"], strict=True))
    comp_names = np.array([names.get(x, x) for x in cat.comp_codes], dtype=object)
    rows, comps = block.rows, block.competencies
    # is_prior per (teacher, competency) of the block; a competency without an estimate reads as a prior
    prior = np.ones((len(rows), len(cat.comp_codes)), dtype=bool)
    t = pd.Index(rows["teacher_id"]).get_indexer(comps["teacher_id"])
    code = pd.Index(cat.comp_codes).get_indexer(comps["competency"])
    known = (t >= 0) & (code >= 0)
    prior[t[known], code[known]] = comps["is_prior"].astype(object).fillna(True).to_numpy(dtype=bool)[known]
    g = c.group_idx[row]
    gg = np.maximum(g, 0)
    enrol = np.where(g >= 0, sparse_at(stats.group_enrol, gg, course), 0.0)
    done = np.where(g >= 0, sparse_at(stats.group_complete, gg, course), 0.0)
    topic = attrs.mandatory_idx[course]
    topics = np.asarray([*attrs.topics, ""], dtype=object)
    owed = np.zeros(len(row), dtype=bool)
    owed[topic >= 0] = c.missing_mandatory[row[topic >= 0], topic[topic >= 0]]
    fmt = attrs.format_idx[course]
    taste = c.taste[row, np.maximum(fmt, 0)]
    return pd.DataFrame(
        {
            "comp_name": np.where(has, comp_names[k], np.array(None, dtype=object)),
            "estimate": np.where(has, c.estimate[row, k], np.nan),
            "peer_mean": np.where(has, c.peer_mean[row, k], np.nan),
            "is_prior": prior[row, k],
            "mandatory_missing": np.where(owed, topics[topic], None),
            "peer_completions": done.astype(np.int64),
            "peer_completion_rate": np.where(enrol >= 5, done / np.maximum(enrol, 1), np.nan),
            "satisfaction": stats.satisfaction[course],
            "n_ratings": stats.n_rated[course].astype(np.int64),
            "format_zh": np.array([FORMAT_ZH.get(f, "") for f in art.courses["format"]], dtype=object)[
                course
            ],
            "format_share": np.where(fmt >= 0, taste, np.nan),
            "level": attrs.level[course],
            "similar_course_title": None,
            "measured_change": stats.change_mean[course],
            "measured_se": stats.change_se[course],
            "n_measured": stats.n_measured[course].astype(np.int64),
        }
    )


def _objects(values: np.ndarray) -> pd.Series:
    """A column of Python objects kept as such: pandas would otherwise convert text to its string dtype, a
    copy per column that a block of 100 000 rows pays for nothing."""
    return pd.Series(values, dtype=object)


@dataclass(frozen=True)
class Ranked:
    """A block's ranked courses: the top-k with reasons, and the menu pool (top MENU_POOL plus the OWED_CANDIDATES
    courses of each mandatory topic the teacher owes, `owed_top`) in the columns `recommender.menu` plans from."""

    recs: pd.DataFrame
    pool: pd.DataFrame


def _spans(row: np.ndarray, teachers: int) -> Iterator[tuple[int, int, int, int]]:
    """(first pair, end pair, first teacher, end teacher) of consecutive groups of `teachers` teachers, over
    pairs sorted by teacher row."""
    if not len(row):
        return
    n = int(row[-1]) + 1
    for r0 in range(0, n, teachers):
        r1 = min(n, r0 + teachers)
        yield int(np.searchsorted(row, r0)), int(np.searchsorted(row, r1)), r0, r1


def _top_eligible(scores: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """(teachers × courses) bool: each row's k eligible courses of highest score."""
    rows, cols = top_per_row(np.where(eligible, scores, -np.inf), k)
    out = np.zeros(eligible.shape, dtype=bool)
    out[rows, cols] = True
    return out


def _top_eligible_shared(score: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """(teachers × courses) bool: each row's k eligible courses of highest `score`, one score per course shared by
    every teacher — the first eligible ones in the courses' order of score, so a teacher costs the prefix of the
    order that holds k of its eligible courses, not the catalogue."""
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    order = order[np.isfinite(score[order])]
    out = np.zeros(eligible.shape, dtype=bool)
    todo, width = np.arange(eligible.shape[0]), 4 * k
    while len(todo):
        cols = order[:width]
        taken = eligible[np.ix_(todo, cols)]
        taken &= np.cumsum(taken, axis=1) <= k
        done = (taken.sum(axis=1) >= k) | (width >= len(order))
        r, c = np.nonzero(taken[done])
        out[todo[done][r], cols[c]] = True
        todo, width = todo[~done], width * 4
    return out


def owed_top(
    missing: np.ndarray, mandatory_idx: np.ndarray, need: np.ndarray, eligible: np.ndarray, k: int
) -> np.ndarray:
    """(teachers × courses) bool: for every mandatory topic a teacher owes (`missing`, teachers × topics), its k
    eligible courses of that topic of highest need prior — enough for the menu to meet the topic with room to
    fit the hours, where every course of the topic (hundreds in a large catalogue) would swell the candidates
    and the menu's search for nothing."""
    out = np.zeros(eligible.shape, dtype=bool)
    for topic in range(missing.shape[1]):
        rows, cols = np.flatnonzero(missing[:, topic]), np.flatnonzero(mandatory_idx == topic)
        if len(rows) and len(cols):
            at = np.ix_(rows, cols)
            r, c = top_per_row(np.where(eligible[at], np.nan_to_num(need[at]), -np.inf), k)
            out[rows[r], cols[c]] = True
    return out


def prior_top(need: np.ndarray, eligible: np.ndarray, art: Artifacts) -> np.ndarray:
    """(teachers × courses) bool: each teacher's PRIOR_CANDIDATES eligible courses of highest need prior and
    COURSE_CANDIDATES of highest mean satisfaction and of highest popularity, which join the candidates whatever
    retrieval finds: the ranker weighs every signal it reads on the courses each signal puts first (the need
    prior is also the fallback it cannot lose), where retrieval by content similarity alone would miss a course
    that is good or sought after for reasons no text states."""
    stats = art.signals.stats
    return (
        _top_eligible(need, eligible, PRIOR_CANDIDATES)
        | _top_eligible_shared(stats.satisfaction, eligible, COURSE_CANDIDATES)
        | _top_eligible_shared(stats.popularity, eligible, COURSE_CANDIDATES)
    )


def dismissed_mask(
    block: PortraitBlock, art: Artifacts, teacher_ids: np.ndarray, course_ids: np.ndarray
) -> np.ndarray:
    """(teachers × courses) bool: the courses each teacher dismissed (the bundle's dismissals in force and the
    block's own)."""
    parts = [d for d in (art.dismissed, block.dismissed) if d is not None and len(d)]
    out = np.zeros((len(teacher_ids), len(course_ids)), dtype=bool)
    if parts:
        d = pd.concat(parts, ignore_index=True)
        t = pd.Index(teacher_ids).get_indexer(d["teacher_id"].astype(str))
        c = pd.Index(course_ids).get_indexer(d["course_id"].astype(str))
        ok = (t >= 0) & (c >= 0)
        out[t[ok], c[ok]] = True
    return out


def rank_block(block: PortraitBlock, art: Artifacts, top_k: int = 20) -> Ranked:
    """Retrieve, featurise and rank the catalogue for every teacher of the block."""
    cat = art.catalogue
    tb, ctx = teacher_inputs(
        block.rows, block.competencies, block.records, cat, art.signals.stats, art.attrs.topics, art.asof
    )
    eligible = eligibility_matrix(tb, cat)
    need = need_matrix(ctx.need_base, ctx.estimate, cat.course_comp, art.attrs.level)
    must = owed_top(ctx.missing_mandatory, art.attrs.mandatory_idx, need, eligible, OWED_CANDIDATES)
    include = must | prior_top(need, eligible, art)
    cands = retrieve(tb, cat, art.index, CANDIDATES, include=include, eligible=eligible)
    cands = cands.take(~dismissed_mask(block, art, tb.teacher_ids, cat.course_ids)[cands.row, cands.course])
    score = np.empty(len(cands.row))
    for lo, hi, r0, r1 in _spans(cands.row, SCORE_TEACHERS):
        X = features_for(cands.span(lo, hi, r0), ctx.rows(r0, r1), cat, art.attrs, art.signals)
        learned = art.ranker.predict(X)
        score[lo:hi] = (
            learned if art.blend is None else blend_scores(art.blend, learned, X, cands.row[lo:hi] - r0)
        )
    order = np.lexsort((cands.course, -score, cands.row))
    row, course, score = cands.row[order], cands.course[order], score[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row, side="left") + 1
    top = rank <= top_k
    in_pool = (rank <= MENU_POOL) | must[row, course]
    facts_mask = top | in_pool
    facts = _facts(block, art, ctx, row[facts_mask], course[facts_mask])
    why = pd.Series(reasons(facts).to_numpy(), index=np.flatnonzero(facts_mask))
    ids = tb.teacher_ids
    recs = pd.DataFrame(
        {
            "teacher_id": _objects(ids[row[top]]),
            "rank": rank[top].astype(np.int64),
            "course_id": _objects(cat.course_ids[course[top]]),
            "score": score[top],
            "reason": _objects(why.reindex(np.flatnonzero(top)).to_numpy()),
        }
    )
    # the bundle's courses are the catalogue's, in its order: a pool row's course is a row position
    courses, at = art.courses, course[in_pool]
    pool_cands = pd.DataFrame(
        {
            "teacher_id": _objects(ids[row[in_pool]]),
            "course_id": _objects(cat.course_ids[at]),
            "score": score[in_pool],
            "hours": courses["hours"].to_numpy(dtype=np.float64)[at],
            "format": _objects(courses["format"].to_numpy(dtype=object)[at]),
            "practical": courses["practical"].fillna(False).to_numpy(dtype=bool)[at],
            "mandatory_topic": _objects(courses["mandatory_topic"].to_numpy(dtype=object)[at]),
            "competencies": _objects(courses["competencies_used"].to_numpy(dtype=object)[at]),
            "prerequisites": _objects(courses["prerequisites"].to_numpy(dtype=object)[at]),
            "cost_yuan": courses["cost_yuan"].fillna(0.0).to_numpy(dtype=np.float64)[at],
            "reason": _objects(why.reindex(np.flatnonzero(in_pool)).to_numpy()),
        }
    )
    return Ranked(recs[REC_COLUMNS], pool_cands)


def menu_teachers(rows: pd.DataFrame) -> pd.DataFrame:
    """The teacher columns `plan_menus` reads, from portrait rows."""
    completed = (
        rows["completed_course_ids"] if "completed_course_ids" in rows else pd.Series([[]] * len(rows))
    )
    return pd.DataFrame(
        {
            "teacher_id": rows["teacher_id"].to_numpy(),
            "stage": rows["stage"].to_numpy(),
            "missing_mandatory": rows["missing_mandatory"].to_numpy(),
            "completed": completed.to_numpy(),
        }
    )


def score_batch(block: PortraitBlock, art: Artifacts, top_k: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-k recommendations with reasons and the policy-compliant menu for every teacher of the block.

    Menus: one row per chosen course (position, course_id, hours, reason); a teacher the policy leaves without
    a menu gets one row with no course and the stated reason. `status` and `message` say whether a rule had to
    be relaxed (and which)."""
    ranked = rank_block(block, art, top_k)
    menus, statuses = plan_menus(ranked.pool, menu_teachers(block.rows), art.policy)
    menus = menus.merge(
        ranked.pool[["teacher_id", "course_id", "reason"]], on=["teacher_id", "course_id"], how="left"
    )
    empty = statuses[~statuses["teacher_id"].isin(menus["teacher_id"])]
    stated = pd.DataFrame(
        {
            "teacher_id": empty["teacher_id"].to_numpy(),
            "position": 0,
            "course_id": None,
            "hours": 0.0,
            "reason": empty["message"].to_numpy(),
        }
    )
    menus = pd.concat([menus, stated], ignore_index=True) if len(stated) else menus
    menus = menus.merge(statuses[["teacher_id", "status", "message"]], on="teacher_id", how="left")
    menus = menus.sort_values(["teacher_id", "position"], kind="stable").reset_index(drop=True)
    return ranked.recs, menus[MENU_COLUMNS]
