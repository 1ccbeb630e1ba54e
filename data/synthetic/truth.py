"""The ground truth of a synthetic province (DIR/_truth/): what is written there, and its one reader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from data.synthetic.common import DISPLAY_CENTRE, DISPLAY_SCALE
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
        "true utility of courses for teachers at as_of (see true_utility): teacher_id, course_id, utility; "
        "the top_per_teacher highest positive values of each covered teacher (utility_teachers: all "
        "teachers, or the lowest ids, a random sample, when teachers × courses is large); absent pairs are "
        "worth less"
    ),
}


# the files without which a folder is no truth folder (the others are read when present)
REQUIRED_FILES = ("utility.parquet", "latent.parquet", "courses.parquet")


@dataclass(frozen=True)
class Truth:
    """Ground truth of a synthetic province (never read by training code).

    The files and their columns are described in TRUTH_FILES (also written into meta.json under "files");
    `items` is None and `meta` empty where the folder lacks them.
    """

    utility: pd.DataFrame
    latent: pd.DataFrame
    courses: pd.DataFrame
    items: pd.DataFrame | None
    meta: dict[str, Any]


def load_truth(path: str | Path) -> Truth:
    """Read a truth folder written by `generate`; `path` may be the province folder DIR or DIR/_truth.

    Raises FileNotFoundError naming the folder and the missing files when one of REQUIRED_FILES is absent."""
    root = Path(path)
    root = root / "_truth" if (root / "_truth").is_dir() else root
    missing = [f for f in REQUIRED_FILES if not (root / f).exists()]
    if missing:
        raise FileNotFoundError(f"truth folder {root} lacks {', '.join(missing)} (written by `tdr generate`)")
    items, meta = root / "items.parquet", root / "meta.json"
    return Truth(
        utility=pd.read_parquet(root / "utility.parquet"),
        latent=pd.read_parquet(root / "latent.parquet"),
        courses=pd.read_parquet(root / "courses.parquet"),
        items=pd.read_parquet(items) if items.exists() else None,
        meta=json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {},
    )


def utility_table(
    teachers: pd.DataFrame, latent: pd.DataFrame, course_truth: pd.DataFrame, records: pd.DataFrame
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
        u = true_utility(lb, course_truth, tb, rb)
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
