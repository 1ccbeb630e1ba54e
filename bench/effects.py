"""训后成效, measured (issue 17): how well `tdr effects` recovers the true effects of courses and projects, beside
the simple estimators a reviewer would try, in worlds that disagree; and its time and memory at scale.

Run ``.venv/bin/python -m bench.effects`` from the repository root; it prints JSON and writes
``bench/results/effects.json`` atomically.

Quality. For each world (`--worlds`, all four by default: need, quality, popularity, mixed — `tdr generate
--world …`, two dated assessment waves and true effects in DIR/_truth) a province is generated, ingested, measured once (`recommender.effects.compute_growth`), and every estimator reads
the same pre/post changes and completed records, in the same run:

- ``tdr`` — `models.effects.estimate_effects` (imputation on the comparison teachers with errors-in-variables,
  negative-control calibrated standard errors, empirical Bayes), on the courses' competency codes the data give
  (untagged courses get none here; `tdr effects` on a trained workspace uses the codes `tdr train` infers);
- ``ancova`` — the same inputs through one errors-in-variables regression of post on pre, covariates and every
  unit's indicator (TDR's estimator before the imputation one; method="ancova");
- ``naive`` — the takers' mean pre→post change;
- ``did`` — that minus the mean change of every teacher assessed twice without the course (unmatched DiD);
- ``dml_plr`` — the partially linear model of double machine learning (DoubleML's ``DoubleMLPLR``: cross-fitted
  LightGBM for E[post | X] once per competency, logistic regression (Newton–Cholesky) for E[took the course | X]
  per course, X = pre score, stage, subject, elapsed years, 5 folds), written here with scikit-learn and
  LightGBM rather than adding doubleml;
- ceilings — ``tdr_true_codes``: TDR's estimator told the true competencies of every course; ``tdr_true_scores``:
  also fed the true competencies on the two wave days instead of measurements (an error-free instrument);
- instrument checks, on the courses' codes the data give (as ``tdr``) — ``tdr_error_free``: the true
  competencies on the wave days in place of the measurements; ``tdr_linear_instrument``: those plus classical
  noise of each measurement's own standard error (a linear instrument as noisy as the real one). ``tdr`` against
  ``tdr_linear_instrument`` isolates what the instrument's non-linearity costs, ``tdr_linear_instrument``
  against ``tdr_error_free`` what its noise costs, ``tdr_error_free`` against ``tdr_true_scores`` the codes;
  `instrument_curve`: the mean measured score by bin of the true score (`instrument_curve`);
- ``tdr_inferred_codes`` — TDR's estimator on the codes `tdr effects` reads from a trained workspace: the
  catalogue's codes, and for an untagged course those `tdr train` infers from its text
  (`recommender.train.build_course_side`, the same encoder and tagger), so that the takers of an untagged course
  that moves a competency are no longer counted as untreated on it;
- precision weighting — ``tdr_precision`` and ``tdr_linear_instrument_precision``: TDR's estimator with each
  taker's gain weighted by its precision (`models.effects`, weights="precision"), on the measurements and on the
  linear instrument: what weighting gains in noise and what it costs where the instrument's scale is uneven;
- projects — ``tdr`` (the normal prior, as `tdr effects`) beside ``tdr_spike_slab``: the spike-and-slab prior
  (`models.effects`, prior="spike_slab"), which would shrink the competencies a project does not teach to nil.

Against the truth's mean effect of each course on each competency over completions between a teacher's two
waves (`course_effects.parquet`, `effect_points_between`; projects likewise), over the (course, competency)
pairs an estimator gives a number for: Pearson correlation, mean bias (points), 90 % interval coverage, RMSE,
by the number of takers assessed twice (≥ 5, ≥ 30, ≥ 50). Projects also over every competency they are estimated
on (`all_competencies`: one they do not teach has a nil true effect). `correlation_vs_true_codes`: TDR's
correlation as a share of the same estimator's told the true course codes; `correlation_vs_linear_instrument`:
its share of the same estimator's reading the linear instrument.

Worlds may run in parallel processes (``--out`` elsewhere), then be gathered with ``--merge FILE…``.

Scale. ``--scale N``: a province of N teachers is generated and ingested, then ``tdr effects`` (measure growth,
write WS/effects, estimate courses and projects once, read the table) runs in a fresh process: seconds, CPU
seconds (and per teacher assessed twice), peak memory, and the estimation's own CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_predict

from bench.batch import Usage, isolated
from data.ingest import ingest
from data.reference import load_policy
from data.synthetic import WORLDS, generate, load_truth
from data.workspace import Workspace, write_text_atomic
from features.growth import course_teaches
from models.effects import LEVEL, estimate_effects
from models.encoder import Encoder
from recommender.batch import available_cores
from recommender.config import Settings
from recommender.effects import effect_recovery, measure_growth, province_effects, read_growth, unit_effects
from recommender.train import build_course_side, load_tables

RESULTS = Path(__file__).resolve().parent / "results" / "effects.json"
Z90 = 1.6448536269514722


def province(root: Path, world: str, teachers: int, seed: int) -> Workspace:
    """Generate and ingest a province of the world (reused when already there)."""
    src, ws_dir = root / f"{world}-{teachers}-{seed}", root / f"ws-{world}-{teachers}-{seed}"
    if not (src / "_truth" / "meta.json").exists():
        generate(src, n_teachers=teachers, seed=seed, world=world)  # type: ignore[arg-type]
    ws = Workspace.open(ws_dir)
    if not ws.has_table("responses"):
        ingest(src, ws)
    return ws


def _x(changes: pd.DataFrame) -> pd.DataFrame:
    years = (changes["post_date"] - changes["pre_date"]).dt.days / 365.25
    dummies = pd.get_dummies(changes[["stage", "subject"]].astype(str), dtype=np.float64)
    return pd.concat(
        [
            changes[["pre"]].reset_index(drop=True),
            years.rename("years").reset_index(drop=True),
            dummies.reset_index(drop=True),
        ],
        axis=1,
    )


def dml_plr(
    changes: pd.DataFrame, exposures: pd.DataFrame, teaches: pd.DataFrame, min_treated: int = 5
) -> pd.DataFrame:
    """Per (course, competency): DoubleML's partially linear estimate of the course's effect on post, with its
    cross-fitted nuisances (see the module docstring) and the usual sandwich standard error."""
    folds = KFold(5, shuffle=True, random_state=0)
    rows = []
    ex = exposures.assign(date=pd.to_datetime(exposures["date"]))
    for comp, ch in changes.groupby("competency", sort=True):
        units = teaches.loc[teaches["competency"] == comp, "unit_id"].unique()
        if not len(units) or len(ch) < 50:
            continue
        ch = ch.reset_index(drop=True)
        x = _x(ch).to_numpy()
        y = ch["post"].to_numpy(dtype=np.float64)
        y_hat = cross_val_predict(
            LGBMRegressor(n_estimators=100, learning_rate=0.1, num_leaves=15, n_jobs=1, verbose=-1),
            x,
            y,
            cv=folds,
        )
        y_res = y - y_hat
        pos = pd.Series(np.arange(len(ch)), index=ch["teacher_id"].astype(str))
        e = ex[ex["unit_id"].isin(units) & ex["teacher_id"].isin(pos.index)]
        r = pos.reindex(e["teacher_id"]).to_numpy()
        inside = (e["date"].to_numpy() > ch["pre_date"].to_numpy()[r]) & (
            e["date"].to_numpy() <= ch["post_date"].to_numpy()[r]
        )
        e = e[inside].assign(row=r[inside])
        for unit, taken in e.groupby("unit_id"):
            d = np.zeros(len(ch))
            d[taken["row"].unique()] = 1.0
            n = int(d.sum())
            if n < min_treated:
                continue
            d_hat = cross_val_predict(
                LogisticRegression(solver="newton-cholesky", C=1.0), x, d, cv=folds, method="predict_proba"
            )[:, 1]
            d_res = d - d_hat
            theta = float(np.sum(d_res * y_res) / np.sum(d_res**2))
            psi = (y_res - theta * d_res) * d_res
            se = float(np.sqrt(np.mean(psi**2)) / np.mean(d_res**2) / np.sqrt(len(d)))
            rows.append(
                {
                    "unit_id": unit,
                    "competency": comp,
                    "effect": theta,
                    "ci_low": theta - Z90 * se,
                    "ci_high": theta + Z90 * se,
                    "n_treated": n,
                    "known": True,
                }
            )
    return pd.DataFrame(
        rows, columns=["unit_id", "competency", "effect", "ci_low", "ci_high", "n_treated", "known"]
    )


def true_changes(truth_waves: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """The measured changes' teachers and competencies with the true competencies (display points) on the two
    wave days in place of the measurements, without error."""
    w1, w2 = truth_waves[truth_waves["wave"] == 1], truth_waves[truth_waves["wave"] == 2]
    both = w1.merge(w2, on=["teacher_id", "competency"], suffixes=("_1", "_2"))
    t = pd.DataFrame(
        {
            "teacher_id": both["teacher_id"].astype(str),
            "competency": both["competency"].astype(str),
            "pre": both["score_0_100_1"],
            "post": both["score_0_100_2"],
            "pre_se": 0.0,
            "post_se": 0.0,
            "pre_date": pd.to_datetime(both["taken_at_1"]),
            "post_date": pd.to_datetime(both["taken_at_2"]),
        }
    )
    keep = changes[["teacher_id", "competency", "stage", "subject"]]
    return t.merge(keep, on=["teacher_id", "competency"])


def linear_instrument(exact: pd.DataFrame, changes: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """`exact` (`true_changes`) read by a linear instrument as noisy as the real one: each true score plus
    normal noise of the standard error the real measurement of that teacher, competency and wave has."""
    se = exact[["teacher_id", "competency"]].merge(
        changes[["teacher_id", "competency", "pre_se", "post_se"]],
        on=["teacher_id", "competency"],
        how="left",
    )
    rng = np.random.default_rng(seed)
    pre_se, post_se = se["pre_se"].to_numpy(dtype=np.float64), se["post_se"].to_numpy(dtype=np.float64)
    return exact.assign(
        pre=exact["pre"].to_numpy(dtype=np.float64) + rng.standard_normal(len(exact)) * pre_se,
        post=exact["post"].to_numpy(dtype=np.float64) + rng.standard_normal(len(exact)) * post_se,
        pre_se=pre_se,
        post_se=post_se,
    )


# true-score bins (display points) of the instrument's reading curve
CURVE_BINS = (0.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 100.0)


def instrument_curve(exact: pd.DataFrame, measured: pd.DataFrame) -> list[dict[str, float]]:
    """How the instrument reads the truth: over the measured changes' pre and post scores pooled, by bin of the
    true score on that day (`exact`, `true_changes`), the mean true and the mean measured score, and the measured
    points per true point from the bin before (a linear instrument reads 1 everywhere)."""
    m = measured[["teacher_id", "competency", "pre", "post"]].merge(
        exact[["teacher_id", "competency", "pre", "post"]],
        on=["teacher_id", "competency"],
        suffixes=("", "_true"),
    )
    true = np.concatenate([m["pre_true"].to_numpy(), m["post_true"].to_numpy()])
    read = np.concatenate([m["pre"].to_numpy(), m["post"].to_numpy()])
    at = np.clip(np.searchsorted(CURVE_BINS, true, side="right") - 1, 0, len(CURVE_BINS) - 2)
    out: list[dict[str, float]] = []
    for b in np.unique(at):
        entry = {
            "true_from": CURVE_BINS[b],
            "n": int(np.sum(at == b)),
            "true_mean": round(float(true[at == b].mean()), 2),
            "measured_mean": round(float(read[at == b].mean()), 2),
        }
        if out:
            rise = entry["measured_mean"] - out[-1]["measured_mean"]
            entry["slope"] = round(rise / (entry["true_mean"] - out[-1]["true_mean"]), 2)
        out.append(entry)
    return out


def inferred_teaches(ws: Workspace) -> pd.DataFrame:
    """(unit_id, competency) of every course as a trained workspace has them (`competencies_used`: the
    catalogue's codes, inferred ones for an untagged course), built as `tdr train` builds them."""
    tables = load_tables(ws)
    settings = Settings()
    encoder = Encoder(
        settings.encoder_model, cache_dir=settings.model_cache, backend=settings.encoder_backend
    )
    subjects = sorted(tables.teachers["subject"].dropna().astype(str).unique())
    side = build_course_side(tables.courses, tables.taxonomy, encoder, load_policy(settings.policy), subjects)
    return course_teaches(side.courses.assign(competencies=side.courses["competencies_used"]))


def world_quality(ws: Workspace, src: Path, dml: bool = True) -> dict[str, Any]:
    start = time.perf_counter()
    reused = read_growth(ws)
    growth = reused or measure_growth(ws)
    measured_s = time.perf_counter() - start
    truth = load_truth(src)
    codes = truth.courses[["course_id", "competencies"]].explode("competencies").dropna()
    true_teaches = pd.DataFrame(
        {"unit_id": codes["course_id"].astype(str), "competency": codes["competencies"].astype(str)}
    )
    ch = growth.changes
    result: dict[str, Any] = {
        "teachers_assessed_twice": int(ch["teacher_id"].nunique()),
        "measure_seconds": None if reused else round(measured_s, 1),
        "courses": {},
        "projects": {},
    }
    for kind, truth_table, key in (
        ("course", truth.course_effects, "course_id"),
        ("project", truth.project_effects, "project_id"),
    ):
        ex = growth.exposures[growth.exposures["kind"] == kind]
        te = growth.teaches[growth.teaches["kind"] == kind]
        methods: dict[str, pd.DataFrame] = {}
        timing: dict[str, float] = {}
        # DML fits two cross-fitted models per (unit, competency): courses only (a project spans every competency)
        for name in (
            ("tdr", "ancova", "naive", "did", "dml_plr")
            if kind == "course" and dml
            else ("tdr", "ancova", "naive", "did")
        ):
            t0 = time.perf_counter()
            if name == "dml_plr":
                methods[name] = dml_plr(ch, ex, te)
            else:
                method = "adjusted" if name == "tdr" else name
                methods[name] = estimate_effects(ch, ex, te, method=method)  # type: ignore[arg-type]
            timing[name] = round(time.perf_counter() - t0, 1)
        if kind == "course":
            methods["tdr_precision"] = estimate_effects(ch, ex, te, weights="precision")
            methods["tdr_true_codes"] = estimate_effects(ch, ex, true_teaches)
            methods["tdr_inferred_codes"] = estimate_effects(ch, ex, inferred_teaches(ws))
            if truth.waves is not None:
                exact = true_changes(truth.waves, ch)
                result["instrument_curve"] = instrument_curve(exact, ch)
                methods["tdr_true_scores"] = estimate_effects(exact, ex, true_teaches)
                methods["tdr_error_free"] = estimate_effects(exact, ex, te)
                linear = linear_instrument(exact, ch)
                methods["tdr_linear_instrument"] = estimate_effects(linear, ex, te)
                methods["tdr_linear_instrument_precision"] = estimate_effects(
                    linear, ex, te, weights="precision"
                )
        else:
            methods["tdr_spike_slab"] = estimate_effects(ch, ex, te, prior="spike_slab")
        assert truth_table is not None
        result[f"{kind}s"] = {
            name: {
                **effect_recovery(e, truth_table, key),
                # a project is estimated on every competency: also on those it does not teach (true effect nil)
                **(
                    {"all_competencies": effect_recovery(e, truth_table, key, untaught_zero=True)}
                    if kind == "project"
                    else {}
                ),
                "seconds": timing.get(name),
            }
            for name, e in methods.items()
        }
    result["correlation_vs_true_codes"] = ceiling_ratio(result["courses"])
    result["correlation_vs_linear_instrument"] = ceiling_ratio(result["courses"], "tdr_linear_instrument")
    return result


def ceiling_ratio(courses: dict[str, Any], told: str = "tdr_true_codes") -> dict[str, float | None]:
    """TDR's correlation with the true course effects as a share of the estimator `told`'s, which knows more
    (the true course codes; or reads a linear instrument as noisy as the real one, as an estimator knowing the
    true item bank would come closer to): the outside check asks for ≥ 0.8. Per minimum number of takers."""
    out: dict[str, float | None] = {}
    for lo in ("takers_ge_30", "takers_ge_50"):
        mine = courses["tdr"][lo].get("correlation")
        theirs = courses.get(told, {}).get(lo, {}).get("correlation")
        out[lo] = round(mine / theirs, 3) if mine is not None and theirs else None
    return out


def _scale_run(ws_dir: str) -> dict[str, Any]:
    """What `tdr effects --workspace WS --out FILE` runs on a workspace not yet measured: measure growth (which
    estimates the province's effects once, for WS/effects/units.parquet) and read the table from there. Then,
    outside that measure, the estimation alone once more (`estimate_cpu_seconds`: its share of the CPU)."""
    ws = Workspace.open(ws_dir)
    start = time.perf_counter()
    with Usage(every=1.0).watch() as usage:
        growth = measure_growth(ws)
        table = province_effects(ws, growth)
    seconds = time.perf_counter() - start
    cpu = time.process_time()
    unit_effects(growth)
    estimate_cpu = time.process_time() - cpu
    twice = int(growth.changes["teacher_id"].nunique())
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(usage.cpu_seconds, 1),
        "cpu_ms_per_teacher_assessed_twice": round(1000 * usage.cpu_seconds / max(twice, 1), 1),
        "estimate_cpu_seconds": round(estimate_cpu, 1),
        "peak_pss_mb": round(usage.peak_mb),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "teachers_assessed_twice": twice,
        "rows": int(len(table)),
        "rows_with_a_number": int(table["known"].sum()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tdr-bench-effects"))
    parser.add_argument("--worlds", nargs="*", default=list(WORLDS), choices=WORLDS)
    parser.add_argument("--teachers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--scale", type=int, nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-dml", action="store_true", help="leave out the DML estimator (the slowest)")
    parser.add_argument(
        "--merge", type=Path, nargs="*", default=[], help="results of runs made beside this one, to include"
    )
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "machine": {
            "cpus": available_cores(),
            "python": platform.python_version(),
            "load_average_1m_at_start": os.getloadavg()[0],
        },
        "teachers": args.teachers,
        "seed": args.seed,
        "level": LEVEL,
        "worlds": {},
        "scale": [],
    }
    for path in args.merge:
        other = json.loads(path.read_text(encoding="utf-8"))
        result["worlds"].update(other.get("worlds", {}))
        result["scale"].extend(other.get("scale", []))
    for world in args.worlds:
        ws = province(args.workdir, world, args.teachers, args.seed)
        src = args.workdir / f"{world}-{args.teachers}-{args.seed}"
        result["worlds"][world] = world_quality(ws, src, dml=not args.no_dml)
        print(json.dumps({world: result["worlds"][world]}, ensure_ascii=False))
    for n in args.scale:
        t0 = time.perf_counter()
        ws = province(args.workdir, "mixed", n, args.seed)
        entry = {"teachers": n, "generate_and_ingest_seconds": round(time.perf_counter() - t0, 1)}
        entry.update(isolated(_scale_run, str(ws.root)))
        result["scale"].append(entry)
        print(json.dumps(entry))
    write_text_atomic(args.out, json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
