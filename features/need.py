"""Need prior (需求先验): how much a course should help a teacher, from the portrait alone.

need(t, c) = Σ_k w_ck · relevance(t, k) · shortfall(t, k) · fit(level_c, estimate(t, k))

- w_ck: the course's weight on competency k (the catalogue's `course_comp`, rows summing to 1);
- shortfall: the expected distance below the target level, E[max(0, target − X)] with X ~ N(estimate, std_error²)
  — an uncertain estimate near the target still counts some need, a precise one above it none;
- fit: how well the course's level (1 入门 / 2 进阶 / 3 高级) suits where the teacher stands on k
  (a Gaussian in level units around `ideal_level_continuous`; an unknown level counts the mean fit);
- relevance: how much k matters to the teacher's role, stage and career stage (`relevance`), so a new class
  teacher's top priority is not 信息化领导力 while a principal's may be.

The ranker reads it as a feature and `recommender.ranking.blend` falls back to it where little outcome evidence
stands behind a teacher or course. `plain_rule` is the same sum with the point gap, no relevance and no
uncertainty: the simple baseline a reviewer would compute from the portraits. Everything here is a pure function
of arrays; `need_matrix` scores whole (teachers × courses) blocks with three matrix products.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import norm

# the portrait's default target level (recommender.config.Settings.target_level)
TARGET = 70.0
# estimate at which each course level is the right challenge: 35 → 入门, 55 → 进阶, 75 → 高级 (the cut points of
# features.pairs.LEVEL_CUTS, 45 and 65, fall half-way)
LEVEL_ANCHOR, LEVEL_STEP = 35.0, 20.0
# spread of the level fit, in levels: one level off keeps ~60 % of the benefit, two levels ~14 %
FIT_SD = 1.0
LEVELS = (1.0, 2.0, 3.0)

# relevance of a competency family to a teacher (built-in taxonomy codes; other codes count 1):
# leadership is a head of school's work, class management a head teacher's, mentoring an experienced teacher's,
# early-years care a kindergarten teacher's; a novice's first years go to teaching itself
LEADER_ROLES = ("principal", "party_secretary")
MENTOR_ROLES = ("trainer", "researcher")
OTHERS_LEADERSHIP = 0.2
OTHERS_CLASS = 0.6
NOVICE_MENTORING = 0.3
EARLY_YEARS = {"kindergarten": 1.0, "primary": 0.5}
OTHER_STAGES_EARLY_YEARS = 0.1
NOVICE_OUTSIDE_TEACHING = 0.8
TEACHING_FAMILIES = ("ETH", "KNW", "DES", "EVA", "CLS")


def family(code: str) -> str:
    return code.rstrip("0123456789")


def relevance(
    codes: np.ndarray, stage: np.ndarray, career: np.ndarray, roles: list[frozenset[str]]
) -> np.ndarray:
    """(teachers × codes) weights in (0, 1]: how much each competency matters to each teacher's job.

    stage: the teachers' stage values; career: career stage values (novice/developing/backbone/expert);
    roles: each teacher's set of roles (head_teacher, principal, …)."""
    n = len(stage)
    fam = np.array([family(str(c)) for c in codes])
    rel = np.ones((n, len(codes)))
    leader = np.array([bool(r & set(LEADER_ROLES)) for r in roles], dtype=bool)
    head = np.array(["head_teacher" in r for r in roles], dtype=bool)
    mentor = np.array([bool(r & set(MENTOR_ROLES)) for r in roles], dtype=bool)
    novice = np.asarray(career) == "novice"
    experienced = np.isin(np.asarray(career), ("backbone", "expert")) | mentor
    rel[:, fam == "LEAD"] = np.where(leader, 1.0, OTHERS_LEADERSHIP)[:, None]
    rel[:, fam == "CLS"] = np.where(head, 1.0, OTHERS_CLASS)[:, None]
    rel[:, np.asarray(codes) == "RES4"] = np.where(experienced, 1.0, NOVICE_MENTORING)[:, None]
    early = np.array([EARLY_YEARS.get(str(s), OTHER_STAGES_EARLY_YEARS) for s in stage])
    rel[:, np.asarray(codes) == "KNW4"] = early[:, None]
    outside = ~np.isin(fam, TEACHING_FAMILIES)
    rel[np.ix_(novice, outside)] *= NOVICE_OUTSIDE_TEACHING
    return rel


def shortfall(estimate: np.ndarray, std_error: np.ndarray, target: float = TARGET) -> np.ndarray:
    """E[max(0, target − X)], X ~ N(estimate, std_error²): the expected gap under the portrait's uncertainty."""
    se = np.maximum(np.asarray(std_error, dtype=np.float64), 1e-6)
    z = (target - estimate) / se
    return np.asarray((target - estimate) * norm.cdf(z) + se * norm.pdf(z))


def ideal_level_continuous(estimate: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(1.0 + (estimate - LEVEL_ANCHOR) / LEVEL_STEP, 1.0, 3.0))


def level_fit(level: np.ndarray | float, estimate: np.ndarray) -> np.ndarray:
    return np.asarray(np.exp(-((level - ideal_level_continuous(estimate)) ** 2) / (2.0 * FIT_SD**2)))


def _by_level(per_level: list[np.ndarray], course_comp: np.ndarray, level: np.ndarray) -> np.ndarray:
    """(n × C): for each course, its weights times the teacher values of the course's level (the mean over
    levels when unknown)."""
    comp = sp.csr_matrix(course_comp)
    out = np.zeros((per_level[0].shape[0], comp.shape[0]))
    known = np.isfinite(level)
    for i, lv in enumerate(LEVELS):
        at = np.flatnonzero(known & (level == lv))
        if len(at):
            out[:, at] = np.asarray((comp[at] @ per_level[i].T).T)
    if (~known).any():
        at = np.flatnonzero(~known)
        mean = np.mean(per_level, axis=0)
        out[:, at] = np.asarray((comp[at] @ mean.T).T)
    return out


def fit_at(level: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Level fit of pairs (one level and one estimate each); an unknown level (NaN) counts the mean fit."""
    known = level_fit(np.nan_to_num(level, nan=2.0), estimate)
    mean = np.mean([level_fit(lv, estimate) for lv in LEVELS], axis=0)
    return np.where(np.isfinite(level), known, mean)


def need_matrix(
    base: np.ndarray, estimate: np.ndarray, course_comp: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """(teachers × courses) need prior from `base` = relevance × shortfall (teachers × competencies)."""
    return _by_level([base * level_fit(lv, estimate) for lv in LEVELS], course_comp, level)


def plain_rule(
    gaps: np.ndarray, estimate: np.ndarray, course_comp: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """(teachers × courses) Σ_k w_ck · gap · fit on the portrait's point estimates: no relevance, no uncertainty."""
    return need_matrix(gaps, estimate, course_comp, level)
