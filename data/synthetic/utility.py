"""What a course is worth to a teacher: the true benefit in each world, the true utility built from it, and the
utility teachers believe in when they choose (utility_core)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from data.reference import load_taxonomy
from data.synthetic.common import (
    APPEAL_SLOPE,
    DEFAULT_WORLD,
    LEVEL_SD,
    MAX_CODES,
    PRACTICAL_BONUS,
    ROLES,
    SCHOOL_TYPES,
    STAGE_BONUS,
    STAGES,
    SUBJECT_BONUS,
    TARGET_THETA,
    WORLD_UNIT,
    WORLDS,
    as_list,
    index_of,
)


def code_family(codes: Sequence[str]) -> np.ndarray:
    """Family of each code: the letters before its number (A, B, C for the 2.0 micro-abilities, ETH, …)."""
    return np.array([c.rstrip("0123456789") for c in codes])


def relevance(
    stage: np.ndarray, school_type: np.ndarray, years: np.ndarray, roles: np.ndarray, codes: Sequence[str]
) -> np.ndarray:
    """How much each competency matters to each teacher's job (teachers × codes, in (0, 1]).

    stage and school_type are indices into STAGES / SCHOOL_TYPES, roles a teachers × 5 bool matrix (ROLES
    order).
    Leadership matters to principals and party secretaries, class management to head teachers, mentoring to
    experienced teachers and trainers, early-years care to kindergarten staff, smart-classroom skills where
    such classrooms exist.
    """
    fam = code_family(codes)
    codes_arr = np.asarray(codes)
    n = len(stage)
    rel = np.ones((n, len(codes)), dtype=np.float32)
    head, principal, secretary, trainer, researcher = (roles[:, j] for j in range(len(ROLES)))
    leader = principal | secretary
    lead_cols = fam == "LEAD"
    rel[:, lead_cols] = np.where(leader, 1.0, 0.15)[:, None]
    lead5 = codes_arr == "LEAD5"
    rel[:, lead5] = np.where(secretary, 1.0, np.where(principal, 0.6, 0.1))[:, None]
    rel[:, fam == "CLS"] = np.where(head, 1.0, 0.55)[:, None]
    cls4 = codes_arr == "CLS4"
    rel[:, cls4] *= np.where((stage == 1) | (stage == 2), 1.0, 0.4)[:, None]
    res4 = codes_arr == "RES4"
    rel[:, res4] = np.where(trainer | researcher | (years >= 12), 1.0, 0.3)[:, None]
    knw4 = codes_arr == "KNW4"
    rel[:, knw4] = np.select([stage == 0, stage == 1], [1.0, 0.35], 0.05)[:, None]
    knw1 = codes_arr == "KNW1"
    rel[:, knw1] = np.where(stage == 0, 0.3, 1.0)[:, None]
    smart = fam == "C"
    rel[:, smart] = np.array([0.6, 0.8, 1.0], dtype=np.float32)[school_type][:, None]
    return rel


def utility_core(
    theta_sel: np.ndarray,
    rel_sel: np.ndarray,
    weights: np.ndarray,
    level: np.ndarray,
    multiplier: np.ndarray,
) -> np.ndarray:
    """Utility of courses for teachers from the course's codes (last axis: up to MAX_CODES codes).

    u = multiplier × Σ_j w_j · relevance_j · gap_j · fit_j with gap_j = max(0, TARGET_THETA − θ_j) and
    fit_j = exp(−(level − (2 + θ_j))² / (2·LEVEL_SD²)): a course helps where the teacher is short of the
    target, on competencies that matter to the job, at a level matching where the teacher stands. Padded codes
    carry weight 0. `multiplier` holds the course's quality and context bonuses (broadcast over leading axes).
    """
    gap = np.maximum(TARGET_THETA - theta_sel, 0.0)
    fit = np.exp(-((level[..., None] - (2.0 + theta_sel)) ** 2) / (2.0 * LEVEL_SD**2))
    return np.asarray(multiplier * np.sum(weights * rel_sel * gap * fit, axis=-1))


def appeal(popularity: np.ndarray) -> np.ndarray:
    """How much peers like a course (mean about 1.4): exp(APPEAL_SLOPE · its latent popularity), the quantity
    that also tilts who enrols in it and how often it is shown."""
    return np.asarray(np.exp(APPEAL_SLOPE * np.asarray(popularity, dtype=np.float32)), dtype=np.float32)


def benefit(
    world: str, theta_sel: np.ndarray, level: np.ndarray, quality: np.ndarray, course_appeal: np.ndarray
) -> np.ndarray:
    """The true benefit of completing a course on each of its codes (last axis, up to MAX_CODES) for a teacher
    whose competencies on those codes are `theta_sel`; level, quality and course_appeal have the leading shape.

    need: gap · fit, with gap = max(0, TARGET_THETA − θ) and fit = exp(−(level − (2 + θ))² / (2·LEVEL_SD²)) —
    a course helps where the teacher is short of the target, at a level matching where the teacher stands;
    quality: quality² (the same for everyone); popularity: appeal (what peers like); mixed: gap · fit ·
    quality · √appeal. Each is scaled by WORLD_UNIT[world] so that the worlds' benefits have the same typical
    size. A completed course moves competency k by EFFECT_SCALE · bonus · weight_k · benefit_k (see effects).
    """
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}: one of {', '.join(WORLDS)}")
    lead = (..., None)
    if world == "quality":
        b = np.broadcast_to(np.asarray(quality, dtype=np.float32)[lead] ** 2, theta_sel.shape)
    elif world == "popularity":
        b = np.broadcast_to(np.asarray(course_appeal, dtype=np.float32)[lead], theta_sel.shape)
    else:
        gap = np.maximum(TARGET_THETA - theta_sel, 0.0)
        fit = np.exp(
            -((np.asarray(level, dtype=np.float32)[lead] - (2.0 + theta_sel)) ** 2) / (2.0 * LEVEL_SD**2)
        )
        b = gap * fit
        if world == "mixed":
            b = b * (np.asarray(quality, dtype=np.float32) * np.sqrt(course_appeal))[lead]
    return np.asarray(WORLD_UNIT[world] * b, dtype=np.float32)


def utility_of(
    benefits: np.ndarray, rel_sel: np.ndarray, weights: np.ndarray, bonus: np.ndarray
) -> np.ndarray:
    """A course's true utility for a teacher: bonus · Σ_j weight_j · relevance_j · benefit_j — its benefit on
    each code, weighed by how much that competency matters to the teacher's job (padded codes weigh 0)."""
    return np.asarray(bonus * np.sum(weights * rel_sel * benefits, axis=-1))


