"""Does 精准选人 pick the teachers a project helps most, and does 编班 put like needs together? Measured against
the synthetic province's true competencies (DIR/_truth/latent.parquet), which no selection code reads.

For every project with enough eligible teachers:
- selection: the fifth of the eligible teachers that selection picks (rural priority off, and on as the policy
  sets it) vs random eligible teachers — their mean TRUE gap (target level − true score, ≥ 0) on the
  project's competencies, weighted as selection weighs them; an oracle that knows the truth is the ceiling;
- classes: every eligible teacher split into classes of the project's size, by selection's size-constrained
  clustering (and mixing counties) vs random splits — the RMS distance of members' TRUE gap profiles to
  their class mean; the same clustering of the true profiles themselves is the ceiling.
Prints JSON; writes bench/results/selection.json.

    .venv/bin/python bench/selection.py --input DIR --workspace WS    # a generated province, its trained WS
    .venv/bin/python bench/selection.py [--teachers 5000] [--seed 0]  # generate, ingest and train one first
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.workspace import Workspace, write_text_atomic  # noqa: E402
from recommender.config import settings  # noqa: E402
from recommender.selection import (  # noqa: E402
    SelectionContext,
    eligibility,
    form_classes,
    random_spread,
    select_trainees,
    spread,
)

RESULTS = Path(__file__).resolve().parent / "results" / "selection.json"
SHARE_SELECTED = 0.2
MIN_ELIGIBLE = 50


def build(root: Path, teachers: int, seed: int) -> tuple[Path, Workspace]:
    from data.ingest import ingest
    from data.synthetic import generate
    from recommender.train import train

    src = root / "input"
    generate(src, n_teachers=teachers, seed=seed)
    ws = Workspace.open(root / "ws")
    ingest(src, ws)
    train(ws, settings(), seed=seed)
    return src, ws


def true_gaps(src: Path, ids: pd.Index, codes: np.ndarray, target: float) -> np.ndarray:
    latent = pd.read_parquet(
        src / "_truth" / "latent.parquet", columns=["teacher_id", "competency", "score_0_100"]
    )
    grid = latent.pivot(index="teacher_id", columns="competency", values="score_0_100")
    return np.clip(target - grid.reindex(index=ids, columns=codes).to_numpy(dtype=float), 0.0, None)


def _mean_at(values: np.ndarray, ids: pd.Index, selection: Any) -> float:
    """Mean of a per-teacher value over a selection's roster."""
    return float(values[ids.get_indexer(selection.roster["teacher_id"])].mean())


