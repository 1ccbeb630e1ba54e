"""`generate`: the stages drawn in order from one seed, the contract files and the truth written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data.reference import load_jiangxi_projects, load_taxonomy
from data.synthetic.assessments import make_items, make_responses, make_scale_scores
from data.synthetic.catalogue import default_course_count, make_catalogue
from data.synthetic.common import (
    CODE_WEIGHTS,
    DEFAULT_AS_OF,
    DISPLAY_CENTRE,
    DISPLAY_SCALE,
    LEVEL_SD,
    PRACTICAL_BONUS,
    SELF_RATING_BIAS,
    SELF_RATING_SD,
    STAGE_BONUS,
    SUBJECT_BONUS,
    TARGET_THETA,
    to_display,
)
from data.synthetic.records import make_records, project_records
from data.synthetic.tables import (
    course_truth_table,
    courses_table,
    dates_array,
    projects_table,
    records_table,
    teachers_table,
    write_csv,
    write_parquet,
)
from data.synthetic.teachers import draw_latent, geography, make_teachers
from data.synthetic.truth import TRUTH_FILES, UTILITY_TOP_PER_TEACHER, utility_table
from data.synthetic.utility import relevance
from data.workspace import write_text_atomic

# true utilities are computed for at most this many teacher × course cells (a sample beyond it)
UTILITY_CELLS_MAX = 30_000_000


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate` wrote: rows per contract file and how many teachers the true utilities cover."""

    out_dir: Path
    seed: int
    n_teachers: int
    rows: dict[str, int]
    utility_teachers: int  # teachers whose true utilities are in _truth/utility.parquet (all, or a sample)
    note: str

    def __rich__(self) -> Any:
        """What `tdr generate` prints: rows per file and where the ground truth is."""
        from rich.console import Group
        from rich.table import Table

        table = Table(title=f"合成省份已写入 {self.out_dir}（种子 {self.seed}）", title_justify="left")
        table.add_column("文件 file")
        table.add_column("行数 rows", justify="right")
        for name, count in self.rows.items():
            table.add_row(f"{name}.csv", f"{count:,}")
        return Group(table, f"真实值（训练不读取）：{self.out_dir / '_truth'}", self.note)


