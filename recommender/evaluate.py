"""Offline evaluation (离线评估, `tdr evaluate`): how good the trained bundle's recommendations, portraits, tags and
menus are — against a synthetic province's hidden truth when one is given, and against simple baselines.

`evaluate(ws, truth_dir)` reads the workspace (tables, portraits, current bundle) and the truth folder and
returns one JSON-able dict; `write_report` writes it atomically. Nothing here writes into the workspace.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data.synthetic import Truth, load_truth
from data.workspace import Workspace, write_text_atomic
from features.need import plain_rule
from features.pairs import TeacherContext
from models.collab import Interactions, ItemKNN, Popularity
from recommender.artifacts import Artifacts, load, paired
from recommender.menu import Menu, TeacherMenuContext, check_menu, plan_menus
from recommender.ranking import teacher_inputs
from recommender.retrieval import Catalogue, TeacherBlock, eligibility_matrix, lexical_scores, query_vectors
from recommender.scoring import PortraitBlock, menu_teachers, rank_block

# teachers scored per block: bounds the (teachers × courses) arrays the baselines hold at once
BLOCK_TEACHERS = 2000
# the evaluation scores every teacher up to this many; a larger province is sampled (seeded)
MAX_TEACHERS = 5000
# menus are planned and checked for a seeded subset of these: each one is a small MILP plus an independent
# check (~50 ms together), and a compliance rate needs far fewer menus than an NDCG by teacher group
MENU_TEACHERS = 1000
# item-kNN baseline: the neighbourhood and shrinkage the ranker's own collaborative feature uses
KNN_NEIGHBOURS, KNN_SHRINK = 50, 10.0
# the baselines, in report order; "tdr" is the bundle's ranker as `tdr score` runs it
# "rule" is the plain gap × level-fit rule on TDR's own portraits (features.need.plain_rule); "need_rating" an
# untuned sum of the standardised gap coverage and the standardised mean satisfaction
BASELINES = (
    "rule",
    "need_rating",
    "satisfaction",
    "popularity",
    "bm25",
    "embedding",
    "gap",
    "item_knn",
    "random",
)
METHODS = ("tdr", *BASELINES)
# a 95 % interval covers the truth when |estimate − truth| ≤ Z95 · std_error
Z95 = 1.959964
# groups smaller than this get no NDCG figure of their own (too noisy to read)
MIN_GROUP = 20
# share of courses whose stages and subjects must agree with the truth for it to be this province's
TRUTH_AGREEMENT = 0.95


# ---------------------------------------------------------------------------------------------------------
# ranking metrics


def ndcg_at_k(ranked: pd.DataFrame, utility: pd.DataFrame, k: int) -> pd.Series:
    """NDCG@k per teacher with the true utility as the (linear) gain.

    ranked: teacher_id, course_id, rank (1 = best). utility: teacher_id, course_id, utility; a pair it lacks
    is worth 0. Teachers with no positive utility have no ideal ranking and are left out; a teacher of
    `utility` missing from `ranked` scores 0."""
    util = utility[utility["utility"] > 0]
    gain = (
        util.set_index(["teacher_id", "course_id"])["utility"]
        .reindex(pd.MultiIndex.from_frame(ranked[["teacher_id", "course_id"]]))
        .fillna(0.0)
        .to_numpy(dtype=np.float64)
    )
    rank = ranked["rank"].to_numpy(dtype=np.float64)
    dcg = (
        pd.Series(np.where(rank <= k, gain / np.log2(rank + 1.0), 0.0))
        .groupby(ranked["teacher_id"].to_numpy())
        .sum()
    )
    best = util.sort_values(["teacher_id", "utility"], ascending=[True, False], kind="stable")
    best = best.groupby("teacher_id", sort=False).head(k)
    pos = best.groupby("teacher_id", sort=False).cumcount().to_numpy() + 1.0
    idcg = (
        pd.Series(best["utility"].to_numpy() / np.log2(pos + 1.0))
        .groupby(best["teacher_id"].to_numpy())
        .sum()
    )
    return (dcg.reindex(idcg.index).fillna(0.0) / idcg).rename("ndcg")


def top_k_frame(
    scores: np.ndarray, eligible: np.ndarray, teacher_ids: np.ndarray, course_ids: np.ndarray, k: int
) -> pd.DataFrame:
    """The k best eligible courses of each row of `scores` (ties to the earlier course) in long form:
    teacher_id, course_id, rank. A row with fewer than k eligible courses lists only those."""
    n, c = scores.shape
    k = min(k, c)
    masked = np.where(eligible, scores, -np.inf)
    # a stable sort on the negated scores keeps ties in catalogue order, so every run ranks alike
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    keep = np.isfinite(np.take_along_axis(masked, order, axis=1))
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    ranks = np.tile(np.arange(1, k + 1), (n, 1))
    return pd.DataFrame(
        {
            "teacher_id": teacher_ids[rows[keep]],
            "course_id": course_ids[order[keep]],
            "rank": ranks[keep].astype(np.int64),
        }
    )


@dataclass(frozen=True)
class Collaborative:
    """Baseline models fitted on every workspace record with a catalogue course before the bundle's date."""

    users: pd.Index  # teacher_id of each row of `history`
    history: sp.csr_matrix  # teachers × courses, 1 where the teacher took the course
    popularity: np.ndarray  # (C,) teachers who took each course
    knn: ItemKNN


