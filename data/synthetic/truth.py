"""The ground truth of a synthetic province (DIR/_truth/): what is written there, and its one reader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data.synthetic.common import DEFAULT_WORLD, DISPLAY_CENTRE, DISPLAY_SCALE, to_display
from data.synthetic.growth import Moves
from data.synthetic.tables import dates_array
from data.synthetic.utility import true_utility

UTILITY_TOP_PER_TEACHER = 200

# What DIR/_truth/ holds, for whoever evaluates against it (written into meta.json as "files").
TRUTH_FILES: dict[str, str] = {
    "latent.parquet": (
        "true competencies, one row per teacher × taxonomy code: teacher_id, competency, theta (the "
        "latent ability on the logit scale of the item model, P(correct) = sigmoid(Σ a·theta − b)), "
        "score_0_100 (the same on the 0–100 display scale of competency_scores and portraits: "
        f"clip({DISPLAY_CENTRE:g} + {DISPLAY_SCALE:g}·theta, 0, 100)). "
        "Compare portrait estimates with score_0_100, IRT abilities with theta."
    ),
    "courses.parquet": (
        "true description of every course, tagged in courses.csv or not: course_id, competencies (true "
        "codes, main first), weights, quality, level, popularity, tagged (whether courses.csv shows the "
        "codes), stages, subjects, practical, active, prerequisites, launch_year"
    ),
    "items.parquet": (
        "true item parameters: item_id, competencies (Q-matrix row), discrimination (one per code), "
        "difficulty (b in sigmoid(Σ a·theta − b)), max_score (binomial trials)"
    ),
    "utility.parquet": (
        "true utility of courses for teachers at as_of in the province's world (meta.json 'world'; see "
        "true_utility): teacher_id, course_id, utility; "
        "the top_per_teacher highest positive values of each covered teacher (utility_teachers: all "
        "teachers, or the lowest ids, a random sample, when teachers × courses is large); absent pairs are "
        "worth less"
    ),
    "waves.parquet": (
        "true competencies on the day of each assessment wave, for the teachers assessed that wave: teacher_id, "
        "competency, wave (1: before the training period, 2: in its last eighteen months), taken_at (the day "
        "responses.csv and competency_scores.csv date that wave's test), theta, score_0_100 (as in "
        "latent.parquet), theta_day. The day's measures also carry a transient state (sd meta.json "
        "waves.state_sd, θ) not "
        "in theta; theta_day = theta + that state, what an error-free instrument would have read that day. "
        "For a teacher, wave 2 − wave 1 = Σ effect of their record_effects rows with end_date ≤ the "
        "wave-2 day + trend_per_year × years between the two days (meta.json growth.trend_per_year)"
    ),
    "record_effects.parquet": (
        "the true effect of every completed record on each competency its course or project teaches: "
        "record_id, teacher_id, course_id (null for a project), project_id (null for a course), competency, "
        "end_date, effect (θ), effect_points (15 × effect: display points before clipping), between_waves "
        "(the teacher was assessed at both waves and the record ended by the wave-2 day)"
    ),
    "course_effects.parquet": (
        "true effect of each course on each competency it teaches, averaged over record_effects: course_id, "
        "competency, effect_points (mean over all completions), n_completed, effect_points_between (mean over "
        "completions between a teacher's two waves: what a pre/post estimator can recover), n_between"
    ),
    "project_effects.parquet": (
        "the same per project run: project_id, competency, effect_points, n_completed, "
        "effect_points_between, n_between (a project teaches the codes project_codes.csv gives its name)"
    ),
}


# the files without which a folder is no truth folder (the others are read when present)
REQUIRED_FILES = ("utility.parquet", "latent.parquet", "courses.parquet")


@dataclass(frozen=True)
class Truth:
    """Ground truth of a synthetic province (never read by training code).

    The files and their columns are described in TRUTH_FILES (also written into meta.json under "files");
    `meta` is empty and the other frames None where the folder lacks them (written before they existed).
    """

    utility: pd.DataFrame
    latent: pd.DataFrame
    courses: pd.DataFrame
    items: pd.DataFrame | None
    meta: dict[str, Any]
    waves: pd.DataFrame | None = None
    record_effects: pd.DataFrame | None = None
    course_effects: pd.DataFrame | None = None
    project_effects: pd.DataFrame | None = None


def load_truth(path: str | Path) -> Truth:
    """Read a truth folder written by `generate`; `path` may be the province folder DIR or DIR/_truth.

    Raises FileNotFoundError naming the folder and the missing files when one of REQUIRED_FILES is absent."""
    root = Path(path)
    root = root / "_truth" if (root / "_truth").is_dir() else root
    missing = [f for f in REQUIRED_FILES if not (root / f).exists()]
    if missing:
        raise FileNotFoundError(f"truth folder {root} lacks {', '.join(missing)} (written by `tdr generate`)")
    meta = root / "meta.json"

    def optional(name: str) -> pd.DataFrame | None:
        return pd.read_parquet(root / name) if (root / name).exists() else None

    return Truth(
        utility=pd.read_parquet(root / "utility.parquet"),
        latent=pd.read_parquet(root / "latent.parquet"),
        courses=pd.read_parquet(root / "courses.parquet"),
        items=optional("items.parquet"),
        meta=json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {},
        waves=optional("waves.parquet"),
        record_effects=optional("record_effects.parquet"),
        course_effects=optional("course_effects.parquet"),
        project_effects=optional("project_effects.parquet"),
    )


def waves_table(
    ids: pa.Array,
    codes: np.ndarray,
    day: np.ndarray,
    assessed: np.ndarray,
    theta_waves: list[np.ndarray],
    state: np.ndarray,
) -> pa.Table:
    """waves.parquet: each wave's true competencies of the teachers assessed that wave, and with the day's
    state (`state`: waves × n × K)."""
    k = len(codes)
    parts = []
    for w, theta in enumerate(theta_waves):
        who = np.flatnonzero(assessed[w])
        parts.append(
            pa.table(
                {
                    "teacher_id": ids.take(pa.array(np.repeat(who, k))),
                    "competency": pa.array(codes).take(pa.array(np.tile(np.arange(k), len(who)))),
                    "wave": pa.array(np.full(len(who) * k, w + 1, dtype=np.int8)),
                    "taken_at": dates_array(np.repeat(day[w, who], k)),
                    "theta": pa.array(theta[who].ravel()),
                    "score_0_100": pa.array(to_display(theta[who]).ravel().astype(np.float32)),
                    "theta_day": pa.array((theta[who] + state[w, who]).ravel()),
                }
            )
        )
    return pa.concat_tables(parts)


def record_effects(
    moves: Moves,
    records: pa.Table,
    order: np.ndarray,
    codes: np.ndarray,
    day: np.ndarray,
    assessed: np.ndarray,
) -> pa.Table:
    """record_effects.parquet from the completed records' Moves; `records` is training_records in file order and
    `order` its record_order (row i of the file is record order[i])."""
    row = np.empty_like(order)
    row[order] = np.arange(len(order))
    rows = pa.array(row[moves.record])
    twice = assessed[0] & assessed[1]
    return pa.table(
        {
            "record_id": records["record_id"].take(rows),
            "teacher_id": records["teacher_id"].take(rows),
            "course_id": records["course_id"].take(rows),
            "project_id": records["project_id"].take(rows),
            "competency": pa.array(codes).take(pa.array(moves.code)),
            "end_date": dates_array(moves.end),
            "effect": pa.array(moves.effect.astype(np.float32)),
            "effect_points": pa.array((DISPLAY_SCALE * moves.effect).astype(np.float32)),
            "between_waves": pa.array(twice[moves.teacher] & (moves.end <= day[1, moves.teacher])),
        }
    )


def effect_summary(effects: pa.Table, key: str) -> pa.Table:
    """Mean true effect per `key` (course_id or project_id) and competency: over all completions and over
    those between a teacher's two waves (null where there are none), sorted by key and competency."""
    e = effects.filter(pc.is_valid(effects[key]))
    between = pc.if_else(e["between_waves"], e["effect_points"], pa.scalar(None, pa.float32()))
    g = e.append_column("between", between).group_by([key, "competency"])
    agg = g.aggregate(
        [("effect_points", "mean"), ("effect_points", "count"), ("between", "mean"), ("between", "count")]
    )
    names = {
        key: key,
        "competency": "competency",
        "effect_points_mean": "effect_points",
        "effect_points_count": "n_completed",
        "between_mean": "effect_points_between",
        "between_count": "n_between",
    }
    out = pa.table({new: agg[old] for old, new in names.items()})
    return out.sort_by([(key, "ascending"), ("competency", "ascending")])