def evaluate(ctx: SelectionContext, truth: np.ndarray, ids: pd.Index) -> list[dict[str, Any]]:
    rows = []
    for project in ctx.project_list():
        rules = eligibility(ctx.teachers, project, ctx.records, ctx.art.policy, ctx.art.asof)
        n_eligible = int(rules["eligible"].sum())
        if n_eligible < MIN_ELIGIBLE:
            continue
        content = ctx.contents[project.project_id]
        project_gap = truth @ content.weights  # each teacher's true gap on what the project teaches
        position = ids.get_indexer(rules.loc[rules["eligible"], "teacher_id"])
        pool = project_gap[position]
        quota = max(10, round(SHARE_SELECTED * n_eligible))
        start = time.perf_counter()
        by_need = select_trainees(ctx, project.project_id, quota=quota, rural_priority_weight=0.0)
        seconds = time.perf_counter() - start
        by_policy = select_trainees(ctx, project.project_id, quota=quota)

        row: dict[str, Any] = {
            "project_id": project.project_id,
            "name": project.name,
            "content": content.source,
            "competencies": list(content.codes[:3]),
            "eligible": n_eligible,
            "selected": quota,
            "true_gap_random_eligible": round(float(pool.mean()), 2),
            "true_gap_selected": round(_mean_at(project_gap, ids, by_need), 2),
            "true_gap_selected_rural_priority": round(_mean_at(project_gap, ids, by_policy), 2),
            "true_gap_oracle": round(float(np.sort(pool)[-quota:].mean()), 2),
            "rural_share_selected": round(float((by_need.roster["school_type"] == "rural").mean()), 3),
            "rural_share_selected_rural_priority": round(
                float((by_policy.roster["school_type"] == "rural").mean()), 3
            ),
            "select_seconds": round(seconds, 2),
        }
        if n_eligible >= 2 * project.class_size:
            for mix in (False, True):
                everyone = select_trainees(ctx, project.project_id, quota=n_eligible, mix_counties=mix)
                county = pd.factorize(everyone.roster["county"])[0] if mix else None
                members = truth[ids.get_indexer(everyone.roster["teacher_id"])]
                label = everyone.roster["class_no"].to_numpy() - 1
                key = "classes_mixed" if mix else "classes"
                row[key] = {
                    "n_classes": int(label.max() + 1),
                    "true_spread": round(spread(members, label), 2),
                    "true_spread_random": round(random_spread(members, label), 2),
                    # the same clustering run on the true profiles themselves: the most any 编班 could do
                    "true_spread_oracle": round(
                        spread(members, form_classes(members, project.class_size, county)), 2
                    ),
                    "estimated_spread": round(everyone.spread, 2),
                    "estimated_spread_random": round(everyone.random_spread, 2),
                }
        rows.append(row)
        gaps = f"{row['true_gap_selected']} vs {row['true_gap_random_eligible']}"
        print(f"{project.project_id} {project.name}: {gaps}", file=sys.stderr)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    frame = pd.DataFrame(rows)
    out: dict[str, Any] = {
        "projects": len(frame),
        "mean_true_gap_random_eligible": round(float(frame["true_gap_random_eligible"].mean()), 2),
        "mean_true_gap_selected": round(float(frame["true_gap_selected"].mean()), 2),
        "mean_true_gap_selected_rural_priority": round(
            float(frame["true_gap_selected_rural_priority"].mean()), 2
        ),
        "mean_true_gap_oracle": round(float(frame["true_gap_oracle"].mean()), 2),
        "projects_where_selected_beats_random": int(
            (frame["true_gap_selected"] > frame["true_gap_random_eligible"]).sum()
        ),
    }
    lift = frame["true_gap_selected"] - frame["true_gap_random_eligible"]
    ceiling = frame["true_gap_oracle"] - frame["true_gap_random_eligible"]
    out["share_of_oracle_lift"] = round(float(lift.sum() / ceiling.sum()), 3)
    for key in ("classes", "classes_mixed"):
        if key in frame:
            classes = pd.DataFrame([c for c in frame[key] if isinstance(c, dict)])
            out[key] = {
                "projects": len(classes),
                "mean_true_spread": round(float(classes["true_spread"].mean()), 2),
                "mean_true_spread_random": round(float(classes["true_spread_random"].mean()), 2),
                "mean_true_spread_oracle": round(float(classes["true_spread_oracle"].mean()), 2),
                "true_spread_reduction": round(
                    float(1 - classes["true_spread"].sum() / classes["true_spread_random"].sum()), 3
                ),
                "mean_estimated_spread": round(float(classes["estimated_spread"].mean()), 2),
                "mean_estimated_spread_random": round(float(classes["estimated_spread_random"].mean()), 2),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--input", type=Path, help="generated province (with _truth/)")
    parser.add_argument("--workspace", type=Path, help="its trained workspace")
    parser.add_argument("--teachers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tdr-bench-selection-") as tmp:
        if args.input and args.workspace:
            src, ws = args.input, Workspace.open(args.workspace)
        else:
            src, ws = build(Path(tmp), args.teachers, args.seed)
        start = time.perf_counter()
        ctx = SelectionContext.load(ws, settings())
        load_seconds = time.perf_counter() - start
        ids = pd.Index(ctx.teachers["teacher_id"].astype(str))
        codes = np.asarray(ctx.art.catalogue.comp_codes).astype(str)
        truth = true_gaps(src, ids, codes, settings().target_level)
        rows = evaluate(ctx, truth, ids)
        meta = json.loads((src / "_truth" / "meta.json").read_text(encoding="utf-8"))
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "province": {k: meta.get(k) for k in ("n_teachers", "seed", "as_of", "assessed_teachers")},
        "teachers": len(ids),
        "share_selected": SHARE_SELECTED,
        "target_level": settings().target_level,
        "rural_priority_weight": ctx.art.policy.rural_priority_weight,
        "context_load_seconds": round(load_seconds, 1),
        "summary": summary(rows),
        "projects": rows,
    }
    text = json.dumps(report, ensure_ascii=False, indent=2)
    write_text_atomic(RESULTS, text + "\n")
    print(json.dumps(report["summary"], ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
