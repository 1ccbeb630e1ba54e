"""Cognitive-diagnosis benchmark (真实作答数据, 稀疏题库): held-out response prediction on any folder in the common
CD format, TDR's diagnostic model beside a plain 2PL and the item mean, fitted in one process.

    python -m bench.cdm [DIR] [--json] [--variant dense|sparse|both]

DIR holds ``train.csv``, ``valid.csv``, ``test.csv`` (user_id,item_id,score) and ``item.csv`` (item_id,
knowledge_code as a list such as ``"[4, 69]"``); ids are arbitrary. Default DIR: ../shared/benchmarks/assist2017
(read from there, never copied). Protocol of its README: fit on train, choose every setting on valid by AUC, report
on test. Both IRT models are ``models.irt.MIRT`` and get the same settings grid (the precisions of the loadings'
and intercepts' priors around their skills' means; for the 2PL the one "skill" is the whole bank), so the only
difference is the Q-matrix: TDR's model is the bifactor MIRT (a general dimension every item loads on plus one
correlated dimension per skill, intercepts shrunk toward their skills' means; the skills' correlations of rank 1
plus each skill's own variance), the 2PL has the one dimension. ``directions`` refits TDR's model at its chosen
setting with each ingredient changed (correlations of full rank, as before, and of rank 4; no general factor;
the old weak intercept prior) to show, on valid and test and in CPU seconds, what each one brings.

Both IRT models stop by the same rule (an EM iteration raises the bound by less than ``tol`` per response);
``early_stop`` refits each chosen model with EM stopped after 2, 4, 8 and 12 iterations, to show what the later
iterations buy and at what CPU cost.

Fit cost: each model's fit at its chosen setting is repeated ``REPEATS`` times, the two models alternating
(``fit_cpu_s_repeats``, ``fit_s_repeats``), and ``fit_cpu_ratio_to_2pl`` / ``fit_wall_ratio_to_2pl`` are the ratios
of their medians: on a shared machine one fit's CPU seconds move by ±20 %, and the first fits of a process pay for
fresh memory. These fits run without the memory tracer (`measured`), which adds more to a short fit than to a long
one and so pulls the ratio towards 1. ``fit_cpu_s`` and ``peak_mb`` are the grid fit's, traced.

The sparse variant keeps, with a fixed seed, at most 10 training responses per item (valid and test unchanged):
the exposure of a growing provincial bank.

Calibration of the standard errors: the test responses of one person on items of one skill pattern (groups of at
least ``MIN_GROUP``) are summed; z = (observed - predicted) / predictive SD, the SD combining the answers' own
Bernoulli variance with the shared uncertainty of the person's competencies. Calibrated: SD(z) = 1 and 95 % of
|z| <= 1.96. Reported with the items' calibration error in the person's SEs (TDR's default) and without.

Writes ``bench/results/cdm_<DIR name>.json`` (and ``cdm_<DIR name>_sparse.json``); with ``--json`` prints one
object keyed by model (``tdr``, ``2pl``, ``item_mean``; the sparse variant's under ``sparse``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.metrics import log_loss, roc_auc_score

from bench import shared_benchmarks
from data.workspace import write_text_atomic
from models.irt import MIRT

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DATA = shared_benchmarks() / "assist2017"
RESULTS = Path(__file__).resolve().parent / "results"
SPARSE_KEEP = 10
SPARSE_SEED = 0
MIN_GROUP = 5
# fits of each chosen model, alternating, whose median CPU seconds give the fit-cost ratio
REPEATS = 3
Z95 = 1.959964
# the settings both IRT models are tried with on valid
GRID: dict[str, tuple[Any, ...]] = {"item_l2": (1.0, 10.0), "intercept_l2": (0.25, 1.0)}
FIXED: dict[str, Any] = {"tol": 5e-4, "max_iter": 200, "random_state": 0}
# the skills' correlations of rank 1 (a common factor) plus each skill's own part: each student's posterior is then
# an arrow of 2 shared coordinates and a diagonal (`models.irt_persons.Arrow`), not a system over the skills answered
TDR = {"general_factor": True, "corr_rank": 1}
# TDR's model also chooses whether the skill dimensions correlate (a few hundred persons cannot estimate 100 x 100
# correlations; thousands can)
TDR_GRID = GRID | {"covariance": ("estimate", "identity")}
# EM stopped early at these iterations (the chosen setting of each model): what the later iterations buy
TRACE_ITERATIONS = (2, 4, 8, 12)
# TDR's model without one ingredient each (at its chosen setting)
DIRECTIONS: dict[str, dict[str, Any]] = {
    "full_rank_correlations": {"corr_rank": None},
    "rank_4_correlations": {"corr_rank": 4},
    "without_general_factor": {"general_factor": False},
    "weak_intercept_prior": {"intercept_l2": 0.01},
}


@dataclass(frozen=True)
class Split:
    person: IntArray
    item: IntArray
    score: FloatArray


@dataclass(frozen=True)
class Bank:
    """A CD-format folder with ids mapped to 0-based positions."""

    name: str
    q: NDArray[np.bool_]
    n_persons: int
    train: Split
    valid: Split
    test: Split


def _codes(text: str, row: int, path: Path) -> list[str]:
    try:
        value = json.loads(str(text))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: row {row}, column knowledge_code: not a list ({text!r})") from err
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError(f"{path}: row {row}, column knowledge_code: empty list")
    return [str(v) for v in values]


def load(folder: Path) -> Bank:
    """Read the folder; items must all be in item.csv and scores in [0, 1]."""
    items = pd.read_csv(folder / "item.csv", dtype={"item_id": str, "knowledge_code": str})
    codes = [_codes(t, i + 2, folder / "item.csv") for i, t in enumerate(items["knowledge_code"])]
    skills = sorted({c for row in codes for c in row})
    skill_pos = {c: k for k, c in enumerate(skills)}
    item_pos = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    if item_pos.index.duplicated().any():
        raise ValueError(f"{folder / 'item.csv'}: duplicate item_id")
    q = np.zeros((len(items), len(skills)), dtype=bool)
    for j, row in enumerate(codes):
        q[j, [skill_pos[c] for c in row]] = True
    frames = {
        part: pd.read_csv(folder / f"{part}.csv", dtype={"user_id": str, "item_id": str})
        for part in ("train", "valid", "test")
    }
    users = pd.Index(sorted(set().union(*(set(f["user_id"]) for f in frames.values()))))

    def encode(part: str) -> Split:
        frame = frames[part]
        pos = frame["item_id"].map(item_pos)
        if pos.isna().any():
            row = int(np.flatnonzero(pos.isna().to_numpy())[0]) + 2
            raise ValueError(f"{folder / (part + '.csv')}: row {row}, column item_id: not in item.csv")
        score = frame["score"].to_numpy(dtype=np.float64)
        bad = ~((score >= 0.0) & (score <= 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 2
            raise ValueError(f"{folder / (part + '.csv')}: row {row}, column score: not in [0, 1]")
        person = users.get_indexer(frame["user_id"]).astype(np.int64)
        return Split(person, pos.to_numpy(dtype=np.int64), score)

    return Bank(folder.name, q, len(users), encode("train"), encode("valid"), encode("test"))


def sparse(bank: Bank, keep: int = SPARSE_KEEP, seed: int = SPARSE_SEED) -> Bank:
    """The bank with at most `keep` training responses per item, drawn with a fixed seed."""
    order = np.random.default_rng(seed).permutation(len(bank.train.item))
    order = order[np.argsort(bank.train.item[order], kind="stable")]
    sorted_items = bank.train.item[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_items, sorted_items)
    kept = np.sort(order[rank < keep])
    t = bank.train
    return replace(bank, name=f"{bank.name}_sparse", train=Split(t.person[kept], t.item[kept], t.score[kept]))


def metrics(truth: FloatArray, pred: FloatArray) -> dict[str, float]:
    right = truth >= 0.5
    return {
        "auc": round(float(roc_auc_score(right, pred)), 4),
        "acc": round(float(np.mean((pred >= 0.5) == right)), 4),
        "rmse": round(float(np.sqrt(np.mean((pred - truth) ** 2))), 4),
        "logloss": round(float(log_loss(right, np.clip(pred, 1e-7, 1 - 1e-7), labels=[False, True])), 4),
    }


def measured(fit: Callable[[], Any], trace_memory: bool = True) -> tuple[Any, dict[str, float]]:
    """What `fit` returns, with its wall-clock and CPU seconds and, with ``trace_memory``, its peak of traced (numpy
    and Python) memory.

    CPU seconds are the comparable figure on a shared machine (the models run on one BLAS thread). The memory
    tracer charges every allocation (measured on ASSIST2017's sparse variant: +0.05 s on TDR's 0.23 s fit, +0.03 s
    on the 2PL's 0.06 s), so the fits that time the models run without it."""
    if trace_memory:
        tracemalloc.start()
    start, cpu = time.perf_counter(), time.process_time()
    out = fit()
    cost = {"fit_s": round(time.perf_counter() - start, 3), "fit_cpu_s": round(time.process_time() - cpu, 3)}
    if not trace_memory:
        return out, cost
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, cost | {"peak_mb": round(peak / 2**20, 1)}


def item_mean(bank: Bank) -> dict[str, Any]:
    def fit() -> FloatArray:
        n_items = len(bank.q)
        t = bank.train
        counts = np.bincount(t.item, minlength=n_items)
        sums = np.bincount(t.item, t.score, minlength=n_items)
        return np.where(counts > 0, sums / np.maximum(counts, 1), t.score.mean())

    means, cost = measured(fit)
    return metrics(bank.test.score, means[bank.test.item]) | cost


def z_calibration(model: MIRT, bank: Bank, with_item_error: bool) -> dict[str, float]:
    """Spread of the z-scores of held-out response sums per (person, skill pattern) group."""
    scorer = copy.copy(model)
    scorer.calibration_error = with_item_error
    t = bank.train
    post = scorer.posterior_long(t.person, t.item, t.score, bank.n_persons)
    person, item, y = bank.test.person, bank.test.item, bank.test.score
    p = scorer.predict_proba(person, item, post)
    slope = p * (1.0 - p)
    _, pattern = np.unique(model.pattern_, axis=0, return_inverse=True)
    _, group = np.unique(person * (pattern.max() + 1) + pattern[item], return_inverse=True)
    n_groups = int(group.max()) + 1
    a = model.a_[item]
    g = np.zeros((n_groups, a.shape[1]))
    np.add.at(g, group, slope[:, None] * a)
    owner = np.zeros(n_groups, dtype=np.int64)
    owner[group] = person
    r, c = model.pairs_[:, 0], model.pairs_[:, 1]
    twice = np.where(r == c, 1.0, 2.0)

    def quad(v: FloatArray, cov: FloatArray) -> FloatArray:
        return np.asarray(np.einsum("oq,oq->o", twice * v[:, r] * v[:, c], cov), dtype=np.float64)

    own = slope**2 * quad(a, post.pair_cov[person])
    bernoulli = np.bincount(group, p * (1.0 - p), minlength=n_groups)
    shared = quad(g, post.pair_cov[owner]) - np.bincount(group, own, minlength=n_groups)
    # the linearised covariance of the predictions can undercut the answers' own variance for a badly fitted
    # model (loadings of opposite signs): never below a quarter of it
    var = np.maximum(bernoulli + shared, 0.25 * bernoulli)
    size = np.bincount(group, minlength=n_groups)
    z = (np.bincount(group, y - p, minlength=n_groups) / np.sqrt(var))[size >= MIN_GROUP]
    return {
        "groups": int(len(z)),
        "coverage_95": round(float(np.mean(np.abs(z) <= Z95)), 4),
        "sd_z": round(float(np.std(z)), 4),
    }


def fit_scored(
    bank: Bank, q: NDArray[np.bool_], config: dict[str, Any], trace_memory: bool = True
) -> tuple[MIRT, dict[str, Any]]:
    """One model fitted on train: its valid metrics, fit seconds, peak memory (where traced) and iterations."""
    t = bank.train
    model, cost = measured(
        lambda: MIRT(**(FIXED | config)).fit_long(t.person, t.item, t.score, bank.n_persons, q), trace_memory
    )
    valid = metrics(bank.valid.score, model.predict_proba(bank.valid.person, bank.valid.item))
    row = {"valid_" + k: v for k, v in valid.items()} | cost
    steps = np.diff(model.objective_) / abs(model.objective_[-1])
    row |= {"iterations": int(model.n_iter_), "converged": bool(model.converged_)}
    # the largest fall of the monitored bound in one EM iteration, relative (0: it never fell)
    return model, row | {"bound_largest_fall": float(max(0.0, -steps.min(initial=0.0)))}


def test_metrics(model: MIRT, bank: Bank) -> dict[str, float]:
    return metrics(bank.test.score, model.predict_proba(bank.test.person, bank.test.item))


def early_stops(
    bank: Bank, q: NDArray[np.bool_], config: dict[str, Any], converged_at: int
) -> list[dict[str, Any]]:
    """The model refitted with EM stopped after each of TRACE_ITERATIONS (those below where it converged):
    valid and test AUC and fit CPU seconds, to show whether the later iterations buy accuracy."""
    rows = []
    for stop in (n for n in TRACE_ITERATIONS if n < converged_at):
        model, row = fit_scored(bank, q, config | {"max_iter": stop}, trace_memory=False)
        rows.append(
            {"iterations": stop, "valid_auc": row["valid_auc"], "auc": test_metrics(model, bank)["auc"]}
        )
        rows[-1]["fit_cpu_s"] = row["fit_cpu_s"]
    return rows


def irt(
    bank: Bank,
    q: NDArray[np.bool_],
    base: dict[str, Any],
    grid: dict[str, tuple[Any, ...]],
    directions: bool = False,
) -> dict[str, Any]:
    """Every grid setting fitted on train and scored on valid; the best by valid AUC scored on test."""
    tried: list[dict[str, Any]] = []
    best: tuple[MIRT, dict[str, Any]] | None = None
    for values in itertools.product(*grid.values()):
        config = dict(zip(grid, values, strict=True))
        model, row = fit_scored(bank, q, base | config)
        tried.append(config | row)
        if best is None or row["valid_auc"] > best[1]["valid_auc"]:
            best = (model, config | row)
    assert best is not None
    model, row = best
    chosen = {key: row[key] for key in grid}
    out = (
        test_metrics(model, bank)
        | {key: row[key] for key in ("fit_s", "fit_cpu_s", "peak_mb", "iterations", "converged", "valid_auc")}
        | {"config": base | chosen}
        | {"se_calibration": z_calibration(model, bank, True)}
        | {"se_calibration_without_item_error": z_calibration(model, bank, False)}
        | {"validation": tried}
    )
    out["early_stop"] = early_stops(bank, q, base | chosen, row["iterations"])
    if directions:
        out["directions"] = {}
        for name, change in DIRECTIONS.items():
            other, other_row = fit_scored(bank, q, base | chosen | change, trace_memory=False)
            out["directions"][name] = {"config": change, "valid_auc": other_row["valid_auc"]}
            out["directions"][name] |= test_metrics(other, bank)
            out["directions"][name] |= {
                key: other_row[key] for key in ("fit_cpu_s", "iterations", "bound_largest_fall")
            }
    return out


def repeated_fits(bank: Bank, models: dict[str, tuple[NDArray[np.bool_], dict[str, Any]]]) -> dict[str, Any]:
    """Each model refitted REPEATS times at its setting, the models alternating: CPU and wall seconds per fit."""
    t = bank.train
    times: dict[str, dict[str, list[float]]] = {name: {"fit_cpu_s": [], "fit_s": []} for name in models}
    for _ in range(REPEATS):
        for name, (q, config) in models.items():
            _, cost = measured(
                lambda q=q, config=config: MIRT(**(FIXED | config)).fit_long(
                    t.person, t.item, t.score, bank.n_persons, q
                ),
                trace_memory=False,
            )
            for key in ("fit_cpu_s", "fit_s"):
                times[name][key].append(cost[key])
    return times


def run(bank: Bank, with_directions: bool) -> dict[str, Any]:
    one = np.ones((len(bank.q), 1), dtype=bool)
    out = {
        "item_mean": item_mean(bank),
        "2pl": irt(bank, one, {}, GRID),
        "tdr": irt(bank, bank.q, TDR, TDR_GRID, directions=with_directions),
    }
    times = repeated_fits(bank, {"2pl": (one, out["2pl"]["config"]), "tdr": (bank.q, out["tdr"]["config"])})
    for name, spent in times.items():
        out[name] |= {f"{key}_repeats": values for key, values in spent.items()}
    # CPU is the comparable figure on a shared machine; wall time, measured in the same fits, beside it
    for cost, key in (("fit_cpu_s", "fit_cpu_ratio_to_2pl"), ("fit_s", "fit_wall_ratio_to_2pl")):
        mine, theirs = (float(np.median(times[name][cost])) for name in ("tdr", "2pl"))
        out["tdr"][key] = round(mine / max(theirs, 1e-9), 2)
    # the single refits below (early stops, directions; untraced too) against the 2PL's median fit
    baseline = float(np.median(times["2pl"]["fit_cpu_s"]))
    for row in [*out["tdr"]["early_stop"], *out["tdr"].get("directions", {}).values()]:
        row["fit_cpu_ratio_to_2pl"] = round(row["fit_cpu_s"] / max(baseline, 1e-9), 2)
    out["bank"] = {
        "name": bank.name,
        "persons": bank.n_persons,
        "items": int(len(bank.q)),
        "skills": int(bank.q.shape[1]),
        "train_rows": int(len(bank.train.item)),
        "items_unseen_in_train": int(len(bank.q) - len(np.unique(bank.train.item))),
        "test_rows": int(len(bank.test.item)),
    }
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "| model | test AUC | ACC | RMSE | logloss | fit CPU s | peak MB | SE 95 % coverage / SD(z) |",
        "|" + "---|" * 8,
    ]
    for key in ("item_mean", "2pl", "tdr"):
        r = results[key]
        cal = r.get("se_calibration")
        shown = f"{cal['coverage_95']:.3f} / {cal['sd_z']:.2f}" if cal else "–"
        lines.append(
            f"| {key} | {r['auc']:.4f} | {r['acc']:.4f} | {r['rmse']:.4f} | {r['logloss']:.4f} | {r['fit_cpu_s']} "
            f"| {r['peak_mb']} | {shown} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", nargs="?", type=Path, default=DATA)
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by model")
    parser.add_argument("--variant", choices=("dense", "sparse", "both"), default="both")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-directions", action="store_true", help="skip the ablations of TDR's model")
    args = parser.parse_args()
    bank = load(args.folder)
    variants = {"dense": bank, "sparse": sparse(bank)}
    chosen = ("dense", "sparse") if args.variant == "both" else (args.variant,)
    printed: dict[str, Any] = {}
    for variant in chosen:
        data = variants[variant]
        start = time.perf_counter()
        results = run(data, not args.no_directions)
        results["protocol"] = (
            "fit on train, settings chosen on valid by AUC, scored on test; sparse: at most "
            f"{SPARSE_KEEP} training responses per item (seed {SPARSE_SEED})"
            if variant == "sparse"
            else "fit on train, settings chosen on valid by AUC, scored on test"
        )
        results["grid"] = {key: list(values) for key, values in GRID.items()}
        results["tdr_grid"] = {key: list(values) for key, values in TDR_GRID.items()}
        results["fixed"] = FIXED
        results["wall_s"] = round(time.perf_counter() - start, 1)
        results["machine"] = {
            "python": platform.python_version(),
            "processor": platform.processor() or None,
            # the fit-time ratio moves with the machine's load (README): the load average after the run
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        path = args.out / f"cdm_{data.name}.json"
        write_text_atomic(path, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        if variant == "dense" or len(chosen) == 1:
            printed |= results
        else:
            printed["sparse"] = results
        if not args.json:
            print(f"## {data.name}\n{table(results)}\nwrote {path}")
    if args.json:
        print(json.dumps(printed, ensure_ascii=False))


if __name__ == "__main__":
    main()
