"""`generate`: the stages drawn in order from one seed, the contract files and the truth written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data.reference import load_jiangxi_projects, load_taxonomy
from data.synthetic.assessments import (
    STATE_SD,
    make_items,
    make_responses,
    plan_assessments,
    wave_scale_scores,
)
from data.synthetic.catalogue import default_course_count, make_catalogue
from data.synthetic.common import (
    CODE_WEIGHTS,
    DEFAULT_AS_OF,
    DEFAULT_WORLD,
    DISPLAY_CENTRE,
    DISPLAY_SCALE,
    LEVEL_SD,
    PRACTICAL_BONUS,
    SELF_RATING_BIAS,
    SELF_RATING_SD,
    STAGE_BONUS,
    SUBJECT_BONUS,
    TARGET_THETA,
    WORLD_UNIT,
    WORLDS,
    World,
    day_number,
    to_display,
)
from data.synthetic.growth import (
    EFFECT_NOISE_SD,
    EFFECT_SCALE,
    PROJECT_EFFECT_FACTOR,
    completed_moves,
    project_courses,
    theta_at,
    training_start,
    trend,
)
from data.synthetic.records import Growth, make_records, project_records
from data.synthetic.tables import (
    course_truth_table,
    courses_table,
    dates_array,
    projects_table,
    record_order,
    records_table,
    teachers_table,
    write_csv,
    write_csv_sliced,
    write_parquet,
)
from data.synthetic.teachers import draw_latent, geography, make_teachers
from data.synthetic.truth import (
    TRUTH_FILES,
    UTILITY_TOP_PER_TEACHER,
    effect_summary,
    record_effects,
    utility_table,
    waves_table,
)
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
    world: World = DEFAULT_WORLD


def _written(table: pa.Table, path: Path) -> int:
    """Write one contract table as CSV; its row count."""
    write_csv(table, path)
    return int(table.num_rows)


def _responses_rows(resp: dict[str, np.ndarray], ids: pa.Array, item_ids: pa.Array, part: slice) -> pa.Table:
    """Rows `part` of responses.csv from the drawn responses."""
    return pa.table(
        {
            "teacher_id": ids.take(pa.array(resp["teacher"][part])),
            "item_id": item_ids.take(pa.array(resp["item"][part])),
            "score": pa.array(resp["score"][part]),
            "taken_at": dates_array(resp["taken"][part]),
        }
    )


def generate(
    out_dir: str | Path,
    n_teachers: int = 5000,
    seed: int = 0,
    as_of: date = DEFAULT_AS_OF,
    n_courses: int | None = None,
    world: World = DEFAULT_WORLD,
) -> GenerationSummary:
    """Write a synthetic 江西省 province in the input data contract to out_dir, and its truth to out_dir/_truth.

    `world` (one of WORLDS) sets what truly helps a teacher (see utility.benefit); the files a platform would
    export differ between worlds only through outcomes (completion, scores, satisfaction, assessments), never
    through what teachers believe when they enrol. Deterministic per (n_teachers, seed, as_of, n_courses,
    world): the same arguments give the same bytes.
    """
    if n_teachers < 1:
        raise ValueError(f"n_teachers must be at least 1, got {n_teachers}")
    if world not in WORLDS:
        raise ValueError(f"world must be one of {', '.join(WORLDS)}, got {world!r}")
    out = Path(out_dir)
    truth_dir = out / "_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    # the first eight streams are those of the generator before it had worlds; later ones were added after them
    streams = np.random.SeedSequence(seed).spawn(10)
    rng_teachers, rng_latent, rng_courses, rng_items, rng_resp, rng_scores, rng_records, rng_projects = (
        np.random.default_rng(s) for s in streams[:8]
    )
    rng_waves, rng_effects = (np.random.default_rng(s) for s in streams[8:])
    taxonomy = load_taxonomy()
    codes = list(taxonomy["code"])
    domains = taxonomy["domain"].to_numpy()
    geo = geography()

    t = make_teachers(n_teachers, geo, rng_teachers, as_of)
    theta0 = draw_latent(t, codes, domains, rng_latent)  # at T0, the start of the training period
    rel = relevance(t.stage, t.school_type, t.years, t.roles, codes)
    cat = make_catalogue(n_courses or default_course_count(n_teachers), codes, geo, rng_courses, as_of)
    bank = make_items(codes, domains, rng_items)
    plan = plan_assessments(t, len(codes), rng_resp, rng_waves, as_of)
    projects = load_jiangxi_projects()
    proj = project_records(t, geo, projects, rng_projects, as_of)
    growth = Growth(
        world=world,
        theta0=theta0,
        slope=trend(codes),
        projects=proj,
        project_courses=project_courses(projects, codes, rng_effects),
        rng=rng_effects,
    )
    # teachers choose on the need their first diagnosis showed them (its day-of-test error included)
    rec, proj_effect = make_records(t, theta0 + plan.state[0], rel, cat, growth, rng_records, as_of)
    moves = completed_moves(rec, proj, cat, growth.project_courses, proj_effect, len(codes))
    start = training_start(as_of)
    theta_waves = [theta_at(theta0, growth.slope, start, plan.day[w], moves) for w in range(2)]
    theta = theta_at(theta0, growth.slope, start, np.full(n_teachers, day_number(as_of)), moves)
    slope, order = growth.slope, record_order(rec, proj)
    del growth, theta0, rel, proj_effect  # what only the draw of the records needed (peak memory)
    codes_arr = np.array(codes)
    ids = pa.array(t.ids)
    teachers_tbl = teachers_table(t, geo)
    rows = {"teachers": _written(teachers_tbl, out / "teachers.csv")}
    rows["courses"] = _written(courses_table(cat, codes), out / "courses.csv")
    records_tbl = records_table(rec, proj, cat, ids, rng_projects)
    del rec
    rows["training_records"] = _written(records_tbl, out / "training_records.csv")
    rows["items"] = _written(
        pa.table(
            {
                "item_id": pa.array(bank.ids),
                "competencies": pa.array(
                    [";".join(codes_arr[row[row < len(codes)]]) for row in bank.comp_idx], type=pa.string()
                ),
                "max_score": pa.array(bank.max_score.astype(np.float64)),
            }
        ),
        out / "items.csv",
    )
    # the largest tables are drawn, written and freed one at a time (a province's peak memory)
    resp = make_responses(plan, theta_waves, bank, rng_resp)
    rows["responses"] = write_csv_sliced(
        len(resp["teacher"]), partial(_responses_rows, resp, ids, pa.array(bank.ids)), out / "responses.csv"
    )
    del resp
    scales = wave_scale_scores(plan, theta_waves, codes, t.stage, rng_scores)
    rows["competency_scores"] = _written(
        pa.table(
            {
                "teacher_id": ids.take(pa.array(scales["teacher"])),
                "competency": pa.array(codes_arr).take(pa.array(scales["code"])),
                "score": pa.array(scales["score"]),
                "taken_at": dates_array(scales["taken"]),
                "source": pa.array(np.array(["self", "observation", "test"])[scales["source"]]),
            }
        ),
        out / "competency_scores.csv",
    )
    del scales
    rows["projects"] = _written(projects_table(projects), out / "projects.csv")

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
        waves_table(ids, codes_arr, plan.day, plan.assessed, theta_waves, plan.state),
        truth_dir / "waves.parquet",
    )
    effects = record_effects(moves, records_tbl, order, codes_arr, plan.day, plan.assessed)
    write_parquet(effects, truth_dir / "record_effects.parquet")
    for key, name in (("course_id", "course_effects.parquet"), ("project_id", "project_effects.parquet")):
        write_parquet(effect_summary(effects, key), truth_dir / name)
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
            world,
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
    meta = {
        "seed": seed,
        "n_teachers": n_teachers,
        "n_courses": len(cat.ids),
        "as_of": as_of.isoformat(),
        "rows": rows,
        "world": world,
        "assessed_teachers": int(plan.assessed.any(axis=0).sum()),
        "waves": {
            "assessed": [int(a.sum()) for a in plan.assessed],
            "assessed_twice": int(plan.assessed.all(axis=0).sum()),
            "training_start": start.isoformat(),
            "state_sd": STATE_SD,
        },
        "growth": {
            "trend_per_year": dict(zip(codes, map(float, slope), strict=True)),
            "effect_scale": EFFECT_SCALE,
            "effect_noise_sd": EFFECT_NOISE_SD,
            "project_effect_factor": PROJECT_EFFECT_FACTOR,
            "world_unit": WORLD_UNIT[world],
        },
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
        world=world,
    )
