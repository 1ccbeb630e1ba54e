"""The course catalogue: true competency codes, level, format, hours, audience, quality, popularity, text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from data.synthetic.common import (
    CODE_WEIGHTS,
    FORMATS,
    MANDATORY_TOPICS,
    MAX_CODES,
    MAX_COURSES,
    PRACTICAL_BONUS,
    PROVIDER_FORMATS,
    STAGE_BONUS,
    STAGE_SUBJECTS,
    STAGE_ZH,
    STAGES,
    SUBJECT_BONUS,
    SUBJECTS,
    choice,
)
from data.synthetic.text import course_text, known_providers
from data.synthetic.utility import appeal, code_family


@dataclass(frozen=True)
class Catalogue:
    ids: np.ndarray
    titles: list[str]
    descriptions: list[str]
    comp_idx: np.ndarray  # C × MAX_CODES, padded with K
    comp_w: np.ndarray
    level: np.ndarray
    fmt: np.ndarray
    hours: np.ndarray
    cost: np.ndarray
    practical: np.ndarray  # 1 true, 0 false, -1 unknown (blank in the file)
    stage_mask: np.ndarray  # C × 4 bool; all true = open to every stage
    stage_restricted: np.ndarray
    subject: np.ndarray  # index into SUBJECTS, -1 = all subjects
    mandatory: np.ndarray  # index into MANDATORY_TOPICS, -1 = none
    prereq: np.ndarray  # course index, -1 = none
    provider: np.ndarray  # index into the provider list
    providers: list[str]
    quality: np.ndarray
    popularity: np.ndarray
    launch_year: np.ndarray
    retire_year: np.ndarray  # first year not offered; 9999 = active
    tagged: np.ndarray

    @property
    def active(self) -> np.ndarray:
        return self.retire_year > 9000

    @property
    def bonus(self) -> np.ndarray:
        """Context bonus: subject-specific, stage-specific and practical courses fit better."""
        return np.asarray(
            (1.0 + SUBJECT_BONUS * (self.subject >= 0))
            * (1.0 + STAGE_BONUS * self.stage_restricted)
            * (1.0 + PRACTICAL_BONUS * (self.practical == 1)),
            dtype=np.float32,
        )

    @property
    def multiplier(self) -> np.ndarray:
        """What teachers believe a course is worth besides their need: its quality and context bonus."""
        return np.asarray(self.quality * self.bonus, dtype=np.float32)

    @property
    def appeal(self) -> np.ndarray:
        return appeal(self.popularity)


def default_course_count(n_teachers: int) -> int:
    return int(min(MAX_COURSES, max(600, round(n_teachers / 8))))


def make_catalogue(
    n_courses: int, codes: Sequence[str], geo: pd.DataFrame, rng: np.random.Generator, as_of: date
) -> Catalogue:
    k = len(codes)
    fam = code_family(codes)
    code_pos = {c: i for i, c in enumerate(codes)}
    fam_w = {"ETH": 1.0, "KNW": 1.2, "DES": 1.5, "EVA": 1.1, "CLS": 1.1, "A": 1.0, "B": 0.9, "C": 0.8}
    fam_w |= {"RES": 1.0, "LEAD": 0.7}
    code_w = np.array([fam_w.get(f, 1.0) for f in fam])
    c = n_courses

    topics = list(MANDATORY_TOPICS)
    n_mand = max(30, round(0.06 * c))
    mandatory = np.full(c, -1, dtype=np.int64)
    mand_rows = rng.choice(c, n_mand, replace=False)
    mandatory[mand_rows] = choice(rng, np.array([MANDATORY_TOPICS[tp][0] for tp in topics]), n_mand)
    # whatever the draw, an open online course of every topic and several of 师德师风, which every policy asks
    # for each year
    guaranteed = mand_rows[: len(topics) + 4]
    mandatory[guaranteed] = [*range(len(topics)), *[topics.index("师德师风")] * 4]

    n_codes = 1 + choice(rng, np.array([0.5, 0.35, 0.15]), c)
    comp_idx = np.full((c, MAX_CODES), k, dtype=np.int64)
    primary = choice(rng, code_w, c)
    for i in np.flatnonzero(mandatory >= 0):
        tcodes = MANDATORY_TOPICS[topics[mandatory[i]]][1]
        primary[i] = code_pos[tcodes[int(rng.random() * len(tcodes))]]
    comp_idx[:, 0] = primary
    same_family = rng.random((c, MAX_CODES)) < 0.6
    random_codes = choice(rng, code_w, (c, MAX_CODES))
    fam_members = {f: np.flatnonzero(fam == f) for f in np.unique(fam)}
    for j in range(1, MAX_CODES):
        has = n_codes > j
        pick = random_codes[:, j].copy()
        for f, members in fam_members.items():
            m = has & same_family[:, j] & (fam[primary] == f)
            pick[m] = members[rng.integers(0, len(members), m.sum())]
        dup = np.any(comp_idx[:, :j] == pick[:, None], axis=1)
        comp_idx[:, j] = np.where(has & ~dup, pick, k)
    # compact the padding to the right and recount
    order = np.argsort(comp_idx == k, axis=1, kind="stable")
    comp_idx = np.take_along_axis(comp_idx, order, axis=1)
    n_codes = (comp_idx < k).sum(axis=1)
    comp_w = np.where(comp_idx < k, np.array(CODE_WEIGHTS, dtype=np.float32)[None, :], 0.0).astype(np.float32)

    level = 1 + choice(rng, np.array([0.45, 0.35, 0.20]), c)
    lead = fam[primary] == "LEAD"
    level[lead] = 1 + choice(rng, np.array([0.2, 0.45, 0.35]), int(lead.sum()))
    level[mandatory >= 0] = 1

    # providers: the province's institutions plus county teacher-development centres
    county_names = geo["county"].to_numpy()
    centre_counties = county_names[rng.choice(len(county_names), min(12, len(county_names)), replace=False)]
    providers = [p for p, _ in known_providers()] + [f"{cn}教师发展中心" for cn in centre_counties]
    kinds = [kd for _, kd in known_providers()] + ["county"] * len(centre_counties)
    prov_w = np.array(
        [{"university": 1.0, "platform": 1.6, "province": 1.2, "county": 0.7}[kd] for kd in kinds]
    )
    provider = choice(rng, prov_w, c)
    kind_arr = np.array(kinds)[provider]
    fmt = np.zeros(c, dtype=np.int64)
    for kd, format_weights in PROVIDER_FORMATS.items():
        m = np.flatnonzero(kind_arr == kd)
        fmt[m] = choice(rng, np.array(format_weights), len(m))
    fmt[mandatory >= 0] = np.where(rng.random(int((mandatory >= 0).sum())) < 0.85, 0, 2)
    fmt[guaranteed] = 0

    hours_lo = np.array([2, 12, 10, 6, 24, 4], dtype=np.float64)[fmt]
    hours_typ = np.array([8, 24, 18, 12, 32, 10], dtype=np.float64)[fmt]
    hours = np.clip(np.round(hours_typ * rng.lognormal(0, 0.35, c)), hours_lo, 40.0)
    hours[mandatory >= 0] = np.clip(
        np.round(rng.lognormal(np.log(5), 0.4, int((mandatory >= 0).sum()))), 2, 12
    )
    days = np.ceil(hours / 8.0)
    cost = np.select(
        [fmt == 0, fmt == 1, fmt == 2, fmt == 3, fmt == 4],
        [3.0 * hours, 400.0 * days, 3.0 * hours / 2 + 400.0 * np.ceil(days / 2), 150.0 * days, 450.0 * days],
        0.0,
    )
    p_practical = np.array([0.25, 0.5, 0.6, 0.9, 0.95, 0.85])[fmt]
    practical = (rng.random(c) < p_practical).astype(np.int64)
    practical[mandatory >= 0] = 0
    practical[rng.random(c) < 0.05] = -1

    # who may take it: stage restrictions for a share, subject-specific courses inside one stage
    stage_mask = np.ones((c, 4), dtype=bool)
    restricted = rng.random(c) < 0.4
    one_stage = choice(rng, np.array([0.2, 0.4, 0.25, 0.15]), c)
    two = rng.random(c) < 0.3
    stage_mask[restricted] = False
    idx = np.flatnonzero(restricted)
    stage_mask[idx, one_stage[idx]] = True
    nb = np.clip(one_stage + np.where(one_stage == 3, -1, 1), 0, 3)
    stage_mask[idx[two[idx]], nb[idx[two[idx]]]] = True
    knw4 = primary == code_pos["KNW4"]
    stage_mask[knw4] = np.array([True, False, False, False])
    stage_mask[knw4 & (rng.random(c) < 0.4), 1] = True
    for i in np.flatnonzero(mandatory >= 0):
        allowed = MANDATORY_TOPICS[topics[mandatory[i]]][2]
        if allowed:
            stage_mask[i] = [s in allowed for s in STAGES]
        elif rng.random() < 0.7 or i in guaranteed:
            stage_mask[i] = True
    stage_restricted = np.asarray(~stage_mask.all(axis=1))
    single = stage_mask.sum(axis=1) == 1
    subj_fams = np.isin(fam[primary], ("KNW", "DES", "EVA", "A", "B", "C"))
    subject = np.full(c, -1, dtype=np.int64)
    want = single & subj_fams & (rng.random(c) < 0.55) & (mandatory < 0)
    only_stage = np.argmax(stage_mask, axis=1)
    for si, st in enumerate(STAGES):
        m = np.flatnonzero(want & (only_stage == si))
        shares = STAGE_SUBJECTS[st]
        w = np.array([shares.get(s, 0.0) for s in SUBJECTS])
        subject[m] = choice(rng, w, len(m))

    provider_effect = rng.normal(0, 0.25, len(providers))
    q_z = rng.standard_normal(c)
    quality = np.exp(provider_effect[provider] + 0.3 * q_z).astype(np.float32)
    popularity = (
        0.3 * q_z + np.sqrt(1 - 0.09) * rng.standard_normal(c) + 0.5 * (mandatory >= 0) + 0.3 * (fmt == 0)
    ).astype(np.float32)

    y_end = as_of.year
    # years since launch: a few brand-new courses (no history yet), most offered throughout the five years
    launch = y_end - choice(rng, np.array([0.08, 0.10, 0.12, 0.12, 0.13, 0.15, 0.30]), c)
    retire = np.full(c, 9999, dtype=np.int64)
    gone = (rng.random(c) < 0.08) & (launch < y_end)
    retire[gone] = launch[gone] + 1 + (rng.random(int(gone.sum())) * (y_end - launch[gone])).astype(np.int64)
    retire = np.where(retire <= y_end, retire, 9999)
    retire[gone & (retire == 9999)] = y_end

    retire[guaranteed] = 9999

    # prerequisites: some level-2/3 courses build on an earlier, lower-level course of the same competency
    prereq = np.full(c, -1, dtype=np.int64)
    wants_pre = (level >= 2) & (mandatory < 0) & (rng.random(c) < 0.3)
    for code_i in np.unique(primary[wants_pre]):
        dependants = np.flatnonzero(wants_pre & (primary == code_i))
        for lv in (2, 3):
            dep = dependants[level[dependants] == lv]
            base = np.flatnonzero((primary == code_i) & (level == lv - 1) & (retire == 9999))
            if len(dep) and len(base):
                cand = base[rng.integers(0, len(base), len(dep))]
                ok = launch[cand] <= launch[dep]
                prereq[dep[ok]] = cand[ok]

    tagged = rng.random(c) < 0.5
    u = rng.random((c, 24))
    titles: list[str] = []
    descriptions: list[str] = []
    for row in range(c):
        st_ctx = (
            STAGE_ZH[int(only_stage[row])]
            if single[row]
            else ("中小学" if not stage_mask[row, 0] and stage_restricted[row] else "")
        )
        sb_ctx = SUBJECTS[subject[row]] if subject[row] >= 0 and SUBJECTS[subject[row]] != "学前教育" else ""
        code_list = [codes[j] for j in comp_idx[row, : n_codes[row]]]
        title, desc = course_text(
            code_list,
            int(level[row]),
            FORMATS[fmt[row]],
            st_ctx,
            sb_ctx,
            providers[provider[row]],
            kinds[provider[row]],
            topics[mandatory[row]] if mandatory[row] >= 0 else None,
            bool(practical[row] == 1),
            u[row],
        )
        titles.append(title)
        descriptions.append(desc)
    return Catalogue(
        ids=np.array([f"C{i + 1:05d}" for i in range(c)]),
        titles=titles,
        descriptions=descriptions,
        comp_idx=comp_idx,
        comp_w=comp_w,
        level=level,
        fmt=fmt,
        hours=hours,
        cost=np.round(cost),
        practical=practical,
        stage_mask=stage_mask,
        stage_restricted=stage_restricted,
        subject=subject,
        mandatory=mandatory,
        prereq=prereq,
        provider=provider,
        providers=providers,
        quality=quality,
        popularity=popularity,
        launch_year=launch,
        retire_year=retire,
        tagged=tagged,
    )
