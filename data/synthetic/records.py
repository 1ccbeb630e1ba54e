"""Five years of training records: course enrolments from a choice model, and provincial project runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from data.synthetic.catalogue import Catalogue
from data.synthetic.common import (
    FORMATS,
    HISTORY_YEARS,
    MAX_CODES,
    PROVINCE_TEACHERS,
    ROLES,
    SCHOOL_TYPES,
    STAGES,
    SUBJECTS,
    TITLES,
    WORLD_UTILITY,
    as_list,
    choice,
    day_number,
    sigmoid,
)
from data.synthetic.growth import PROJECT_EFFECT_FACTOR, ProjectCourses, realised_effects
from data.synthetic.teachers import Teachers
from data.synthetic.utility import benefit, utility_core, utility_of

CONSIDERED = 120  # courses a teacher looks at in a year (platform listing, colleagues' advice)
MAX_PER_YEAR = 10
SHORTLIST = 20
RECORD_BLOCK = 8192
BETA_UTILITY, BETA_POPULARITY, BETA_FORMAT, BETA_CAREER, BETA_MANDATORY = 0.8, 0.6, 0.8, 0.4, 1.5
FORMAT_TASTE = np.array([0.5, 0.0, 0.2, 0.0, -0.4, 0.3])
RURAL_TASTE = np.array([0.3, -0.3, 0.0, 0.0, -0.3, 0.1])
MONTH_WEIGHTS = np.array([0.03, 0.04, 0.09, 0.10, 0.09, 0.06, 0.14, 0.14, 0.07, 0.10, 0.09, 0.05])
# more able teachers enrol in more courses: engagement × exp(this × their standardised mean competency)
ABILITY_ENGAGEMENT = 0.25


def _sorted_contains(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.searchsorted(keys, query).clip(0, len(keys) - 1)
    return np.asarray(keys[pos] == query, dtype=bool)


@dataclass(frozen=True)
class ChoiceModel:
    """What drives enrolment: the utility teachers believe in (utility_core on the competencies they perceive:
    their first diagnosis, not updated as training closes gaps), popularity, format taste and career stage."""

    cat: Catalogue
    theta_pad: np.ndarray  # perceived competencies, teachers × (K + 1); the last column pads short courses
    rel_pad: np.ndarray
    taste: np.ndarray  # teachers × formats
    pref_level: np.ndarray
    group: np.ndarray  # stage × subject group of each teacher
    shelves: dict[tuple[int, int], np.ndarray]

    def shelf(self, g: int, y: int) -> np.ndarray:
        """Courses group g can see in year y, repeated in proportion to their exposure (a uniform draw from it
        is an exposure-weighted draw of a course)."""
        if (g, y) not in self.shelves:
            cat = self.cat
            st, sb = divmod(g, len(SUBJECTS))
            ok = (
                (cat.launch_year <= y)
                & (cat.retire_year > y)
                & cat.stage_mask[:, st]
                & ((cat.subject < 0) | (cat.subject == sb))
            )
            idx = np.flatnonzero(ok)
            exposure = np.exp(0.7 * cat.popularity[idx]) * np.where(
                (cat.subject[idx] >= 0) | cat.stage_restricted[idx], 1.5, 1.0
            )
            copies = np.maximum(
                1, np.round(20 * exposure / max(float(exposure.mean()), 1e-9)) if len(idx) else 1
            )
            self.shelves[(g, y)] = np.repeat(idx, np.asarray(copies, dtype=np.int64)) if len(idx) else idx
        return self.shelves[(g, y)]

    def choose(
        self, rows: np.ndarray, picks: np.ndarray, y: int, done_keys: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each teacher in rows enrols in up to picks courses of year y: (teacher, course)."""
        cat, c = self.cat, len(self.cat.ids)
        cand = np.zeros((len(rows), CONSIDERED), dtype=np.int64)
        usable = np.ones(len(rows), dtype=bool)
        for g in np.unique(self.group[rows]):
            sel = np.flatnonzero(self.group[rows] == g)
            options = self.shelf(int(g), y)
            if len(options) == 0:
                usable[sel] = False
                continue
            cand[sel] = options[rng.integers(0, len(options), (len(sel), CONSIDERED))]
        ci = cat.comp_idx[cand]
        level = cat.level.astype(np.float32)[cand]
        u = utility_core(
            self.theta_pad[rows[:, None, None], ci],
            self.rel_pad[rows[:, None, None], ci],
            cat.comp_w[cand],
            level,
            cat.multiplier[cand],
        )
        # Gumbel-max sampling without replacement: the top scores of logit + Gumbel noise (−log Exp(1))
        logit = (
            BETA_UTILITY * u
            + BETA_POPULARITY * cat.popularity[cand]
            + BETA_FORMAT * self.taste[rows[:, None], cat.fmt[cand]]
            - BETA_CAREER * np.abs(level - self.pref_level[rows][:, None])
            + BETA_MANDATORY * (cat.mandatory[cand] >= 0)
            - np.log(np.maximum(rng.standard_exponential(cand.shape, dtype=np.float32), 1e-30))
        )
        # only the best SHORTLIST are checked against what the teacher has completed or still lacks
        top = np.argpartition(-logit, SHORTLIST - 1, axis=1)[:, :SHORTLIST]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(logit, top, axis=1), axis=1), axis=1)
        course_top = np.take_along_axis(cand, top, axis=1)
        row_key = rows[:, None].astype(np.int64) * c
        pre = cat.prereq[course_top]
        blocked = (
            _sorted_contains(done_keys, row_key + course_top)
            | ((pre >= 0) & ~_sorted_contains(done_keys, row_key + pre))
            | ~usable[:, None]
            | np.triu(course_top[:, :, None] == course_top[:, None, :], 1).any(axis=1)
        )
        keep = ~blocked & (np.cumsum(~blocked, axis=1) <= picks[:, None])
        r_i, col = np.nonzero(keep)
        return rows[r_i], cand[r_i, top[r_i, col]]


