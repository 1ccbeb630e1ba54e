"""Batch scoring (批量评分): `score_batch(block, artifacts)` — one pure function that the CLI, the service (for
one teacher) and every engine call, so all paths give the same answer.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.workspace import Workspace, write_parquet_atomic, write_text_atomic
from features.pairs import FEATURES, TeacherContext
from recommender.artifacts import Artifacts, load_current
from recommender.explain import FORMAT_ZH, reasons
from recommender.menu import plan_menus
from recommender.ranking import features_for, teacher_inputs
from recommender.retrieval import retrieve

CANDIDATES = 200
MENU_POOL = 40
REC_COLUMNS = ["teacher_id", "rank", "course_id", "score", "reason"]
MENU_COLUMNS = ["teacher_id", "position", "course_id", "hours", "reason", "status", "message"]


@dataclass(frozen=True)
class PortraitBlock:
    """A block of teachers to score: portrait rows, their competencies (long) and their training records."""

    rows: pd.DataFrame
    competencies: pd.DataFrame
    records: pd.DataFrame


def _facts(
    block: PortraitBlock, art: Artifacts, ctx: TeacherContext, row: np.ndarray, course: np.ndarray
) -> pd.DataFrame:
    """The numbers a reason may cite, for (row, course) pairs: the course competency where the teacher's need is
    largest, peer uptake, satisfaction, mandatory topic owed, format and level."""
    cat, attrs, stats, c = art.catalogue, art.attrs, art.signals.stats, ctx
    comp = cat.course_comp[course]
    est = c.estimate[row]
    peer = c.peer_mean[row]
    need = np.where(comp > 0, c.gaps[row] + np.maximum(peer - est, 0), -np.inf)
    k = np.argmax(need, axis=1)
    has = np.isfinite(need[np.arange(len(row)), k])
    names = dict(zip(art.taxonomy["code"], art.taxonomy["name"], strict=True))
    codes = cat.comp_codes[k]
    ids = block.rows["teacher_id"].to_numpy()[row]
    prior = block.competencies.set_index(["teacher_id", "competency"])["is_prior"]
    is_prior = prior.reindex(pd.MultiIndex.from_arrays([ids, codes])).fillna(True).to_numpy(dtype=bool)
    g = c.group_idx[row]
    gg = np.maximum(g, 0)
    enrol = np.where(g >= 0, np.asarray(stats.group_enrol[gg, course]).ravel(), 0.0)
    done = np.where(g >= 0, np.asarray(stats.group_complete[gg, course]).ravel(), 0.0)
    topic = attrs.mandatory_idx[course]
    topics = np.asarray([*attrs.topics, ""], dtype=object)
    owed = np.zeros(len(row), dtype=bool)
    owed[topic >= 0] = c.missing_mandatory[row[topic >= 0], topic[topic >= 0]]
    fmt = attrs.format_idx[course]
    taste = c.taste[row, np.maximum(fmt, 0)]
    return pd.DataFrame(
        {
            "comp_name": pd.Series([names.get(x, x) for x in codes], dtype=object)
            .where(has, None)
            .to_numpy(),
            "estimate": np.where(has, est[np.arange(len(row)), k], np.nan),
            "peer_mean": np.where(has, peer[np.arange(len(row)), k], np.nan),
            "is_prior": is_prior,
            "mandatory_missing": np.where(owed, topics[topic], None),
            "peer_completions": done.astype(np.int64),
            "peer_completion_rate": np.where(enrol >= 5, done / np.maximum(enrol, 1), np.nan),
            "satisfaction": stats.satisfaction[course],
            "n_ratings": stats.n_rated[course].astype(np.int64),
            "format_zh": [FORMAT_ZH.get(f, "") for f in np.asarray(art.courses["format"])[course]],
            "format_share": np.where(fmt >= 0, taste, np.nan),
            "level": attrs.level[course],
            "similar_course_title": None,
        }
    )


@dataclass(frozen=True)
class Ranked:
    """A block's ranked courses: the top-k with reasons, and the menu pool (top MENU_POOL plus every course of a
    mandatory topic the teacher owes) in the columns `recommender.menu` plans from."""

    recs: pd.DataFrame
    pool: pd.DataFrame


def rank_block(block: PortraitBlock, art: Artifacts, top_k: int = 20) -> Ranked:
    """Retrieve, featurise and rank the catalogue for every teacher of the block."""
    cat = art.catalogue
    tb, ctx = teacher_inputs(
        block.rows, block.competencies, block.records, cat, art.signals.stats, art.attrs.topics, art.asof
    )
    topic_courses = np.zeros((len(art.attrs.topics), cat.n_courses), dtype=bool)
    has_topic = art.attrs.mandatory_idx >= 0
    topic_courses[art.attrs.mandatory_idx[has_topic], np.flatnonzero(has_topic)] = True
    must = (ctx.missing_mandatory.astype(np.float32) @ topic_courses.astype(np.float32)) > 0
    cands = retrieve(tb, cat, art.index, CANDIDATES, include=must)
    X = features_for(cands, ctx, cat, art.attrs, art.signals)
    score = art.ranker.predict(X[list(FEATURES)])
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
            "teacher_id": ids[row[top]],
            "rank": rank[top].astype(np.int64),
            "course_id": cat.course_ids[course[top]],
            "score": score[top],
            "reason": why.reindex(np.flatnonzero(top)).to_numpy(),
        }
    )
    courses = art.courses.set_index("course_id")
    pool = courses.loc[cat.course_ids[course[in_pool]]].reset_index()
    pool_cands = pd.DataFrame(
        {
            "teacher_id": ids[row[in_pool]],
            "course_id": pool["course_id"].to_numpy(),
            "score": score[in_pool],
            "hours": pool["hours"].to_numpy(),
            "format": pool["format"].to_numpy(),
            "practical": pool["practical"].fillna(False).to_numpy(dtype=bool),
            "mandatory_topic": pool["mandatory_topic"].to_numpy(),
            "competencies": pool["competencies_used"].to_numpy(),
            "prerequisites": pool["prerequisites"].to_numpy(),
            "cost_yuan": pool["cost_yuan"].fillna(0.0).to_numpy(),
            "reason": why.reindex(np.flatnonzero(in_pool)).to_numpy(),
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


def _portraits(ws: Workspace) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = pd.read_parquet(ws.portraits_dir / "teachers.parquet")
    comp = pd.read_parquet(ws.portraits_dir / "competencies.parquet")
    return rows.sort_values("teacher_id", kind="stable").reset_index(drop=True), comp


def _records(ws: Workspace) -> pd.DataFrame:
    cols = ["teacher_id", "course_id", "start_date", "end_date", "status", "hours", "format"]
    if not ws.has_table("training_records"):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    return ws.read_table("training_records")[cols]


def blocks_of(ws: Workspace, block_size: int) -> Iterator[tuple[int, PortraitBlock]]:
    """The workspace's teachers in deterministic blocks (sorted by teacher_id)."""
    rows, comp = _portraits(ws)
    records = _records(ws)
    for i, start in enumerate(range(0, len(rows), block_size)):
        r = rows.iloc[start : start + block_size]
        ids = set(r["teacher_id"])
        yield (
            i,
            PortraitBlock(
                r.reset_index(drop=True),
                comp[comp["teacher_id"].isin(ids)],
                records[records["teacher_id"].isin(ids)],
            ),
        )