def utility_table(
    teachers: pd.DataFrame,
    latent: pd.DataFrame,
    course_truth: pd.DataFrame,
    records: pd.DataFrame,
    world: str = DEFAULT_WORLD,
) -> pa.Table:
    """Each teacher's top true utilities; latent holds k rows per teacher in the order of ``teachers``."""
    k = len(latent) // max(1, len(teachers))
    course_ids = course_truth["course_id"].to_numpy()
    rec_by_teacher = records[records["course_id"].notna()]
    parts_t, parts_c, parts_u = [], [], []
    block = max(1, 2_000_000 // max(1, len(course_ids)))
    for lo in range(0, len(teachers), block):
        tb = teachers.iloc[lo : lo + block]
        lb = latent.iloc[lo * k : (lo + len(tb)) * k]
        rb = rec_by_teacher[rec_by_teacher["teacher_id"].isin(tb["teacher_id"])]
        u = true_utility(lb, course_truth, tb, rb, world)
        top = min(UTILITY_TOP_PER_TEACHER, u.shape[1])
        idx = np.argpartition(-u, top - 1, axis=1)[:, :top]
        vals = np.take_along_axis(u, idx, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        idx = np.take_along_axis(idx, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        r, col = np.nonzero(vals > 0)
        parts_t.append(tb["teacher_id"].to_numpy()[r])
        parts_c.append(course_ids[idx[r, col]])
        parts_u.append(vals[r, col].astype(np.float32))
    return pa.table(
        {
            "teacher_id": pa.array(np.concatenate(parts_t)),
            "course_id": pa.array(np.concatenate(parts_c)),
            "utility": pa.array(np.concatenate(parts_u)),
        }
    )
