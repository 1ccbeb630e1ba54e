"""Training (`tdr train`): portraits, course encoding and tagging, the faiss index, and the ranker, sealed into
a new versioned bundle that the scorer and the service pick up.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data.events import read_events
from data.policy import Policy
from data.reference import load_policy, load_taxonomy
from data.schema import STAGE, TRAINING_RECORDS
from data.workspace import Workspace, portraits_update
from features.diagnostics import Calibration
from features.growth import occasion_measurements
from features.history import FORMATS
from features.pairs import CourseAttrs
from features.portrait import Tables, as_of
from models.bundle import BundleWriter, current_bundle_dir, data_hash
from models.encoder import Encoder
from models.index import VectorIndex
from models.lexical import BM25
from models.tagger import CompetencyTagger, top_tags
from recommender import artifacts
from recommender.config import Settings
from recommender.digests import load_state
from recommender.feedback import dismissals, rows_asof, with_events
from recommender.outcomes import measurements
from recommender.portraits import (
    ExecutorFactory,
    build_workspace_portraits,
    latest_dates,
    read_portraits,
    rows_of,
)
from recommender.ranking import TRAIN_TEACHERS, competencies_asof, fit_ranker, fit_signals, ranking_data
from recommender.retrieval import STAGES, Catalogue
from recommender.sampling import stratified_sample

log = logging.getLogger(__name__)

TABLES = ("teachers", "courses", "training_records", "items", "responses", "competency_scores")


def load_tables(ws: Workspace) -> Tables:
    """The tables training reads whole; training records, responses and scores are left empty (portrait
    building streams them, `recommender.portraits`; the ranker reads a sample's, `recommender.sampling`)."""

    def read(name: str) -> pd.DataFrame:
        return ws.read_table(name) if ws.has_table(name) else pd.DataFrame()

    taxonomy = read("taxonomy")
    return Tables(
        teachers=ws.read_table("teachers"),
        courses=ws.read_table("courses"),
        records=pd.DataFrame(),
        items=read("items"),
        responses=pd.DataFrame(),
        scores=pd.DataFrame(),
        taxonomy=taxonomy if len(taxonomy) else load_taxonomy(),
    )


def course_texts(courses: pd.DataFrame) -> list[str]:
    """The text that stands for a course wherever one is embedded, tagged or matched (training, project
    content, benchmarks): its title and description."""
    return (courses["title"].fillna("") + "。" + courses["description"].fillna("")).tolist()


def competency_texts(taxonomy: pd.DataFrame) -> list[str]:
    """The text that stands for a competency: its name and description."""
    return (taxonomy["name"].fillna("") + "：" + taxonomy["description"].fillna("")).tolist()


def _multi_hot(lists: pd.Series, vocab: list[str]) -> np.ndarray:
    pos = {v: i for i, v in enumerate(vocab)}
    m = np.zeros((len(lists), len(vocab)), dtype=np.float64)
    for r, values in enumerate(lists):
        for v in values:
            if v in pos:
                m[r, pos[v]] = 1.0
    return m


@dataclass(frozen=True)
class CourseSide:
    catalogue: Catalogue
    attrs: CourseAttrs
    bm25: BM25
    courses: pd.DataFrame
    tag_metrics: dict[str, float]


def build_course_side(
    courses: pd.DataFrame,
    taxonomy: pd.DataFrame,
    encoder: Encoder,
    policy: Policy,
    teacher_subjects: list[str],
) -> CourseSide:
    """Encode, tag and index the catalogue: the course half of retrieval and of the pair features."""
    courses = courses.sort_values("course_id", kind="stable").reset_index(drop=True)
    codes = taxonomy["code"].astype(str).tolist()
    texts = course_texts(courses)
    vectors = encoder.encode_passages(texts)
    comp_vectors = encoder.encode_queries(competency_texts(taxonomy))
    bm25 = BM25().fit(texts)
    comp_lex = bm25.score(competency_texts(taxonomy)).toarray().astype(np.float64)
    comp_lex /= comp_lex.max(axis=1, keepdims=True) + 1e-9
    labels = _multi_hot(courses["competencies"], codes)
    tagged = labels.sum(axis=1) > 0
    proba = np.zeros_like(labels)
    tag_metrics: dict[str, float] = {"tagged_share": float(tagged.mean())}
    if tagged.sum() >= 10 and (~tagged).any():
        tagger = CompetencyTagger().fit(vectors[tagged], comp_vectors, comp_lex.T[tagged], labels[tagged])
        proba[~tagged] = tagger.predict_proba(vectors[~tagged], comp_lex.T[~tagged])
    elif (~tagged).any():
        # no tagged examples to learn from: rank competencies by similarity alone
        proba[~tagged] = np.maximum(vectors[~tagged] @ comp_vectors.T, 0.0)
    tags, confidence = top_tags(proba)
    inferred = np.zeros_like(labels)
    for c in np.flatnonzero(~tagged):
        inferred[c, tags[c]] = proba[c, tags[c]]
    weights = np.where(tagged[:, None], labels, inferred)
    course_comp = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    code_arr = np.asarray(codes)
    courses = courses.assign(
        competencies_used=pd.Series(
            [list(code_arr[np.flatnonzero(w)]) for w in weights], index=courses.index
        ),
        competencies_inferred=~tagged,
        tag_confidence=np.where(tagged, 1.0, confidence),
    )
    context = {f"stage:{s}": f"{STAGE.label(s)}教师的教学与专业发展" for s in STAGES}
    subjects = sorted(set(courses["subjects"].explode().dropna().astype(str)) | set(teacher_subjects))
    context.update({f"subject:{s}": f"{s}学科教学能力提升" for s in subjects})
    ctx_vecs = encoder.encode_queries(list(context.values()))
    stages = courses["stages"].apply(lambda v: set(v))
    stage_ok = np.array([[not st or s in st for s in STAGES] for st in stages], dtype=bool)
    subj_pos = {s: i for i, s in enumerate(subjects)}
    rows: list[int] = []
    cols: list[int] = []
    for r, subj in enumerate(courses["subjects"]):
        for s in subj:
            rows.append(r)
            cols.append(subj_pos[str(s)])
    subject_ok = sp.csr_matrix(
        (np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(courses), len(subjects))
    )
    cpos = {c: i for i, c in enumerate(courses["course_id"])}
    pr: list[int] = []
    pc: list[int] = []
    for r, pre in enumerate(courses["prerequisites"]):
        for p in pre:
            if p in cpos:
                pr.append(r)
                pc.append(cpos[p])
    prereq = sp.csr_matrix((np.ones(len(pr), dtype=np.float32), (pr, pc)), shape=(len(courses), len(courses)))
    cat = Catalogue(
        course_ids=courses["course_id"].astype(str).to_numpy().astype(str),
        vectors=vectors,
        comp_codes=code_arr.astype(str),
        comp_vectors=comp_vectors,
        comp_lexical=comp_lex.astype(np.float32),
        course_comp=course_comp,
        stage_ok=stage_ok,
        subject_vocab=tuple(subjects),
        subject_ok=subject_ok,
        all_subjects=courses["subjects"].apply(len).to_numpy() == 0,
        active=courses["active"].fillna(True).to_numpy(dtype=bool),
        prereq=prereq,
        context_vectors={k: v for k, v in zip(context, ctx_vecs, strict=True)},
    )
    topics = tuple(t.topic for t in policy.mandatory_topics)
    topic_pos = {t: i for i, t in enumerate(topics)}
    fmt_pos = {f: i for i, f in enumerate(FORMATS)}
    attrs = CourseAttrs(
        hours=courses["hours"].to_numpy(dtype=np.float64),
        cost=courses["cost_yuan"].fillna(0.0).to_numpy(dtype=np.float64),
        level=pd.to_numeric(courses["level"], errors="coerce").to_numpy(dtype=np.float64),
        practical=courses["practical"].fillna(False).to_numpy(dtype=np.float64),
        format_idx=courses["format"].map(fmt_pos).fillna(-1).to_numpy(dtype=np.int64),
        mandatory_idx=courses["mandatory_topic"].map(topic_pos).fillna(-1).to_numpy(dtype=np.int64),
        topics=topics,
        tagged=tagged.astype(np.float64),
    )
    return CourseSide(cat, attrs, bm25, courses, tag_metrics)


@dataclass(frozen=True)
class Assessments:
    """A sample's assessments as training reads them: `values`, the dated values the outcome labels' before
    and after are taken from (`recommender.outcomes.measurements`), and `history`, the portrait as of each of
    their assessment occasions (`features.growth.occasion_measurements`, cumulative), measured with the
    portraits' calibration, that the features of a past example are read from (`ranking.competencies_asof`)."""

    values: pd.DataFrame
    history: pd.DataFrame


def sample_assessments(ws: Workspace, teacher_ids: np.ndarray, cal: Calibration) -> Assessments:
    """The `Assessments` of these teachers (their responses and scores read once), measured with `cal`."""
    wanted = [("teacher_id", "in", [str(t) for t in teacher_ids])]

    def read(name: str) -> pd.DataFrame:
        return pd.read_parquet(ws.table_path(name), filters=wanted) if ws.has_table(name) else pd.DataFrame()

    items = ws.read_table("items") if ws.has_table("items") else pd.DataFrame()
    responses, scores = read("responses"), read("competency_scores")
    return Assessments(
        values=measurements(scores, responses, items),
        history=occasion_measurements(cal, responses, scores, cumulative=True),
    )


def previous_dismissals(ws: Workspace) -> pd.DataFrame | None:
    """The standing dismissals of the current bundle, if there is one (their first-seen course hashes carry over)."""
    try:
        path = current_bundle_dir(ws.bundles_dir) / "dismissed.parquet"
    except FileNotFoundError:
        return None
    return pd.read_parquet(path) if path.exists() else None


def train(
    ws: Workspace,
    settings: Settings,
    step: Callable[[str], None] = log.info,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    executor: ExecutorFactory | None = None,
) -> Path:
    """Build portraits and every model from the workspace's tables; returns the new bundle's folder.
    `progress(done, total)` follows the course texts going through the encoder (none when all are cached);
    `executor` makes the portrait workers (default local processes; `ray_engine.ray_executors`: Ray tasks)."""
    inputs = [part for t in TABLES for part in ws.table_files(t)]
    writer = BundleWriter(ws.bundles_dir, data_hash(inputs))
    # the writer's lock means no other train runs here: portrait scratch folders are a killed train's
    for stale in ws.root.glob(".portraits-*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        # the new portraits are written into a set of their own, which the bundle holds (recommender.artifacts)
        # and which becomes WS/portraits once the bundle is in force: one switch for models and portraits
        with portraits_update(ws) as folder:
            tables = load_tables(ws)
            # enrolled / completed events count as records from now on (recommender.feedback): in the portraits
            # (streamed with them) and in the sample the ranker learns from
            events = read_events(ws)
            policy = load_policy(settings.policy)
            asof = as_of(latest_dates(ws))
            if len(events) and events["ts"].notna().any():
                asof = max(asof, pd.Timestamp(events["ts"].max()).normalize() + pd.Timedelta(days=1))
            step("课程编码与标注 course encoding and tagging")
            encoder = Encoder(
                settings.encoder_model,
                cache_dir=settings.model_cache,
                backend=settings.encoder_backend,
                progress=progress,
            )
            subjects = sorted(tables.teachers["subject"].dropna().astype(str).unique())
            side = build_course_side(tables.courses, tables.taxonomy, encoder, policy, subjects)
            index = VectorIndex.build(side.catalogue.vectors, side.catalogue.course_ids)
            step("画像 portraits")
            # history counts hours by competency domain: inferred tags count like given ones
            tables = replace(
                tables, courses=side.courses.assign(competencies=side.courses["competencies_used"])
            )
            build_workspace_portraits(
                ws,
                tables,
                policy,
                asof,
                settings.target_level,
                seed,
                executor=executor,
                events=events,
                into=folder,
            )
            step("排序模型 ranker")
            # signals, ranking data and the ranker learn from a stratified sample's records (recommender.sampling)
            in_sample = stratified_sample(tables.teachers, settings.train_sample, seed)
            tables = replace(
                tables,
                teachers=tables.teachers[tables.teachers["teacher_id"].astype(str).isin(in_sample)],
                records=with_events(
                    rows_of(ws, TRAINING_RECORDS, in_sample),
                    events[events["teacher_id"].isin(set(map(str, in_sample)))],
                    tables.courses,
                ),
            )
            rng = np.random.default_rng(seed)
            ids = tables.teachers["teacher_id"].astype(str).to_numpy()
            sample = np.sort(rng.choice(ids, size=min(TRAIN_TEACHERS, len(ids)), replace=False))
            # the portraits just built (the set the bundle will hold), with their calibration and norms
            built_ws = replace(ws, portraits_from=folder)
            sampled = read_portraits(built_ws, sample).teachers
            state = load_state(built_ws)
            if state is None:
                raise FileNotFoundError(f"no portrait build state in {folder}")
            built = state[0]
            assessed = sample_assessments(ws, sample, built.calibration)
            values = assessed.values
            codes = tables.taxonomy["code"].astype(str).tolist()
            periods = []
            for years in (2, 1):
                # every feature of a past example as it stood at the cut: history from the records before it,
                # the competencies from the assessments before it (never the portrait measured after the training)
                cut = asof - pd.DateOffset(years=years)
                rows = rows_asof(sampled, tables.records, tables.courses, tables.taxonomy, policy, cut)
                comp = competencies_asof(
                    assessed.history, rows, built.norms, codes, cut, settings.target_level
                )
                rows = rows.assign(
                    assessed=rows["teacher_id"].isin(comp.loc[~comp["is_prior"], "teacher_id"])
                )
                periods.append(
                    ranking_data(
                        rows,
                        comp,
                        tables.records,
                        tables.teachers,
                        side.catalogue,
                        side.attrs,
                        cut,
                        values,
                        seed,
                    )
                )
            ranker, blend, blend_metrics = fit_ranker(periods, len(sampled), seed)
            dismissed = dismissals(events, side.courses, previous_dismissals(ws))
            signals = fit_signals(tables.records, tables.teachers, side.catalogue, asof, values)
            artifacts.save(
                writer, side.catalogue, index, side.attrs, signals, ranker, side.bm25, side.courses, tables.taxonomy,
                settings.policy, asof, blend, dismissed,
            )  # fmt: skip
            writer.metrics.update(
                {
                    "ranker": ranker.metrics_,
                    "blend": blend_metrics,
                    "tagging": side.tag_metrics,
                    "feedback": {"events": int(len(events)), "dismissed": int(len(dismissed))},
                }
            )
            writer.info.update({"encoder": encoder.model_id, "features": ranker.features_, "seed": seed})
            writer.info["train_sample"] = {"teachers": len(in_sample), "records": len(tables.records)}
            artifacts.link_portraits(writer, folder)
            return writer.commit()
    except BaseException:
        writer.abort()
        raise