def fit_collaborative(records: pd.DataFrame, cat: Catalogue, asof: pd.Timestamp) -> Collaborative:
    pos = pd.Series(np.arange(cat.n_courses), index=cat.course_ids)
    r = records[(records["start_date"] < asof) & records["course_id"].notna()]
    mapped = r["course_id"].astype(str).map(pos)
    r = r[mapped.notna().to_numpy()]
    course = mapped.dropna().to_numpy(dtype=np.int64)
    users = pd.Index(np.sort(r["teacher_id"].astype(str).unique()))
    log = Interactions.from_arrays(
        users.get_indexer(r["teacher_id"].astype(str)),
        course,
        r["start_date"].to_numpy().astype("datetime64[D]").astype(np.float64),
        n_users=len(users),
        n_items=cat.n_courses,
    )
    history = log.matrix()
    return Collaborative(
        users=users,
        history=history,
        popularity=Popularity().fit(log).counts_.astype(np.float64),
        knn=ItemKNN(k=KNN_NEIGHBOURS, shrink=KNN_SHRINK).fit(history),
    )


def _z(values: np.ndarray) -> np.ndarray:
    sd = float(np.std(values))
    return (values - float(np.mean(values))) / (sd if sd > 0 else 1.0)


def baseline_scores(
    tb: TeacherBlock,
    ctx: TeacherContext,
    art: Artifacts,
    collab: Collaborative,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """(teachers × courses) scores of every baseline for a block; none of them learns from choices."""
    cat = art.catalogue
    n = len(tb)
    rows = collab.users.get_indexer(pd.Index(tb.teacher_ids.astype(str)))
    history = sp.csr_matrix((n, cat.n_courses), dtype=np.float32)
    if (rows >= 0).any():
        picked = collab.history[np.maximum(rows, 0)]
        history = sp.csr_matrix(sp.diags((rows >= 0).astype(np.float32)) @ picked)
    gap = tb.gaps @ cat.course_comp.T
    satisfaction = art.signals.stats.satisfaction
    return {
        "rule": plain_rule(ctx.gaps, ctx.estimate, cat.course_comp, art.attrs.level),
        "need_rating": _z(gap) + _z(satisfaction)[None, :],
        "satisfaction": np.tile(satisfaction, (n, 1)),
        "popularity": np.tile(collab.popularity, (n, 1)),
        "bm25": lexical_scores(tb, cat).astype(np.float64),
        "embedding": (query_vectors(tb, cat) @ cat.vectors.T).astype(np.float64),
        "gap": gap,
        "item_knn": collab.knn.score(history).astype(np.float64),
        "random": rng.random((n, cat.n_courses)),
    }


# ---------------------------------------------------------------------------------------------------------
# reading the workspace


@dataclass(frozen=True)
class WorkspaceData:
    portraits: pd.DataFrame  # one row per teacher, sorted by teacher_id
    competencies: pd.DataFrame  # teacher × competency, long
    records: pd.DataFrame
    teachers: pd.DataFrame
    courses: pd.DataFrame


def read_workspace(ws: Workspace) -> WorkspaceData:
    portraits = pd.read_parquet(ws.portraits_dir / "teachers.parquet")
    cols = ["teacher_id", "course_id", "start_date", "end_date", "status", "hours", "format"]
    records = (
        ws.read_table("training_records")[cols]
        if ws.has_table("training_records")
        else pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    )
    return WorkspaceData(
        portraits=portraits.sort_values("teacher_id", kind="stable").reset_index(drop=True),
        competencies=pd.read_parquet(ws.portraits_dir / "competencies.parquet"),
        records=records,
        teachers=ws.read_table("teachers"),
        courses=ws.read_table("courses"),
    )


def blocks(data: WorkspaceData, teacher_ids: np.ndarray) -> Iterator[PortraitBlock]:
    rows = data.portraits[data.portraits["teacher_id"].isin(set(teacher_ids))]
    for start in range(0, len(rows), BLOCK_TEACHERS):
        r = rows.iloc[start : start + BLOCK_TEACHERS].reset_index(drop=True)
        ids = set(r["teacher_id"])
        yield PortraitBlock(
            r,
            data.competencies[data.competencies["teacher_id"].isin(ids)],
            data.records[data.records["teacher_id"].isin(ids)],
        )


def pick_teachers(ids: np.ndarray, max_teachers: int | None, seed: int) -> np.ndarray:
    ids = np.sort(np.asarray(ids, dtype=str))
    if max_teachers is None or len(ids) <= max_teachers:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=max_teachers, replace=False))


