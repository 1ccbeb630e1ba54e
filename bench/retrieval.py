"""Candidate retrieval against the synthetic truth: recall@K of each teacher's truly useful courses (the top-10
eligible courses by true utility) for dense-only, lexical-only and hybrid retrieval, and for the hybrid
retrieval that `tdr score` uses (which also adds owed mandatory topics).

`python -m bench.retrieval --workspace WS --truth DIR` writes bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data.synthetic import load_truth
from data.workspace import Workspace
from recommender.artifacts import load_current
from recommender.evaluate import blocks, pick_teachers, read_workspace, write_report
from recommender.ranking import teacher_inputs
from recommender.retrieval import LEXICAL_WEIGHT, eligibility_matrix, lexical_scores, query_vectors, retrieve

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.json"
USEFUL = 10
KS = (20, 50, 100, 200)


def _hits(score: np.ndarray, useful: np.ndarray, k: int) -> np.ndarray:
    """Per teacher: how many useful courses the k best scores hold."""
    top = np.argpartition(-score, min(k, score.shape[1]) - 1, axis=1)[:, :k]
    return np.take_along_axis(useful, top, axis=1).sum(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--teachers", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    start = time.perf_counter()
    ws = Workspace.open(args.workspace)
    art, data, truth = load_current(ws.bundles_dir), read_workspace(ws), load_truth(args.truth)
    cat = art.catalogue
    util = truth.utility.assign(teacher_id=truth.utility["teacher_id"].astype(str))
    ids = pick_teachers(
        np.intersect1d(util["teacher_id"].unique(), data.portraits["teacher_id"]), args.teachers, 0
    )
    course_pos = pd.Series(np.arange(cat.n_courses), index=cat.course_ids)
    found: dict[str, dict[int, int]] = {
        m: dict.fromkeys(KS, 0) for m in ("dense", "lexical", "hybrid", "tdr")
    }
    total = 0
    for block in blocks(data, ids):
        tb, _ctx = teacher_inputs(
            block.rows, block.competencies, block.records, cat, art.signals.stats, art.attrs.topics, art.asof
        )
        eligible = eligibility_matrix(tb, cat)
        u = util[util["teacher_id"].isin(set(tb.teacher_ids))]
        grid = np.full(eligible.shape, -np.inf)
        rows = pd.Index(tb.teacher_ids).get_indexer(u["teacher_id"])
        cols = u["course_id"].map(course_pos).to_numpy()
        ok = (rows >= 0) & ~pd.isna(cols)
        grid[rows[ok], cols[ok].astype(np.int64)] = u["utility"].to_numpy()[ok]
        grid = np.where(eligible, grid, -np.inf)
        useful = np.zeros(eligible.shape, dtype=bool)
        best = np.argpartition(-grid, USEFUL - 1, axis=1)[:, :USEFUL]
        np.put_along_axis(useful, best, True, axis=1)
        useful &= np.isfinite(grid)
        total += int(useful.sum())
        dense = np.where(eligible, query_vectors(tb, cat) @ cat.vectors.T, -np.inf)
        lexical = np.where(eligible, lexical_scores(tb, cat), -np.inf)
        for name, score in (
            ("dense", dense),
            ("lexical", lexical),
            ("hybrid", dense + LEXICAL_WEIGHT * lexical),
        ):
            for k in KS:
                found[name][k] += int(_hits(score, useful, k).sum())
        for k in KS:
            cands = retrieve(tb, cat, art.index, k)
            found["tdr"][k] += int(useful[cands.row, cands.course].sum())
    report = {
        "useful": f"top-{USEFUL} eligible courses per teacher by true utility",
        "teachers": len(ids),
        "courses": cat.n_courses,
        "recall": {m: {f"@{k}": v / max(total, 1) for k, v in per.items()} for m, per in found.items()},
        "wall_s": round(time.perf_counter() - start, 1),
    }
    write_report(report, args.out)
    for m, per in report["recall"].items():
        print(m, {k: round(v, 3) for k, v in per.items()})


if __name__ == "__main__":
    main()
