"""How competencies move: a time trend for everybody, and the true effect of each completed course or project.

θ_t(d) = θ_t(T0) + trend · (d − T0) / 365.25 + Σ effects of t's records completed on or before d, where T0 is the
first day of the training period (1 January of the first of the HISTORY_YEARS). A completed record moves each
competency k its course teaches by EFFECT_SCALE · bonus · weight_k · benefit_k · noise (see utility.benefit):
heterogeneous by the teacher's gap and level fit (need, mixed worlds), by the course's quality (quality, mixed)
and by what peers like (popularity, mixed), with a mean-one log-normal noise per record. The benefit is taken
at the teacher's competencies at the start of the year the course was taken. Dropped, no-show and unfinished
records move nothing. Provincial projects teach the codes that project_codes.csv gives their name, as a
course of their level with a drawn quality, PROJECT_EFFECT_FACTOR times a course's effect (days of training).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from data.synthetic.catalogue import Catalogue
from data.synthetic.common import CODE_WEIGHTS, HISTORY_YEARS, MAX_CODES, day_number
from data.synthetic.utility import code_family

# θ per year for everybody (experience, the province's push for digital teaching: IT competencies rise faster)
TREND_PER_YEAR = {"A": 0.06, "B": 0.06, "C": 0.06}
TREND_OTHER = 0.02
# θ moved per unit of benefit × code weight: a completed course moves each competency it teaches by about
# 4 display points on average (0.3 θ), a well-fitting one by 10 or more
EFFECT_SCALE = 0.3
EFFECT_NOISE_SD = 0.3
PROJECT_EFFECT_FACTOR = 1.5
PROJECT_QUALITY_SD = 0.3


def training_start(as_of: date) -> date:
    """T0: the first day of the HISTORY_YEARS of training records."""
    return date(as_of.year - HISTORY_YEARS + 1, 1, 1)


def trend(codes: Sequence[str]) -> np.ndarray:
    """θ gained per year by every teacher on each code."""
    return np.array([TREND_PER_YEAR.get(f, TREND_OTHER) for f in code_family(codes)], dtype=np.float32)


def realised_effects(
    benefits: np.ndarray, weights: np.ndarray, factor: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """θ moved on each code (m × MAX_CODES) by m completions of benefits `benefits` (utility.benefit); factor:
    each course's context bonus (or PROJECT_EFFECT_FACTOR for a project). Padded codes (weight 0) move nothing."""
    noise = rng.lognormal(-(EFFECT_NOISE_SD**2) / 2, EFFECT_NOISE_SD, benefits.shape).astype(np.float32)
    return np.asarray(EFFECT_SCALE * factor[:, None] * weights * benefits * noise, dtype=np.float32)


@dataclass(frozen=True)
class ProjectCourses:
    """What each row of the project table teaches, as a course: codes (P × MAX_CODES, padded with K), weights,
    level, quality."""

    comp_idx: np.ndarray
    comp_w: np.ndarray
    level: np.ndarray
    quality: np.ndarray


@lru_cache(maxsize=1)
def _keyword_codes() -> tuple[tuple[str, tuple[str, ...], int], ...]:
    with (Path(__file__).parent / "project_codes.csv").open(encoding="utf-8", newline="") as f:
        return tuple(
            (row["keyword"], tuple(row["competencies"].split(";")), int(row["level"]))
            for row in csv.DictReader(f)
        )


def project_courses(projects: pd.DataFrame, codes: Sequence[str], rng: np.random.Generator) -> ProjectCourses:
    """Each project's codes and level from the first row of project_codes.csv whose keyword its name matches
    (the last row, with no keyword, matches every name); its quality drawn log-normal around 1."""
    k = len(codes)
    pos = {c: i for i, c in enumerate(codes)}
    p = len(projects)
    comp_idx = np.full((p, MAX_CODES), k, dtype=np.int64)
    level = np.zeros(p, dtype=np.float32)
    for i, name in enumerate(projects["name"].astype(str)):
        found = [(c, lv) for kw, c, lv in _keyword_codes() if not kw or re.search(kw, name)][0]
        known = [pos[c] for c in found[0] if c in pos][:MAX_CODES]
        comp_idx[i, : len(known)] = known
        level[i] = found[1]
    weights = np.where(comp_idx < k, np.array(CODE_WEIGHTS, dtype=np.float32)[None, :], 0.0)
    quality = rng.lognormal(0.0, PROJECT_QUALITY_SD, p).astype(np.float32)
    return ProjectCourses(comp_idx, weights.astype(np.float32), level, quality)


@dataclass(frozen=True)
class Moves:
    """Every code of every completed record, flattened: the record (index into the course records followed by
    the project records), teacher (index), code (index < K), end day and θ moved (possibly 0)."""

    record: np.ndarray
    teacher: np.ndarray
    code: np.ndarray
    end: np.ndarray
    effect: np.ndarray


def completed_moves(
    rec: dict[str, np.ndarray],
    proj: dict[str, np.ndarray],
    cat: Catalogue,
    pc: ProjectCourses,
    proj_effect: np.ndarray,
    k: int,
) -> Moves:
    """The Moves of the course records `rec` (make_records, with their "effect") and the project records
    `proj` (project_records, with `proj_effect`)."""
    comp_idx = np.concatenate([cat.comp_idx[rec["course"]], pc.comp_idx[proj["run_project"][proj["run"]]]])
    effect = np.concatenate([rec["effect"], proj_effect])
    completed = np.concatenate([rec["status"], proj["status"]]) == 1
    r, j = np.nonzero(completed[:, None] & (comp_idx < k))
    teacher = np.concatenate([rec["teacher"], proj["teacher"]]).astype(np.int64)
    end = np.concatenate([rec["end"], proj["end"]]).astype(np.int64)
    return Moves(r, teacher[r], comp_idx[r, j], end[r], effect[r, j])


def theta_at(theta0: np.ndarray, slope: np.ndarray, start: date, days: np.ndarray, done: Moves) -> np.ndarray:
    """True competencies (n × K) of each teacher on their own day (days: day numbers, one per teacher): θ at T0
    (`start`), the trend, and the effects of the records completed on or before that day."""
    years = (np.asarray(days, dtype=np.float64) - day_number(start)) / 365.25
    theta = theta0 + (years[:, None] * slope[None, :]).astype(np.float32)
    before = done.end <= days[done.teacher]
    np.add.at(theta, (done.teacher[before], done.code[before]), done.effect[before])
    return np.asarray(theta, dtype=np.float32)