# ---------------------------------------------------------------------------------------------------------
# checks that need no truth: what a recommendation or a menu must never be


def completed_pairs(records: pd.DataFrame) -> pd.DataFrame:
    done = records[(records["status"] == "completed") & records["course_id"].notna()]
    return done[["teacher_id", "course_id"]].astype(str).drop_duplicates()


def closed_pairs(pairs: pd.DataFrame, teachers: pd.DataFrame, courses: pd.DataFrame) -> np.ndarray:
    """Per (teacher_id, course_id) pair: True when the course is closed to the teacher's stage or subject or
    inactive, read straight from the workspace tables (not from the bundle's eligibility arrays)."""
    t = teachers.set_index(teachers["teacher_id"].astype(str))[["stage", "subject"]]
    c = courses.set_index(courses["course_id"].astype(str))[["stages", "subjects", "active"]]
    tid = pairs["teacher_id"].astype(str).to_numpy()
    cid = pairs["course_id"].astype(str).to_numpy()
    stage = t["stage"].reindex(tid).astype(str).to_numpy()
    subject = t["subject"].reindex(tid).astype(str).to_numpy()
    cc = c.reindex(cid)
    open_stage = np.array(
        [len(s) == 0 or st in set(s) for s, st in zip(cc["stages"], stage, strict=True)], dtype=bool
    )
    open_subject = np.array(
        [len(s) == 0 or sb in set(s) for s, sb in zip(cc["subjects"], subject, strict=True)], dtype=bool
    )
    active = cc["active"].fillna(True).to_numpy(dtype=bool)
    return ~(open_stage & open_subject & active)


def pair_violations(pairs: pd.DataFrame, data: WorkspaceData) -> dict[str, int]:
    """How many recommended pairs repeat a completed course or are closed to the teacher."""
    key = pairs["teacher_id"].astype(str) + "\x1f" + pairs["course_id"].astype(str)
    done = completed_pairs(data.records)
    done_key = set(done["teacher_id"] + "\x1f" + done["course_id"])
    return {
        "pairs": int(len(pairs)),
        "completed_already": int(key.isin(done_key).sum()),
        "closed_to_teacher": int(closed_pairs(pairs, data.teachers, data.courses).sum()),
    }


