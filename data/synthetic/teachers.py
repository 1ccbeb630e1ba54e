"""Geography, teachers and their true competencies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from data.reference import load_counties
from data.synthetic.common import (
    LOAD_D,
    LOAD_G,
    ROLES,
    SCHOOL_TYPE_SHARE,
    STAGE_SUBJECTS,
    STAGE_TEACHER_SHARE,
    STAGES,
    SUBJECTS,
    apportion,
    choice,
)
from data.synthetic.utility import code_family


@dataclass(frozen=True)
class Teachers:
    ids: np.ndarray
    county: np.ndarray  # index into geography
    school: np.ndarray
    school_type: np.ndarray  # index into SCHOOL_TYPES
    stage: np.ndarray  # index into STAGES
    subject: np.ndarray  # index into SUBJECTS
    title: np.ndarray  # index into TITLES
    years: np.ndarray
    roles: np.ndarray  # n × len(ROLES) bool
    birth_year: np.ndarray
    female: np.ndarray


def geography() -> pd.DataFrame:
    """Counties of seed 004 (demonstration, project, revitalisation-support and others it names)."""
    geo = load_counties()[["county", "city", "category"]].drop_duplicates("county").reset_index(drop=True)
    suffix = geo["county"].str[-1]
    geo["kind"] = np.where(suffix == "区", "district", np.where(suffix == "市", "city", "county"))
    return geo


def make_teachers(n: int, geo: pd.DataFrame, rng: np.random.Generator, as_of: date) -> Teachers:
    kind = geo["kind"].to_numpy()
    county_w = np.select([kind == "district", kind == "city"], [0.8, 1.1], 1.3) * rng.uniform(
        0.6, 1.4, len(geo)
    )
    # Teachers per stage are fixed to the province's shares first (a few big senior schools drawn or not would
    # otherwise swing a small province's stage mix by ten points); then each stage's schools are drawn until
    # they hold its teachers. Within a stage, a school type is drawn with odds = its share of teachers / its
    # typical school size, so small rural schools are many.
    median = np.array([[6, 14, 25], [12, 45, 85], [30, 60, 110], [60, 120, 200]], dtype=np.float64)
    per_stage = apportion(n, STAGE_TEACHER_SHARE)
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # stage, type, county, size
    for si, n_stage in enumerate(per_stage):
        if n_stage == 0:
            continue
        n_schools = int(n_stage / median[si].min()) + 5
        s_county = choice(rng, county_w, n_schools)
        s_type = np.zeros(n_schools, dtype=np.int64)
        for kd, type_shares in SCHOOL_TYPE_SHARE.items():
            m = np.flatnonzero(kind[s_county] == kd)
            s_type[m] = choice(rng, np.array(type_shares[si]) / median[si], len(m))
        size = np.maximum(2, np.round(median[si, s_type] * rng.lognormal(0.0, 0.5, n_schools))).astype(
            np.int64
        )
        while size.sum() < n_stage:  # a draw of only tiny schools: rare, but never short of teachers
            size = size * 2
        ends = np.cumsum(size)
        keep = int(np.searchsorted(ends, n_stage) + 1)
        size = size[:keep]
        size[-1] -= int(ends[keep - 1] - n_stage)
        blocks.append((np.full(keep, si), s_type[:keep], s_county[:keep], size))
    s_stage, s_type, s_county, size = (np.concatenate(parts) for parts in zip(*blocks, strict=True))
    school = np.repeat(np.arange(len(size)), size)
    stage = s_stage[school]
    stype = s_type[school]
    county = s_county[school]

    subject = np.zeros(n, dtype=np.int64)
    for si, st in enumerate(STAGES):
        m = np.flatnonzero(stage == si)
        shares = STAGE_SUBJECTS[st]
        w = np.array([shares.get(s, 0.0) for s in SUBJECTS])
        subject[m] = choice(rng, w, len(m))

    young = rng.random(n) < np.array([0.38, 0.30, 0.24])[stype]
    years = np.where(young, rng.integers(0, 9, n), np.clip(np.round(rng.normal(19, 8.5, n)), 0, 40)).astype(
        np.int64
    )
    entry_age = 21 + rng.poisson(1.6, n) - (stage == 0).astype(np.int64) * 2
    birth_year = as_of.year - np.minimum(years + entry_age, 60)

    z = (
        years / 4.5
        + rng.normal(0, 0.9, n)
        + np.array([-0.25, 0.0, 0.25])[stype]
        + np.array([-0.3, 0.0, 0.1, 0.4])[stage]
    )
    title = np.select([z < 0.3, z < 1.0, z < 3.0, z < 6.1, z < 8.0], [0, 1, 2, 3, 4], 5)
    title = np.where(years < 1, 0, title)
    title = np.where((title == 1) & (stage >= 2), 2, title)  # 三级 exists in practice only in early years
    title = np.where((title == 5) & (rng.random(n) > 0.08), 4, title)

    head = rng.random(n) < np.where(stage == 0, 0.25, np.where((years >= 2) & (years <= 25), 0.40, 0.15))
    # principals and secretaries: the most senior staff of each school
    seniority = years + 3.0 * title + rng.normal(0, 3.0, n)
    order = np.lexsort((-seniority, school))
    starts = np.concatenate([[0], np.cumsum(size)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[school[order]]
    ssize = size[school]
    principal = (ssize >= 3) & ((rank == 0) | ((rank == 1) & (ssize >= 40)))
    secretary = ((rank == 2) & (ssize >= 30)) | (
        (rank == 0) & (ssize < 30) & (ssize >= 3) & (rng.random(n) < 0.5)
    )
    trainer = (years >= 8) & (title >= 3) & (rng.random(n) < 0.04)
    researcher = (years >= 10) & (title >= 3) & (rng.random(n) < 0.025)
    head &= ~principal
    roles = np.stack([head, principal, secretary, trainer, researcher], axis=1)
    female = rng.random(n) < np.array([0.97, 0.76, 0.60, 0.52])[stage]

    # teacher ids must not reveal the school: number them in a random order
    perm = rng.permutation(n)
    ids = np.array([f"T{i + 1:07d}" for i in range(n)])
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)

    def o(a: np.ndarray) -> np.ndarray:
        return a[perm]

    return Teachers(
        ids=ids,
        county=o(county),
        school=o(school),
        school_type=o(stype),
        stage=o(stage),
        subject=o(subject),
        title=o(title),
        years=o(years),
        roles=o(roles),
        birth_year=o(birth_year),
        female=o(female),
    )


def draw_latent(
    t: Teachers, codes: Sequence[str], domains: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """True competencies θ (teachers × codes): a general factor, domain factors and specific noise, shifted by
    career stage, urban/rural setting, school stage and roles."""
    n, k = len(t.ids), len(codes)
    fam = code_family(codes)
    codes_arr = np.asarray(codes)
    dom_names, dom_idx = np.unique(domains, return_inverse=True)
    g = rng.standard_normal(n).astype(np.float32)
    f = rng.standard_normal((n, len(dom_names))).astype(np.float32)
    e = rng.standard_normal((n, k)).astype(np.float32)
    load_s = np.sqrt(1.0 - LOAD_G**2 - LOAD_D**2)
    theta = LOAD_G * g[:, None] + LOAD_D * f[:, dom_idx] + load_s * e

    base = {"A": 0.2, "B": -0.1, "C": -0.5, "ETH": 0.5, "KNW": 0.2, "DES": 0.0, "EVA": -0.2, "CLS": 0.0}
    base |= {"RES": -0.2, "LEAD": -0.3}
    mean = np.array([base.get(fm, 0.0) for fm in fam]) + rng.normal(0, 0.15, k)
    mean[codes_arr == "A3"] += 0.4
    it = np.isin(fam, ("A", "B", "C"))
    y = t.years.astype(np.float32)
    career = 0.9 * (1 - np.exp(-y / 6.0)) - 0.55
    it_career = 0.35 - 0.03 * y + 0.25 * (1 - np.exp(-y / 3.0))
    shift = np.where(it[None, :], it_career[:, None], career[:, None])
    shift += np.array([-0.25, -0.1, 0.0])[t.school_type][:, None]
    shift[:, fam == "C"] += np.array([-0.35, -0.15, 0.0])[t.school_type][:, None]
    shift[:, fam == "B"] += np.array([-0.15, -0.05, 0.0])[t.school_type][:, None]
    kg = t.stage == 0
    shift[:, codes_arr == "KNW4"] += np.where(kg, 0.8, np.where(t.stage == 1, -0.3, -0.8))[:, None]
    shift[:, codes_arr == "KNW1"] += np.where(kg, -0.3, 0.0)[:, None]
    shift[:, ~it] += ((t.title - 2) * 0.08)[:, None]
    head, principal, secretary, trainer, researcher = (t.roles[:, j] for j in range(len(ROLES)))
    shift[:, fam == "CLS"] += (0.35 * head)[:, None]
    shift[:, fam == "LEAD"] += (0.9 * principal + 0.7 * secretary)[:, None]
    shift[:, codes_arr == "LEAD5"] += (0.6 * secretary)[:, None]
    shift[:, fam == "RES"] += (0.2 * principal + 0.5 * trainer + 0.6 * researcher)[:, None]
    shift[:, fam == "EVA"] += (0.2 * trainer + 0.3 * researcher)[:, None]
    shift[:, codes_arr == "KNW2"] += (0.3 * researcher)[:, None]
    return np.asarray(theta + mean[None, :] + shift, dtype=np.float32)