def generate(
    out_dir: str | Path,
    n_teachers: int = 5000,
    seed: int = 0,
    as_of: date = DEFAULT_AS_OF,
    n_courses: int | None = None,
) -> GenerationSummary:
    """Write a synthetic 江西省 province in the input data contract to out_dir, and its truth to out_dir/_truth.

    Deterministic per (n_teachers, seed, as_of, n_courses): the same arguments give the same bytes.
    """
    if n_teachers < 1:
        raise ValueError(f"n_teachers must be at least 1, got {n_teachers}")
    out = Path(out_dir)
    truth_dir = out / "_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    rng_teachers, rng_latent, rng_courses, rng_items, rng_resp, rng_scores, rng_records, rng_projects = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)
    )
    taxonomy = load_taxonomy()
    codes = list(taxonomy["code"])
    domains = taxonomy["domain"].to_numpy()
    geo = geography()

    t = make_teachers(n_teachers, geo, rng_teachers, as_of)
    theta = draw_latent(t, codes, domains, rng_latent)
    rel = relevance(t.stage, t.school_type, t.years, t.roles, codes)
    cat = make_catalogue(n_courses or default_course_count(n_teachers), codes, geo, rng_courses, as_of)
    bank = make_items(codes, domains, rng_items)
    assessed, resp = make_responses(t, theta, bank, rng_resp, as_of)
    scales = make_scale_scores(theta, assessed, resp["taken_by_teacher"], codes, t.stage, rng_scores)
    rec = make_records(t, theta, rel, cat, rng_records, as_of)
    projects = load_jiangxi_projects()
    proj = project_records(t, geo, projects, rng_projects, as_of)

    codes_arr = np.array(codes)
    teachers_tbl = teachers_table(t, geo)
    courses_tbl = courses_table(cat, codes)
    items_tbl = pa.table(
        {
            "item_id": pa.array(bank.ids),
            "competencies": pa.array(
                [";".join(codes_arr[row[row < len(codes)]]) for row in bank.comp_idx], type=pa.string()
            ),
            "max_score": pa.array(bank.max_score.astype(np.float64)),
        }
    )
    ids = pa.array(t.ids)
    responses_tbl = pa.table(
        {
            "teacher_id": ids.take(pa.array(resp["teacher"])),
            "item_id": pa.array(bank.ids).take(pa.array(resp["item"])),
            "score": pa.array(resp["score"]),
            "taken_at": dates_array(resp["taken"]),
        }
    )
    scores_tbl = pa.table(
        {
            "teacher_id": ids.take(pa.array(scales["teacher"])),
            "competency": pa.array(codes_arr).take(pa.array(scales["code"])),
            "score": pa.array(scales["score"]),
            "taken_at": dates_array(scales["taken"]),
            "source": pa.array(np.array(["self", "observation", "test"])[scales["source"]]),
        }
    )

    records_tbl = records_table(rec, proj, cat, ids, rng_projects)
    tables = {
        "teachers": teachers_tbl,
        "courses": courses_tbl,
        "training_records": records_tbl,
        "items": items_tbl,
        "responses": responses_tbl,
        "competency_scores": scores_tbl,
        "projects": projects_table(projects),
    }
    for name, tbl in tables.items():
        write_csv(tbl, out / f"{name}.csv")

    # ground truth
    n, k = theta.shape
    write_parquet(
        pa.table(
            {
                "teacher_id": ids.take(pa.array(np.repeat(np.arange(n), k))),
                "competency": pa.array(codes_arr).take(pa.array(np.tile(np.arange(k), n))),
                "theta": pa.array(theta.ravel()),
                "score_0_100": pa.array(to_display(theta).ravel().astype(np.float32)),
            }
        ),
        truth_dir / "latent.parquet",
    )
    course_truth = course_truth_table(cat, codes)
    write_parquet(course_truth, truth_dir / "courses.parquet")
    write_parquet(
        pa.table(
            {
                "item_id": pa.array(bank.ids),
                "competencies": pa.array([list(codes_arr[row[row < k]]) for row in bank.comp_idx]),
                "discrimination": pa.array(
                    [list(a[row < k]) for row, a in zip(bank.comp_idx, bank.a, strict=True)]
                ),
                "difficulty": pa.array(bank.b),
                "max_score": pa.array(bank.max_score.astype(np.int64)),
            }
        ),
        truth_dir / "items.parquet",
    )
    # Teacher ids are numbered in a random order, so the first ones are a random sample of the province.
    utility_teachers = min(n, max(1, UTILITY_CELLS_MAX // len(cat.ids)))
    m = utility_teachers
    sample_records = records_tbl.filter(
        pc.and_(
            pc.is_in(records_tbl["teacher_id"], value_set=pa.array(t.ids[:m])),
            pc.equal(records_tbl["status"], "completed"),
        )
    )
    sample_latent = pd.DataFrame(
        {
            "teacher_id": np.repeat(t.ids[:m], k),
            "competency": np.tile(codes_arr, m),
            "theta": theta[:m].ravel(),
        }
    )
    write_parquet(
        utility_table(
            teachers_tbl.slice(0, m).to_pandas(),
            sample_latent,
            course_truth.to_pandas(),
            sample_records.to_pandas(),
        ),
        truth_dir / "utility.parquet",
    )
    if utility_teachers == n:
        note = f"utility.parquet：每位教师真实效用最高的 {UTILITY_TOP_PER_TEACHER} 门课程"
    else:
        note = (
            f"utility.parquet：随机抽样的 {utility_teachers:,} 位教师（编号最小者）各自真实效用最高的 "
            f"{UTILITY_TOP_PER_TEACHER} 门课程；其余教师可用 true_utility() 分块计算"
        )
    rows = {name: tbl.num_rows for name, tbl in tables.items()}
    meta = {
        "seed": seed,
        "n_teachers": n_teachers,
        "n_courses": len(cat.ids),
        "as_of": as_of.isoformat(),
        "rows": rows,
        "assessed_teachers": int(assessed.sum()),
        "utility_teachers": utility_teachers,
        "note": note,
        "files": TRUTH_FILES,
        "display": {
            "centre": DISPLAY_CENTRE,
            "scale": DISPLAY_SCALE,
            "formula": "score_0_100 = clip(centre + scale × theta, 0, 100)",
        },
        "utility_model": {
            "target_theta": TARGET_THETA,
            "level_sd": LEVEL_SD,
            "code_weights": list(CODE_WEIGHTS),
            "subject_bonus": SUBJECT_BONUS,
            "stage_bonus": STAGE_BONUS,
            "practical_bonus": PRACTICAL_BONUS,
            "top_per_teacher": UTILITY_TOP_PER_TEACHER,
        },
        "self_rating": {"bias": SELF_RATING_BIAS, "sd": SELF_RATING_SD},
    }
    write_text_atomic(truth_dir / "meta.json", json.dumps(meta, ensure_ascii=False, indent=2, sort_keys=True))
    return GenerationSummary(
        out_dir=out,
        seed=seed,
        n_teachers=n_teachers,
        rows=rows,
        utility_teachers=utility_teachers,
        note=note,
    )