def menu_compliance(
    pool: pd.DataFrame, rows: pd.DataFrame, data: WorkspaceData, art: Artifacts
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Plan every teacher's menu as `tdr score` does, and check each one with `check_menu` on its own.

    Returns (menus long: teacher_id, course_id, …) and one row per teacher: status, relaxed_rule, broken
    (the rules `check_menu` finds broken, beyond the one the planner says it relaxed)."""
    teachers = menu_teachers(rows)
    menus, statuses = plan_menus(pool, teachers, art.policy)
    done: dict[str, frozenset[str]] = {
        str(t): frozenset(g) for t, g in completed_pairs(data.records).groupby("teacher_id")["course_id"]
    }
    chosen = {str(t): g for t, g in menus.groupby("teacher_id", sort=False)}
    offered = {str(t): g for t, g in pool.groupby("teacher_id", sort=False)}
    owed = {
        str(t): tuple(m) if m is not None else ()
        for t, m in zip(teachers["teacher_id"], teachers["missing_mandatory"], strict=True)
    }
    stage = dict(zip(teachers["teacher_id"].astype(str), teachers["stage"].astype(str), strict=True))
    broken: list[list[str]] = []
    # one menu at a time: check_menu is the independent, per-menu statement of the rules
    for s in statuses.to_dict("records"):
        tid = str(s["teacher_id"])
        items = chosen.get(tid, menus.iloc[:0])
        menu = Menu(
            teacher_id=tid,
            items=tuple(items["course_id"].astype(str)),
            hours=tuple(items["hours"].astype(float)),
            total_hours=float(s["total_hours"]),
            practical_hours=float(s["practical_hours"]),
            cost_yuan=float(s["cost_yuan"]),
            status=s["status"],
            relaxed_rule=s["relaxed_rule"],
            message=s["message"],
        )
        context = TeacherMenuContext(tid, stage[tid], owed[tid], done.get(tid, frozenset()))
        problems = check_menu(menu, offered.get(tid, pool.iloc[:0]), context, art.policy)
        broken.append([p.split(":", 1)[0] for p in problems])
    return menus, statuses.assign(broken=pd.Series(broken, index=statuses.index, dtype=object))


def menu_composition(menus: pd.DataFrame, courses: pd.DataFrame) -> dict[str, Any]:
    """What the menus are made of: share of menu hours by format, practical share, mandatory topics."""
    c = courses.drop_duplicates("course_id").set_index("course_id")
    m = menus[menus["course_id"].notna()]
    cc = c.reindex(m["course_id"].astype(str))
    hours = m["hours"].to_numpy(dtype=np.float64)
    total = max(float(hours.sum()), 1e-12)
    fmt = pd.Series(hours).groupby(cc["format"].fillna("unknown").to_numpy()).sum() / total
    practical = cc["practical"].astype(object).fillna(False).to_numpy(dtype=bool)
    topic = cc["mandatory_topic"].astype(object)
    with_topic = topic.notna().to_numpy()
    per_teacher = pd.Series(with_topic).groupby(m["teacher_id"].to_numpy()).any()
    return {
        "hours_share_by_format": {str(k): float(v) for k, v in fmt.sort_values(ascending=False).items()},
        "practical_hours_share": float(hours[practical].sum() / total),
        "share_of_menus_with_a_mandatory_course": float(per_teacher.mean()) if len(per_teacher) else math.nan,
        "mandatory_courses_by_topic": {str(k): int(v) for k, v in topic[with_topic].value_counts().items()},
    }


def menu_summary(statuses: pd.DataFrame) -> dict[str, Any]:
    n = max(len(statuses), 1)
    clean = statuses["broken"].apply(len) == 0
    ok = (statuses["status"] == "ok") & clean
    relaxed = statuses[statuses["status"] == "relaxed"]["relaxed_rule"].value_counts()
    broken = pd.Series([b for bs in statuses["broken"] for b in bs], dtype=object).value_counts()
    return {
        "teachers": int(len(statuses)),
        "share_obeying_every_rule": float(ok.sum() / n),
        "share_relaxed": float((statuses["status"] == "relaxed").sum() / n),
        "share_empty": float((statuses["status"] == "empty").sum() / n),
        "share_breaking_a_rule": float((~clean).sum() / n),
        "relaxed_rules": {str(k): int(v) for k, v in relaxed.items()},
        "broken_rules": {str(k): int(v) for k, v in broken.items()},
        "mean_hours": float(statuses["total_hours"].mean()) if len(statuses) else math.nan,
        "median_hours": float(statuses["total_hours"].median()) if len(statuses) else math.nan,
        "p90_hours": float(statuses["total_hours"].quantile(0.9)) if len(statuses) else math.nan,
        "mean_courses": float(statuses["n_courses"].mean()) if len(statuses) else math.nan,
    }


# ---------------------------------------------------------------------------------------------------------
# portrait recovery and tagging against the truth


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def recovery(competencies: pd.DataFrame, portraits: pd.DataFrame, latent: pd.DataFrame) -> dict[str, Any]:
    """Correlation of portrait estimates with the true competencies (0–100 scale), per competency and
    overall, and how often the 95 % interval covers the truth — for assessed teachers and for priors."""
    assessed = portraits.set_index("teacher_id")["assessed"].astype(bool)
    m = competencies.merge(latent, on=["teacher_id", "competency"], how="inner")
    m = m.assign(assessed=m["teacher_id"].map(assessed).fillna(False).to_numpy(dtype=bool))
    inside = (m["estimate"] - m["score_0_100"]).abs() <= Z95 * m["std_error"]
    m = m.assign(inside=inside.to_numpy())

    def part(d: pd.DataFrame) -> dict[str, Any]:
        per = {
            str(code): _corr(g["estimate"].to_numpy(), g["score_0_100"].to_numpy())
            for code, g in d.groupby("competency", sort=True)
        }
        finite = [v for v in per.values() if np.isfinite(v)]
        return {
            "teachers": int(d["teacher_id"].nunique()),
            "cells": int(len(d)),
            "corr_overall": _corr(d["estimate"].to_numpy(), d["score_0_100"].to_numpy()),
            "corr_mean_per_competency": float(np.mean(finite)) if finite else math.nan,
            "corr_per_competency": per,
            "coverage_95": float(d["inside"].mean()) if len(d) else math.nan,
            "mae": float((d["estimate"] - d["score_0_100"]).abs().mean()) if len(d) else math.nan,
        }

    return {
        "assessed": part(m[m["assessed"]]),
        "prior_teachers": part(m[~m["assessed"]]),
        "prior_cells": part(m[m["is_prior"].astype(bool)]),
        "all": part(m),
    }


def tagging(bundle_courses: pd.DataFrame, cat: Catalogue, truth_courses: pd.DataFrame) -> dict[str, Any]:
    """Precision / recall of the competencies inferred for untagged courses against their true codes; the top
    code is the one the catalogue weighs most."""
    truth = truth_courses.set_index(truth_courses["course_id"].astype(str))["competencies"]
    inferred = bundle_courses[bundle_courses["competencies_inferred"].astype(bool)]
    inferred = inferred[inferred["course_id"].astype(str).isin(truth.index)]
    if not len(inferred):
        return {"inferred_courses": 0}
    pos = pd.Series(np.arange(cat.n_courses), index=cat.course_ids)
    rows = inferred["course_id"].astype(str).map(pos).to_numpy(dtype=np.int64)
    top = cat.comp_codes[np.argmax(cat.course_comp[rows], axis=1)]
    true_sets = [set(map(str, truth[c])) for c in inferred["course_id"].astype(str)]
    main = [str(truth[c][0]) if len(truth[c]) else "" for c in inferred["course_id"].astype(str)]
    pred_sets = [set(map(str, p)) for p in inferred["competencies_used"]]
    hits = sum(len(p & t) for p, t in zip(pred_sets, true_sets, strict=True))
    return {
        "inferred_courses": int(len(inferred)),
        "precision": hits / max(sum(len(p) for p in pred_sets), 1),
        "recall": hits / max(sum(len(t) for t in true_sets), 1),
        "top_code_precision": float(np.mean([c in t for c, t in zip(top, true_sets, strict=True)])),
        "top_code_is_main": float(np.mean([c == m for c, m in zip(top, main, strict=True)])),
        "mean_codes_inferred": float(np.mean([len(p) for p in pred_sets])),
        "mean_codes_true": float(np.mean([len(t) for t in true_sets])),
    }


def check_truth_matches(truth: Truth, data: WorkspaceData) -> None:
    """Refuse a truth folder written for another province: it must describe every course and teacher of the
    workspace, and the courses' stages and subjects must agree (ids alone repeat across generated provinces)."""
    truth_courses = truth.courses.set_index(truth.courses["course_id"].astype(str))
    courses = data.courses.set_index(data.courses["course_id"].astype(str))
    unknown_courses = courses.index.difference(truth_courses.index)
    unknown_teachers = pd.Index(data.portraits["teacher_id"].astype(str)).difference(
        pd.Index(truth.latent["teacher_id"].astype(str).unique())
    )
    agree = 0.0
    if len(unknown_courses) == 0 and len(courses):
        t = truth_courses.reindex(courses.index)

        def same(a: pd.Series, b: pd.Series) -> np.ndarray:
            return np.array([sorted(map(str, x)) == sorted(map(str, y)) for x, y in zip(a, b, strict=True)])

        agree = float(
            np.mean(same(courses["stages"], t["stages"]) & same(courses["subjects"], t["subjects"]))
        )
    if len(unknown_courses) or len(unknown_teachers) or agree < TRUTH_AGREEMENT:
        raise ValueError(
            f"the truth folder does not describe this workspace ({len(unknown_courses)} courses and "
            f"{len(unknown_teachers)} teachers unknown to it, {agree:.0%} of courses agree on stages and "
            "subjects): pass the _truth folder of the province the workspace was ingested from"
        )


# ---------------------------------------------------------------------------------------------------------
# the whole evaluation


def _summary(ndcg: pd.Series) -> dict[str, float]:
    v = ndcg.to_numpy(dtype=np.float64)
    return {
        "mean": float(v.mean()) if len(v) else math.nan,
        "se": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan,
        "teachers": int(len(v)),
    }


def _by_group(scores: pd.DataFrame, group: pd.Series) -> dict[str, dict[str, float]]:
    g = group.reindex(scores.index).fillna("unknown").astype(str)
    out: dict[str, dict[str, float]] = {}
    for name, part in scores.groupby(g.to_numpy(), sort=True):
        if len(part) >= MIN_GROUP:
            out[str(name)] = {m: float(part[m].mean()) for m in scores.columns} | {
                "teachers": float(len(part))
            }
    return out


@dataclass(frozen=True)
class Runs:
    """What one pass over the evaluated teachers produced."""

    ranked: dict[str, list[pd.DataFrame]]  # method -> top-k frames (teacher_id, course_id, rank) per block
    menus: list[pd.DataFrame]  # planned menus per block (teachers of the menu sample)
    statuses: list[pd.DataFrame]  # menu status and broken rules per teacher of the menu sample


def run_blocks(
    art: Artifacts, data: WorkspaceData, teachers: np.ndarray, k: int, seed: int, with_baselines: bool
) -> Runs:
    """TDR's top-k as `tdr score` ranks it, the baselines' top-k over the same eligible courses, and the menus
    of a seeded sample of the teachers, block by block."""
    menu_sample = set(pick_teachers(teachers, MENU_TEACHERS, seed))
    rng = np.random.default_rng(seed)
    collab = fit_collaborative(data.records, art.catalogue, art.asof)
    cat = art.catalogue
    runs = Runs({m: [] for m in METHODS}, [], [])
    for block in blocks(data, teachers):
        result = rank_block(block, art, top_k=k)
        runs.ranked["tdr"].append(result.recs[["teacher_id", "course_id", "rank"]])
        planned = block.rows[block.rows["teacher_id"].isin(menu_sample)].reset_index(drop=True)
        if len(planned):
            pool = result.pool[result.pool["teacher_id"].isin(menu_sample)]
            menus, status = menu_compliance(pool, planned, data, art)
            runs.menus.append(menus)
            runs.statuses.append(status)
        if not with_baselines:
            continue
        tb, ctx = teacher_inputs(
            block.rows, block.competencies, block.records, cat, art.signals.stats, art.attrs.topics, art.asof
        )
        eligible = eligibility_matrix(tb, cat)
        for name, scores in baseline_scores(tb, ctx, art, collab, rng).items():
            runs.ranked[name].append(top_k_frame(scores, eligible, tb.teacher_ids, cat.course_ids, k))
    return runs


def evaluate(
    ws: Workspace,
    truth_dir: Path | None = None,
    k: int = 10,
    seed: int = 0,
    max_teachers: int | None = MAX_TEACHERS,
) -> dict[str, Any]:
    """Every offline figure of the workspace's current bundle, as one JSON-able dict.

    Without a truth folder: menu compliance, what recommendations must never be, and the ranker's own
    validation metrics. With one (`tdr generate`'s DIR or DIR/_truth): NDCG@k of TDR's top-k against the true
    utilities beside the baselines, by teacher group; portrait recovery; tagging precision / recall."""
    ws, bundle = paired(ws)
    art = load(bundle)
    data = read_workspace(ws)
    truth = load_truth(truth_dir) if truth_dir is not None else None
    if truth is not None:
        check_truth_matches(truth, data)
        covered = np.intersect1d(
            truth.utility["teacher_id"].astype(str).unique(), data.portraits["teacher_id"]
        )
    else:
        covered = data.portraits["teacher_id"].astype(str).to_numpy()
    teachers = pick_teachers(covered, max_teachers, seed)
    if not len(teachers):
        raise ValueError(
            f"no teacher of workspace {ws.root} to evaluate (no portraits, or none the truth covers)"
        )
    runs = run_blocks(art, data, teachers, k, seed, with_baselines=truth is not None)
    recs = pd.concat(runs.ranked["tdr"], ignore_index=True)
    menus = pd.concat(runs.menus, ignore_index=True)
    status_all = pd.concat(runs.statuses, ignore_index=True)
    report: dict[str, Any] = {
        "bundle": art.version,
        "k": k,
        "seed": seed,
        "teachers_evaluated": int(len(teachers)),
        "teachers_in_workspace": int(len(data.portraits)),
        "ranker": {
            "validation": dict(art.info.get("metrics", {}).get("ranker", {})),
            "feature_importance": importance(art),
        },
        "bundle_metrics": art.info.get("metrics", {}),
        "recommendations": pair_violations(recs, data),
        "menus": menu_summary(status_all)
        | {"composition": menu_composition(menus, art.courses), "pairs": pair_violations(menus, data)},
    }
    if truth is None:
        return report
    util = truth.utility.assign(teacher_id=truth.utility["teacher_id"].astype(str))
    util = util[util["teacher_id"].isin(set(teachers))]
    per_method = pd.DataFrame(
        {m: ndcg_at_k(pd.concat(runs.ranked[m], ignore_index=True), util, k) for m in METHODS}
    ).fillna(0.0)
    summaries = {m: _summary(per_method[m]) for m in METHODS}
    # the plain rule is judged on its own (TDR must reach it); the best baseline is the best of the others
    best = max((m for m in BASELINES if m != "rule"), key=lambda m: summaries[m]["mean"])
    floor = max(("popularity", "random"), key=lambda m: summaries[m]["mean"])
    rows = data.portraits.set_index("teacher_id")
    tdr_mean = summaries["tdr"]["mean"]
    report["ranking"] = {
        "metric": f"ndcg@{k}",
        "teachers": int(len(per_method)),
        "methods": summaries,
        "best_baseline": best,
        "ratio_to_best_baseline": tdr_mean / summaries[best]["mean"],
        "ratio_to_popularity_or_random": tdr_mean / summaries[floor]["mean"],
        "ratio_to_rule": tdr_mean / summaries["rule"]["mean"],
        "beats_every_baseline": bool(all(tdr_mean > summaries[m]["mean"] for m in BASELINES)),
        "by_school_type": _by_group(per_method, rows["school_type"]),
        "by_career_stage": _by_group(per_method, rows["career_stage"]),
        "by_assessed": _by_group(per_method, rows["assessed"].map({True: "assessed", False: "prior"})),
    }
    report["truth"] = {key: truth.meta.get(key) for key in ("seed", "n_teachers", "as_of")}
    report["portraits"] = recovery(
        data.competencies,
        data.portraits,
        truth.latent.assign(teacher_id=truth.latent["teacher_id"].astype(str)),
    )
    report["tagging"] = tagging(art.courses, art.catalogue, truth.courses)
    if truth.course_effects is not None:
        # 训后成效 (#17): how the measured effects of courses and projects recover the true ones
        from recommender.effects import growth_of, truth_recovery

        report["effects"] = truth_recovery(growth_of(ws), truth.course_effects, truth.project_effects)
    return report


def importance(art: Artifacts) -> dict[str, float]:
    """The ranker's share of split gain per feature, largest first."""
    gain = art.ranker.feature_importance()
    total = float(gain.sum())
    return {str(k): float(v) / total if total > 0 else 0.0 for k, v in gain.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_report(result: dict[str, Any], path: Path) -> Path:
    """Write an evaluation result as UTF-8 JSON, atomically (NaN written as null)."""
    text = json.dumps(_jsonable(result), ensure_ascii=False, indent=2, sort_keys=False)
    return write_text_atomic(Path(path), text + "\n")