def score_local(
    ws: Workspace, out: Path, top_k: int, block_size: int, progress: Callable[[int, int], None] | None = None
) -> tuple[Path, Path]:
    """Score every teacher of the workspace block by block into OUT/recommendations.parquet/ and
    OUT/menus.parquet/ (one part file per block, each written atomically). A re-run skips finished blocks, so a
    killed run resumes where it stopped and ends with the same files."""
    art = load_current(ws.bundles_dir)
    rec_dir, menu_dir = out / "recommendations.parquet", out / "menus.parquet"
    stamp = json.dumps({"bundle": art.version, "block_size": block_size, "top_k": top_k}, sort_keys=True)
    stamp_path = out / "_run.json"
    if stamp_path.exists() and stamp_path.read_text(encoding="utf-8") != stamp:
        shutil.rmtree(rec_dir, ignore_errors=True)
        shutil.rmtree(menu_dir, ignore_errors=True)
    rec_dir.mkdir(parents=True, exist_ok=True)
    menu_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stamp_path, stamp)
    n_teachers = len(pd.read_parquet(ws.portraits_dir / "teachers.parquet", columns=["teacher_id"]))
    done = 0
    for i, block in blocks_of(ws, block_size):
        name = f"part-{i:05d}.parquet"
        if not (rec_dir / name).exists() or not (menu_dir / name).exists():
            recs, menus = score_batch(block, art, top_k)
            write_parquet_atomic(menus, menu_dir / name)
            write_parquet_atomic(recs, rec_dir / name)
        done += len(block.rows)
        if progress:
            progress(done, n_teachers)
    return rec_dir, menu_dir