def true_utility(
    latent_block: pd.DataFrame,
    course_truth: pd.DataFrame,
    teachers_block: pd.DataFrame,
    records_block: pd.DataFrame,
    world: str = DEFAULT_WORLD,
) -> np.ndarray:
    """The true value of each course for each teacher now (len(teachers_block) × len(course_truth)).

    latent_block: _truth/latent.parquet rows (teacher_id, competency, theta) for at least these teachers.
    course_truth: _truth/courses.parquet (competencies, weights, quality, level, stages, subjects, practical,
    active, prerequisites). teachers_block: teacher rows (teacher_id, stage, school_type, years_teaching,
    roles — contract file or normalised table). records_block: training records of these teachers.

    u(t, c) = (1 + bonuses_c) · Σ_j w_cj · r_t,k_j · benefit_world(θ_t,k_j, c) with bonuses for
    subject-specific, stage-specific and practical courses and the world's benefit (see benefit, relevance;
    `world` is the province's, meta.json "world"). It is 0 for a course that is inactive, closed to the
    teacher's stage or subject, already completed, or whose prerequisites the teacher has not completed.
    Completions, scores and satisfaction in the synthetic records follow this quantity; enrolments follow what
    teachers believe helps (their need as their first diagnosis showed it, and course quality), popularity,
    format taste and career stage, so that choices and benefit part ways.
    """
    tids = teachers_block["teacher_id"].astype(str).to_numpy()
    wide = latent_block.pivot(index="teacher_id", columns="competency", values="theta")
    codes = [c for c in load_taxonomy()["code"] if c in wide.columns]
    theta = wide.reindex(index=tids, columns=codes).to_numpy(dtype=np.float32)
    theta = np.nan_to_num(theta, nan=0.0)
    theta_pad = np.concatenate([theta, np.zeros((len(tids), 1), np.float32)], axis=1)
    stage = index_of(teachers_block["stage"], STAGES)
    stype = index_of(teachers_block["school_type"].fillna("town"), SCHOOL_TYPES)
    years = pd.to_numeric(teachers_block["years_teaching"], errors="coerce").fillna(0).to_numpy()
    role_lists = [set(as_list(v)) for v in teachers_block.get("roles", pd.Series([None] * len(tids)))]
    roles = np.array([[r in rl for r in ROLES] for rl in role_lists], dtype=bool).reshape(
        len(tids), len(ROLES)
    )
    rel = relevance(stage, stype, years, roles, codes)
    rel_pad = np.concatenate([rel, np.zeros((len(tids), 1), np.float32)], axis=1)

    code_pos = {c: i for i, c in enumerate(codes)}
    n_courses = len(course_truth)
    comp_idx = np.full((n_courses, MAX_CODES), len(codes), dtype=np.int64)
    comp_w = np.zeros((n_courses, MAX_CODES), dtype=np.float32)
    for i, (comps, ws) in enumerate(zip(course_truth["competencies"], course_truth["weights"], strict=True)):
        for j, (c, w) in enumerate(zip(as_list(comps), ws, strict=False)):
            if c in code_pos and j < MAX_CODES:
                comp_idx[i, j], comp_w[i, j] = code_pos[c], float(w)
    stages_l = [as_list(v) for v in course_truth["stages"]]
    subjects_l = [as_list(v) for v in course_truth["subjects"]]
    bonus = (
        (1.0 + SUBJECT_BONUS * np.array([len(s) > 0 for s in subjects_l]))
        * (1.0 + STAGE_BONUS * np.array([len(s) > 0 for s in stages_l]))
        * (1.0 + PRACTICAL_BONUS * course_truth["practical"].fillna(False).to_numpy(dtype=bool))
    ).astype(np.float32)
    level = course_truth["level"].to_numpy(dtype=np.float32)

    quality = course_truth["quality"].to_numpy(dtype=np.float32)
    popularity = course_truth["popularity"].to_numpy(dtype=np.float32)
    b = benefit(world, theta_pad[:, comp_idx], level[None, :], quality[None, :], appeal(popularity)[None, :])
    u = utility_of(b, rel_pad[:, comp_idx], comp_w[None], bonus[None, :]).astype(np.float64)

    t_stage = teachers_block["stage"].astype(str).to_numpy()
    t_subject = teachers_block["subject"].astype(str).to_numpy()
    stage_ok = np.array([[not s or st in s for s in stages_l] for st in np.unique(t_stage)], dtype=bool)
    subj_ok = np.array([[not s or sb in s for s in subjects_l] for sb in np.unique(t_subject)], dtype=bool)
    eligible = (
        stage_ok[np.searchsorted(np.unique(t_stage), t_stage)]
        & subj_ok[np.searchsorted(np.unique(t_subject), t_subject)]
        & course_truth["active"].to_numpy(dtype=bool)[None, :]
    )
    cpos = pd.Series(np.arange(n_courses), index=course_truth["course_id"].astype(str))
    tpos = pd.Series(np.arange(len(tids)), index=tids)
    done = np.zeros((len(tids), n_courses + 1), dtype=bool)  # last column: "no prerequisite"
    done[:, n_courses] = True
    rec = records_block[records_block["status"].astype(str) == "completed"]
    rec = rec[rec["course_id"].notna() & rec["teacher_id"].astype(str).isin(tpos.index)]
    rec = rec[rec["course_id"].astype(str).isin(cpos.index)]
    done[tpos[rec["teacher_id"].astype(str)].to_numpy(), cpos[rec["course_id"].astype(str)].to_numpy()] = True
    prereq_ok = np.ones((len(tids), n_courses), dtype=bool)
    for i, pre in enumerate(course_truth["prerequisites"]):
        for p in as_list(pre):
            prereq_ok[:, i] &= done[:, cpos[p]] if p in cpos.index else False
    u[~(eligible & prereq_ok) | done[:, :n_courses]] = 0.0
    return u
