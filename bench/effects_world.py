"""A second assessment wave for a province `tdr generate` wrote with one: a world of its own for the effects
benchmark, independent of the generator's effect model (`bench/effects.py` runs it beside the generator's
worlds, so the estimator is not judged on one simulator only).

A year (365–425 days) after each assessed teacher's first sitting they sit again: the same items and the same
kinds of scale scores, now drawn from their competencies a year on. In between, each teacher completes a few
courses, chosen with probability growing with their TRUE gap on the course's main competency (selection on
need, `selection` sets its strength). Competencies move by a time trend that regresses toward the mean
(weaker teachers grow more anyway — what a naive pre/post comparison mistakes for a course effect), by noise,
and by each completed course: course k adds base_k × weight_kc × (1 + 0.4 × the teacher's gap in SDs) display
points to competency c (heterogeneous: larger for teachers further behind). The truth written to
OUT/_truth/wave_effects.parquet is each course's average effect on each competency among its takers assessed
twice (the quantity `tdr effects` estimates), with the number of those takers; wave_latent.parquet holds the
true competencies (display points) at both sittings. The generator's records dated after a teacher's first
sitting are dropped (they would be training without effect).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from data.synthetic import load_truth

SCALE = 15.0  # display points per unit of theta (the generator's DISPLAY_SCALE)
SOURCE_NOISE = {"self": (8.0, 12.0), "observation": (0.0, 6.0), "test": (0.0, 5.0)}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def second_wave(
    src: Path, out: Path, seed: int = 0, selection: float = 1.5, courses_per_teacher: float = 2.0
) -> Path:
    """Copy the province in `src` to `out` with a second wave and the courses taken between (see the module
    docstring); returns `out`."""
    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    truth = load_truth(src)
    latent = truth.latent.pivot(index="teacher_id", columns="competency", values="theta")
    codes = latent.columns.to_numpy(dtype=str)
    theta1 = latent.to_numpy(dtype=np.float64)
    responses = pd.read_csv(src / "responses.csv", dtype={"teacher_id": str, "item_id": str})
    scores = pd.read_csv(src / "competency_scores.csv", dtype={"teacher_id": str, "competency": str})
    first = pd.to_datetime(responses.groupby("teacher_id")["taken_at"].max())
    assessed = latent.index.get_indexer(first.index)
    shift = pd.Series(rng.integers(365, 426, len(first)), index=first.index)
    wave2 = first + pd.to_timedelta(shift, "D")

    # courses taken between the waves, chosen on the true gap of their main competency
    cat = truth.courses[truth.courses["active"]].reset_index(drop=True)
    cpos = {c: i for i, c in enumerate(codes)}
    main = np.array([cpos[c[0]] for c in cat["competencies"]])
    n_taken = rng.poisson(courses_per_teacher, len(assessed))
    score = -selection * theta1[assessed][:, main] + rng.gumbel(size=(len(assessed), len(cat)))
    order = np.argsort(-score, axis=1)
    t_rows: list[int] = []
    c_rows: list[int] = []
    for i, k in enumerate(n_taken):
        t_rows.extend([i] * k)
        c_rows.extend(order[i, :k])
    ti, ci = np.asarray(t_rows, dtype=np.int64), np.asarray(c_rows, dtype=np.int64)
    base = np.clip(rng.normal(4.0, 2.0, len(cat)), -1.0, None)
    delta = np.zeros((len(assessed), len(codes)))
    truth_rows = []
    for slot in range(3):
        has = np.array([len(c) > slot for c in cat["competencies"]])
        sel = has[ci]
        if not sel.any():
            continue
        comp = np.array([cpos[cat["competencies"][c][slot]] for c in ci[sel]])
        weight = np.array([cat["weights"][c][slot] for c in ci[sel]])
        gap_sd = -theta1[assessed[ti[sel]], comp]
        effect = base[ci[sel]] * weight * np.maximum(1.0 + 0.4 * gap_sd, 0.0)
        np.add.at(delta, (ti[sel], comp), effect / SCALE)
        truth_rows.append(
            pd.DataFrame(
                {
                    "course_id": cat["course_id"].to_numpy()[ci[sel]],
                    "competency": codes[comp],
                    "effect": effect,
                    "teacher": ti[sel],
                }
            )
        )
    t1 = theta1[assessed]
    theta2 = t1 + 0.08 - 0.12 * t1 + rng.normal(0, 0.1, t1.shape) + delta

    # the records: completed, dated between the waves
    w1 = first.to_numpy(dtype="datetime64[ns]")
    gap_days = (wave2.to_numpy(dtype="datetime64[ns]") - w1).astype("timedelta64[D]").astype(np.int64)
    end = w1[ti] + (rng.uniform(0.1, 0.9, len(ti)) * gap_days[ti]).astype("timedelta64[D]")
    hours = pd.Series(cat["course_id"]).map(pd.read_csv(src / "courses.csv").set_index("course_id")["hours"])
    records = pd.read_csv(src / "training_records.csv", dtype=str)
    # the generator's records after a teacher's first sitting had no effect here: they are left out, so that all
    # training between the sittings is this world's
    day = pd.to_datetime(records["end_date"]).fillna(pd.to_datetime(records["start_date"]))
    records = records[~(day > first.reindex(records["teacher_id"]).to_numpy())]
    new = pd.DataFrame(
        {
            "record_id": [f"W{i:08d}" for i in range(len(ti))],
            "teacher_id": first.index.to_numpy()[ti],
            "course_id": cat["course_id"].to_numpy()[ci],
            "start_date": pd.to_datetime(end - np.timedelta64(14, "D")).strftime("%Y-%m-%d"),
            "end_date": pd.to_datetime(end).strftime("%Y-%m-%d"),
            "hours": hours.to_numpy()[ci],
            "status": "completed",
            "score": np.round(rng.uniform(60, 98, len(ti)), 1),
            "satisfaction": rng.integers(3, 6, len(ti)),
        }
    )
    pd.concat([records, new], ignore_index=True).to_csv(out / "training_records.csv", index=False)

    # the second sitting: same items, same kinds of scores
    items = truth.items.set_index("item_id")
    r = responses.copy()
    slot_of = pd.Series(np.arange(len(assessed)), index=first.index)
    ti_r = slot_of.reindex(r["teacher_id"]).to_numpy()
    eta = -items["difficulty"].reindex(r["item_id"]).to_numpy(dtype=np.float64)
    for slot in range(2):
        comps = (
            items["competencies"].reindex(r["item_id"]).map(lambda c, s=slot: c[s] if len(c) > s else None)
        )
        disc = (
            items["discrimination"].reindex(r["item_id"]).map(lambda d, s=slot: d[s] if len(d) > s else 0.0)
        )
        ok = comps.notna().to_numpy()
        k = np.array([cpos.get(c, 0) for c in comps.fillna(codes[0])])
        eta += np.where(ok, disc.to_numpy(dtype=np.float64) * theta2[ti_r, k], 0.0)
    maxs = items["max_score"].reindex(r["item_id"]).to_numpy(dtype=np.int64)
    r2 = r.assign(
        score=rng.binomial(maxs, _sigmoid(eta)),
        taken_at=wave2.reindex(r["teacher_id"]).dt.strftime("%Y-%m-%d").to_numpy(),
    )
    pd.concat([responses, r2], ignore_index=True).to_csv(out / "responses.csv", index=False)
    s = scores[scores["teacher_id"].isin(first.index)].copy()
    si = slot_of.reindex(s["teacher_id"]).to_numpy()
    k = np.array([cpos[c] for c in s["competency"]])
    bias = s["source"].map(lambda x: SOURCE_NOISE[x][0]).to_numpy(dtype=np.float64)
    sd = s["source"].map(lambda x: SOURCE_NOISE[x][1]).to_numpy(dtype=np.float64)
    value = np.clip(50.0 + SCALE * theta2[si, k] + bias + rng.normal(0, 1, len(s)) * sd, 0, 100)
    shifted = pd.to_datetime(s["taken_at"]) + pd.to_timedelta(shift.reindex(s["teacher_id"]).to_numpy(), "D")
    s2 = s.assign(score=np.round(value, 1), taken_at=shifted.dt.strftime("%Y-%m-%d"))
    pd.concat([scores, s2], ignore_index=True).to_csv(out / "competency_scores.csv", index=False)

    eff = pd.concat(truth_rows, ignore_index=True)
    att = (
        eff.groupby(["course_id", "competency"])
        .agg(effect=("effect", "mean"), n_takers=("teacher", "nunique"))
        .reset_index()
    )
    att.to_parquet(out / "_truth" / "wave_effects.parquet", index=False)
    ids = first.index.to_numpy(dtype=str)
    pd.DataFrame(
        {
            "teacher_id": np.repeat(ids, len(codes)),
            "competency": np.tile(codes, len(ids)),
            "pre": (50.0 + SCALE * t1).ravel(),
            "post": (50.0 + SCALE * theta2).ravel(),
            "pre_date": np.repeat(w1, len(codes)),
            "post_date": np.repeat(wave2.to_numpy(dtype="datetime64[ns]"), len(codes)),
        }
    ).to_parquet(out / "_truth" / "wave_latent.parquet", index=False)
    return out