def _outcomes(
    uu: np.ndarray,
    fit: np.ndarray,
    rural: np.ndarray,
    quality: np.ndarray,
    hours: np.ndarray,
    fmt: np.ndarray,
    y: int,
    as_of: date,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Dates, status, credited hours, score and satisfaction of enrolments in year y.

    The better a course fits the teacher (uu: the standardised true utility; format taste, course quality),
    the likelier it is finished, the higher its score and the better it is liked; away-from-school formats see
    more no-shows.
    """
    m = len(uu)
    log_q = np.log(quality)
    away = np.isin(fmt, (1, 3, 4))
    p_noshow = sigmoid(-3.0 + 0.9 * away - 0.2 * uu - 0.35 * fit + 0.3 * rural)
    p_drop = sigmoid(-1.9 - 0.8 * uu - 0.5 * fit + 0.03 * (hours - 10) - 0.8 * log_q)
    status = np.where(rng.random(m) < p_noshow, 3, np.where(rng.random(m) < p_drop, 2, 1))

    latest = y == as_of.year
    if latest:
        offset = (rng.random(m) * as_of.timetuple().tm_yday).astype(np.int64)
    else:
        month_start = np.array([day_number(date(y, mm + 1, 1)) for mm in range(12)]) - day_number(
            date(y, 1, 1)
        )
        offset = month_start[choice(rng, MONTH_WEIGHTS, m)] + rng.integers(0, 28, m)
    start = day_number(date(y, 1, 1)) + offset
    duration = np.select(
        [fmt == 0, fmt == 1, fmt == 2, fmt == 3, fmt == 4],
        [
            hours * rng.uniform(1, 4, m),
            np.ceil(hours / 8),
            hours * rng.uniform(1, 3, m),
            hours / 4 * rng.uniform(1, 3, m),
            np.ceil(hours / 8) + rng.integers(0, 4, m),
        ],
        rng.uniform(14, 120, m),
    ).astype(np.int64)
    end = start + np.maximum(duration, 1)
    if not latest:
        end = np.minimum(end, day_number(date(y, 12, 31)))
    status = np.where((end > day_number(as_of)) & (status != 3), 0, status)
    credited = np.select(
        [status == 2, status == 3], [np.round(hours * rng.uniform(0.1, 0.7, m), 1), 0.0], hours
    )
    score = 60 + 40 * sigmoid(0.4 + 0.6 * uu + 0.3 * fit + 0.6 * log_q + rng.normal(0, 0.8, m))
    sat = np.clip(np.round(3.7 + 0.45 * uu + 0.3 * fit + 0.8 * log_q + rng.normal(0, 0.75, m)), 1, 5)
    rated_drop = (status == 2) & (rng.random(m) < 0.3)
    return {
        "start": start,
        "end": np.select([status == 1, status == 2], [end, start + np.maximum(duration // 2, 1)], -1),
        "status": status,
        "hours": credited,
        "score": np.where(status == 1, np.round(score, 1), np.nan),
        "satisfaction": np.select([status == 1, rated_drop], [sat, np.maximum(sat - 1, 1)], np.nan),
    }


@dataclass(frozen=True)
class Growth:
    """What moves competencies while the records are drawn (see growth.py): the world, θ at T0 (n × K), the
    yearly trend (K,), the project records (project_records) and what each project teaches, and the
    generator of the effects' noise."""

    world: str
    theta0: np.ndarray
    slope: np.ndarray
    projects: dict[str, np.ndarray]
    project_courses: ProjectCourses
    rng: np.random.Generator


def make_records(
    t: Teachers,
    perceived: np.ndarray,
    rel: np.ndarray,
    cat: Catalogue,
    growth: Growth,
    rng: np.random.Generator,
    as_of: date,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Five years of course enrolments from the choice model, in blocks of teachers (no per-teacher loop), and
    the true effects of every course and project record (records × MAX_CODES θ, zero unless completed).

    Outcomes follow the true utility at the start of the year; competencies then move by the effects of what
    was completed that year and by the trend, so a gap closed by training stops paying."""
    n, k = perceived.shape
    c = len(cat.ids)
    pad = np.zeros((n, 1), np.float32)
    rel_pad = np.concatenate([rel, pad], axis=1)
    model = ChoiceModel(
        cat=cat,
        theta_pad=np.concatenate([perceived, pad], axis=1),
        rel_pad=rel_pad,
        taste=(
            FORMAT_TASTE[None, :]
            + (t.school_type == 0)[:, None] * RURAL_TASTE[None, :]
            + rng.normal(0, 0.8, (n, len(FORMATS)))
        ).astype(np.float32),
        pref_level=(1.0 + np.minimum(2.0, t.years / 10.0)).astype(np.float32),
        group=t.stage * len(SUBJECTS) + t.subject,
        shelves={},
    )
    ability = growth.theta0.mean(axis=1)
    ability = (ability - ability.mean()) / max(float(ability.std()), 1e-9)
    engagement = 3.6 * rng.lognormal(0, 0.35, n) * np.exp(ABILITY_ENGAGEMENT * ability)
    year_share = as_of.timetuple().tm_yday / 365.0
    centre, spread = WORLD_UTILITY[growth.world]
    appeal_of = cat.appeal
    proj = growth.projects
    pc = growth.project_courses
    proj_year = proj["start"].astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    proj_done = np.flatnonzero(proj["status"] == 1)
    proj_effect = np.zeros((len(proj["teacher"]), MAX_CODES), dtype=np.float32)
    proj_factor = np.float32(PROJECT_EFFECT_FACTOR)
    empty_int, empty_float = np.empty(0, np.int64), np.empty(0, np.float64)
    out: dict[str, list[np.ndarray]] = {
        key: [empty_float if key in ("hours", "score", "satisfaction") else empty_int]
        for key in ("teacher", "course", "start", "end", "status", "hours", "score", "satisfaction")
    }
    effects: list[np.ndarray] = [np.zeros((0, MAX_CODES), dtype=np.float32)]
    for lo in range(0, n, RECORD_BLOCK):
        tb = np.arange(lo, min(n, lo + RECORD_BLOCK))
        theta = np.concatenate([growth.theta0[tb], pad[tb]], axis=1)  # this block's true θ, year by year
        block_projects = proj_done[
            (proj["teacher"][proj_done] >= lo) & (proj["teacher"][proj_done] < tb[-1] + 1)
        ]
        done_keys = np.empty(0, dtype=np.int64)
        for y in range(as_of.year - HISTORY_YEARS + 1, as_of.year + 1):
            gained = np.zeros_like(theta)
            n_pick = np.minimum(
                rng.poisson(engagement[tb] * (year_share if y == as_of.year else 1.0)), MAX_PER_YEAR
            )
            rows = tb[n_pick > 0]
            if len(rows):
                teacher, course = model.choose(rows, n_pick[n_pick > 0], y, done_keys, rng)
                ci = cat.comp_idx[course]
                local = (teacher - lo)[:, None]
                b = benefit(
                    growth.world, theta[local, ci], cat.level[course], cat.quality[course], appeal_of[course]
                )
                true_u = utility_of(b, rel_pad[teacher[:, None], ci], cat.comp_w[course], cat.bonus[course])
                res = _outcomes(
                    (true_u - centre) / spread,
                    model.taste[teacher, cat.fmt[course]],
                    t.school_type[teacher] == 0,
                    cat.quality[course],
                    cat.hours[course],
                    cat.fmt[course],
                    y,
                    as_of,
                    rng,
                )
                finished = res["status"] == 1
                eff = realised_effects(b, cat.comp_w[course], cat.bonus[course], growth.rng)
                eff[~finished] = 0.0
                np.add.at(gained, (np.broadcast_to(local, ci.shape), ci), eff)
                done_keys = np.sort(
                    np.concatenate([done_keys, teacher[finished].astype(np.int64) * c + course[finished]])
                )
                for key, val in ({"teacher": teacher, "course": course} | res).items():
                    out[key].append(val)
                effects.append(eff)
            pj = block_projects[proj_year[block_projects] == y]
            if len(pj):
                which = proj["run_project"][proj["run"][pj]]
                p_local = (proj["teacher"][pj] - lo)[:, None]
                p_ci = pc.comp_idx[which]
                b = benefit(
                    growth.world,
                    theta[p_local, p_ci],
                    pc.level[which],
                    pc.quality[which],
                    np.ones(len(pj), np.float32),
                )
                proj_effect[pj] = realised_effects(
                    b, pc.comp_w[which], np.full(len(pj), proj_factor), growth.rng
                )
                np.add.at(gained, (np.broadcast_to(p_local, p_ci.shape), p_ci), proj_effect[pj])
            theta += gained
            theta[:, :k] += growth.slope[None, :]
    records = {key: np.concatenate(v) for key, v in out.items()}
    records["effect"] = np.concatenate(effects)
    return records, proj_effect


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def project_records(
    t: Teachers, geo: pd.DataFrame, projects: pd.DataFrame, rng: np.random.Generator, as_of: date
) -> dict[str, np.ndarray]:
    """Participation in provincial projects (国培/省培): the 2022 table, run again each year under new ids.

    Returns per record the teacher, the project run (index into the returned "run_project" — the row of
    `projects` —, "run_id", "run_name" and "run_format" arrays), dates, status and hours.
    """
    n = len(t.ids)
    scale = n / PROVINCE_TEACHERS
    asof_days = day_number(as_of)
    county_vocab = list(geo["county"])
    teacher_codes = (
        ("target_stages", STAGES, t.stage),
        ("target_subjects", SUBJECTS, t.subject),
        ("scope_counties", county_vocab, t.county),
        ("target_school_types", SCHOOL_TYPES, t.school_type),
    )
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("teacher", "run", "start", "end", "status", "hours")}
    run_project: list[int] = []
    run_id: list[str] = []
    run_name: list[str] = []
    run_format: list[str] = []
    for y in range(as_of.year - HISTORY_YEARS + 1, as_of.year + 1):
        for p_row, p in enumerate(projects.to_dict("records")):
            ok = np.ones(n, dtype=bool)
            for col, vocab, codes_of_teacher in teacher_codes:
                wanted = as_list(p.get(col))
                if wanted:
                    ok &= np.isin(np.arange(len(vocab)), [vocab.index(w) for w in wanted if w in vocab])[
                        codes_of_teacher
                    ]
            excluded = [SUBJECTS.index(sb) for sb in as_list(p.get("excluded_subjects")) if sb in SUBJECTS]
            ok &= ~np.isin(t.subject, excluded)
            roles = [ROLES.index(r) for r in as_list(p.get("target_roles")) if r in ROLES]
            if roles:
                ok &= t.roles[:, roles].any(axis=1)
            min_years = _number(p.get("min_years"))
            if not np.isnan(min_years):
                ok &= t.years >= int(min_years)
            min_title = p.get("min_title")
            if isinstance(min_title, str) and min_title in TITLES:
                ok &= t.title >= TITLES.index(min_title)
            pool = np.flatnonzero(ok)
            expected = float(np.nan_to_num(_number(p.get("quota")))) * scale * rng.uniform(0.7, 1.3)
            size = min(len(pool), int(expected) + int(rng.random() < expected - int(expected)))
            start_day = day_number(date(y, 1, 1)) + int(rng.integers(120, 300))
            if size == 0 or start_day > asof_days:
                continue
            who = np.sort(rng.choice(pool, size, replace=False))
            days = float(np.nan_to_num(_number(p.get("days"))))
            online = float(np.nan_to_num(_number(p.get("online_hours"))))
            end_day = start_day + int(max(days, 1) + online / 2)
            status = np.where(rng.random(size) < 0.09, 3, np.where(rng.random(size) < 0.04, 2, 1))
            if end_day > asof_days:
                status = np.where(status == 3, 3, 0)
            full = days * 8 + online
            hours = np.select([status == 1, status == 2, status == 3], [full, np.round(days * 4), 0.0], full)
            out["teacher"].append(who)
            out["run"].append(np.full(size, len(run_id)))
            out["start"].append(np.full(size, start_day))
            out["end"].append(np.where(status == 1, end_day, -1))
            out["status"].append(status)
            out["hours"].append(hours.astype(np.float64))
            run_project.append(p_row)
            run_id.append(str(p["project_id"]).replace("2022", str(y), 1))
            run_name.append(str(p["name"]))
            run_format.append(str(p.get("format") or "offline"))
    result = {k: np.concatenate(v) if v else np.empty(0, dtype=np.int64) for k, v in out.items()}
    result["run_project"] = np.array(run_project, dtype=np.int64)
    result["run_id"] = np.array(run_id, dtype=object)
    result["run_name"] = np.array(run_name, dtype=object)
    result["run_format"] = np.array(run_format, dtype=object)
    return result
