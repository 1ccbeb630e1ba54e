"""MOOCCubeX benchmark (真实选课数据): TDR's collaborative LambdaRank ranker against popularity, item-kNN and
implicit ALS on real XuetangX enrolments, full ranking of every course a user has not taken, all users.

Run ``python -m bench.mooccubex`` from the repository root; it writes ``bench/results/mooccubex.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import psutil
import scipy.sparse as sp

from data.workspace import write_text_atomic
from models.collab import (
    FloatArray,
    ImplicitALS,
    IntArray,
    Interactions,
    ItemKNN,
    Popularity,
    Transition,
    mask_seen,
    top_n,
)

DEFAULT_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "mooccubex" / "raw.zip"
RESULTS = Path(__file__).resolve().parent / "results" / "mooccubex.json"
K = 10
THREADS = 2


@dataclass(frozen=True)
class MoocData:
    """Enrolments in compact item indices; ``test`` is each user's held-out course (-1: never seen in training)."""

    log: Interactions
    test: IntArray
    item_ids: IntArray
    concepts: sp.csr_matrix
    dropped_truncated_tail: bool


@dataclass(frozen=True)
class RankerConfig:
    """Settings of the base scorers, the candidate generator and the LambdaRank model."""

    knn_k: int = 100
    recency_decay: float = 0.7
    transition_window: int = 3
    last_items: int = 3
    last_decay: float = 0.5
    als_factors: int = 128
    als_regularization: float = 1.0
    als_alpha: float = 20.0
    als_iterations: int = 10
    rank_cap: int = 200
    candidates: int = 150
    train_users: int = 30_000
    valid_users: int = 5_000
    negatives: int = 60
    num_leaves: int = 63
    learning_rate: float = 0.05
    n_estimators: int = 600
    early_stopping: int = 40
    block: int = 4096


def _parse_pairs(text: str) -> IntArray:
    return np.asarray(text.split(), dtype=np.int64)


def parse_mooccubex(train_txt: str, test_txt: str, kg_txt: str = "") -> MoocData:
    """Build the benchmark data from the three text files of the archive.

    In the archive as published, every train.txt line ends with its user's test course minus its last digit
    (``… 254`` where test.txt holds ``2542``): a truncated copy of the label, not an enrolment. When (nearly)
    every line shows it, that trailing token is dropped for all users and the fact is reported.
    """
    users: list[int] = []
    seqs: list[IntArray] = []
    for line in train_txt.splitlines():
        parts = line.split()
        if len(parts) > 1:
            users.append(int(parts[0]))
            seqs.append(np.asarray(parts[1:], dtype=np.int64))
    pairs = _parse_pairs(test_txt).reshape(-1, 2)
    n_users = max(max(users, default=-1), int(pairs[:, 0].max(initial=-1))) + 1
    test_raw = np.full(n_users, -1, dtype=np.int64)
    test_raw[pairs[:, 0]] = pairs[:, 1]
    tails = np.array([s[-1] for s in seqs], dtype=np.int64)
    truth = test_raw[np.asarray(users, dtype=np.int64)]
    truncated = (truth >= 10) & (truth // 10 == tails)
    drop = bool(seqs) and bool(truncated.mean() > 0.99)
    if drop:
        seqs = [s[:-1] for s in seqs]
    lengths = np.array([s.size for s in seqs], dtype=np.int64)
    u = np.repeat(np.asarray(users, dtype=np.int64), lengths)
    raw_items = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    order = np.arange(raw_items.size) - starts
    item_ids, items = np.unique(raw_items, return_inverse=True)
    log = Interactions.from_arrays(u, items, order, n_users, item_ids.size)
    return MoocData(log, _to_compact(test_raw, item_ids), item_ids, _concepts(kg_txt, item_ids), drop)


def _to_compact(raw: IntArray, item_ids: IntArray) -> IntArray:
    pos = np.searchsorted(item_ids, raw).clip(0, max(item_ids.size - 1, 0))
    known = (raw >= 0) & (item_ids.size > 0) & (item_ids[pos] == raw)
    return np.where(known, pos, -1).astype(np.int64)


def _concepts(kg_txt: str, item_ids: IntArray) -> sp.csr_matrix:
    """Courses × knowledge-graph entities they point to (any relation), in compact course indices."""
    triples = _parse_pairs(kg_txt).reshape(-1, 3)
    head = _to_compact(triples[:, 0], item_ids)
    keep = head >= 0
    tails, tail_idx = np.unique(triples[keep, 2], return_inverse=True)
    m = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (head[keep], tail_idx)), shape=(item_ids.size, tails.size)
    )
    m.data[:] = 1.0
    return m


def load_mooccubex(zip_path: Path) -> MoocData:
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        kg = z.read("kg_final.txt").decode() if "kg_final.txt" in names else ""
        return parse_mooccubex(z.read("train.txt").decode(), z.read("test.txt").decode(), kg)


def target_rank(scores: FloatArray, target: IntArray, tie_order: IntArray) -> IntArray:
    """0-based position of each row's target in a full ranking; ties fall in a fixed random order.

    A target of -1 (a course no model can know) gets the number of items: always a miss.
    """
    rows = np.arange(scores.shape[0])
    t = np.maximum(target, 0)
    ts = scores[rows, t][:, None]
    ahead = (scores > ts) | ((scores == ts) & (tie_order[None, :] < tie_order[t][:, None]))
    rank = ahead.sum(axis=1)
    return np.where((target >= 0) & np.isfinite(ts[:, 0]), rank, scores.shape[1]).astype(np.int64)


def hit_ndcg(rank: IntArray, k: int = K) -> tuple[FloatArray, FloatArray]:
    """Per-user HR@k and NDCG@k from the 0-based rank of the single held-out item."""
    hit = rank < k
    ndcg = np.where(hit, 1.0 / np.log2(np.minimum(rank, k) + 2.0), 0.0)
    return hit.astype(np.float32), ndcg.astype(np.float32)


@dataclass
class Scorers:
    """The base scorers fitted on one log, and the history views each one reads."""

    log: Interactions
    history: sp.csr_matrix
    recent: sp.csr_matrix
    last: sp.csr_matrix
    latest: sp.csr_matrix
    popularity: Popularity
    latest_popularity: Popularity
    knn: ItemKNN
    transition: Transition
    bigram: Transition
    als: ImplicitALS
    concept: ItemKNN
    lengths: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.history.getnnz(axis=1), dtype=np.float32)


SCORER_NAMES = (
    "knn",
    "recent_knn",
    "transition",
    "bigram",
    "als",
    "concept",
    "popularity",
    "latest_popularity",
)


def fit_scorers(log: Interactions, concepts: sp.csr_matrix, cfg: RankerConfig, seed: int) -> Scorers:
    history = log.matrix()
    steps = log.steps_from_end()
    # positions count back from each user's latest course, so a "recent" course means recent for that user
    by_recency = Interactions(log.users, log.items, -steps.astype(np.float64), log.n_users, log.n_items)
    concept_users = sp.csr_matrix(concepts.T)
    return Scorers(
        log=log,
        history=history,
        recent=log.recency_matrix(cfg.recency_decay),
        last=log.recency_matrix(cfg.last_decay, last=cfg.last_items),
        latest=log.recency_matrix(1.0, last=1),
        popularity=Popularity().fit(log),
        latest_popularity=Popularity(half_life=1.0).fit(by_recency),
        knn=ItemKNN(k=cfg.knn_k).fit(history),
        transition=Transition(window=cfg.transition_window).fit(log),
        bigram=Transition(window=1).fit(log),
        als=ImplicitALS(
            factors=cfg.als_factors,
            regularization=cfg.als_regularization,
            alpha=cfg.als_alpha,
            iterations=cfg.als_iterations,
            random_state=seed,
            num_threads=THREADS,
        ).fit(history),
        concept=ItemKNN(k=cfg.knn_k).fit(concept_users),
    )


def score_block(s: Scorers, users: IntArray) -> dict[str, FloatArray]:
    """Dense (users × items) scores of every base scorer, items already taken set to -inf."""
    h = s.history[users]
    raw = {
        "knn": s.knn.score(h),
        "recent_knn": s.knn.score(s.recent[users]),
        "transition": s.transition.score(s.last[users]),
        "bigram": s.bigram.score(s.latest[users]),
        "als": s.als.score(h),
        "concept": s.concept.score(h),
        "popularity": s.popularity.score(users.size),
        "latest_popularity": s.latest_popularity.score(users.size),
    }
    return {name: mask_seen(v.astype(np.float32, copy=False), h) for name, v in raw.items()}


def candidate_block(
    scores: dict[str, FloatArray], cfg: RankerConfig
) -> tuple[IntArray, dict[str, FloatArray]]:
    """Top candidates by reciprocal-rank fusion of the base scorers, and each scorer's capped rank of every item."""
    n_rows, n_items = next(iter(scores.values())).shape
    cap = min(cfg.rank_cap, n_items)
    ranks: dict[str, FloatArray] = {}
    fused = np.zeros((n_rows, n_items), np.float32)
    rows = np.arange(n_rows)[:, None]
    for name, v in scores.items():
        r = np.full((n_rows, n_items), cap, np.float32)
        r[rows, top_n(v, cap)] = np.arange(cap, dtype=np.float32)[None, :]
        r[~np.isfinite(v)] = cap
        ranks[name] = r
        fused += 1.0 / (60.0 + r)
    seen = ~np.isfinite(scores["popularity"])
    fused[seen] = -np.inf
    return top_n(fused, min(cfg.candidates, n_items)), ranks


def pair_features(
    scores: dict[str, FloatArray], ranks: dict[str, FloatArray], cand: IntArray, lengths: FloatArray
) -> FloatArray:
    """(users, candidates, features): each scorer's score, score over the user's best, and capped rank."""
    cols: list[FloatArray] = []
    for name in SCORER_NAMES:
        v = scores[name]
        finite_max = np.where(np.isfinite(v), v, -np.inf).max(axis=1, keepdims=True)
        s = np.take_along_axis(v, cand, axis=1)
        s = np.where(np.isfinite(s), s, 0.0)
        scale = np.where(finite_max > 0, finite_max, 1.0)
        cols += [s, s / scale, np.take_along_axis(ranks[name], cand, axis=1)]
    in_top = sum((np.take_along_axis(ranks[n], cand, axis=1) < 20).astype(np.float32) for n in SCORER_NAMES)
    cols += [np.broadcast_to(lengths[:, None], cand.shape), in_top]
    return np.stack(cols, axis=2).astype(np.float32)


FEATURE_NAMES = [f"{n}_{kind}" for n in SCORER_NAMES for kind in ("score", "relative", "rank")] + [
    "history_length",
    "top20_votes",
]


def _blocks(users: IntArray, size: int) -> Iterator[IntArray]:
    for start in range(0, users.size, size):
        yield users[start : start + size]


def _ranker_rows(
    s: Scorers, users: IntArray, label: IntArray, cfg: RankerConfig, rng: np.random.Generator, sample: bool
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Features, 0/1 labels and group sizes for users whose held-out course is among their candidates."""
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    groups: list[IntArray] = []
    for b in _blocks(users, cfg.block):
        scores = score_block(s, b)
        cand, ranks = candidate_block(scores, cfg)
        y = (cand == label[b][:, None]).astype(np.float32)
        found = y.any(axis=1)
        if sample:
            # the positive plus a random subset of the negatives keeps the training set small
            keys = rng.random(cand.shape) + 2.0 * y
            keep = np.sort(np.argsort(-keys, axis=1)[:, : min(cfg.negatives + 1, cand.shape[1])], axis=1)
        else:
            keep = np.broadcast_to(np.arange(cand.shape[1]), cand.shape)
        cand, y = np.take_along_axis(cand, keep, 1)[found], np.take_along_axis(y, keep, 1)[found]
        feats = pair_features(
            {k: v[found] for k, v in scores.items()},
            {k: v[found] for k, v in ranks.items()},
            cand,
            s.lengths[b][found],
        )
        xs.append(feats.reshape(-1, feats.shape[2]))
        ys.append(y.ravel())
        groups.append(np.full(int(found.sum()), cand.shape[1], np.int64))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)


def train_ranker(data: MoocData, cfg: RankerConfig, seed: int) -> tuple[lgb.LGBMRanker, dict[str, float]]:
    """Fit LambdaRank on a split carved from training: each user's latest training course is the label."""
    history, held = data.log.split_last()
    s = fit_scorers(history, data.concepts, cfg, seed)
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero((held >= 0) & (s.lengths > 0))
    n_valid = max(1, min(cfg.valid_users, eligible.size // 5))
    picked = rng.permutation(eligible)[: cfg.train_users + n_valid]
    fit_users, valid_users = np.sort(picked[n_valid:]), np.sort(picked[:n_valid])
    x, y, g = _ranker_rows(s, fit_users, held, cfg, rng, sample=True)
    xv, yv, gv = _ranker_rows(s, valid_users, held, cfg, rng, sample=False)
    ranker = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=cfg.n_estimators,
        learning_rate=cfg.learning_rate,
        num_leaves=cfg.num_leaves,
        min_child_samples=50,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        n_jobs=THREADS,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    ranker.fit(
        x,
        y,
        group=g,
        eval_X=(xv,),
        eval_y=(yv,),
        eval_group=[gv],
        eval_at=[K],
        feature_name=FEATURE_NAMES,
        callbacks=[lgb.early_stopping(cfg.early_stopping, verbose=False)],
    )
    info = {
        "train_users": int(g.size),
        "train_rows": int(y.size),
        "valid_users": int(gv.size),
        "best_iteration": int(ranker.best_iteration_),
        "valid_ndcg_at_10_found_only": float(ranker.best_score_["valid_0"][f"ndcg@{K}"]),
    }
    return ranker, info


def evaluate_all(
    data: MoocData, ranker: lgb.LGBMRanker, users: IntArray, cfg: RankerConfig, seed: int
) -> dict[str, dict[str, float]]:
    """HR@10 / NDCG@10 on the test courses for the ranker and the baselines, scored in user blocks."""
    s = fit_scorers(data.log, data.concepts, cfg, seed)
    tie_order = np.random.default_rng(seed).permutation(data.log.n_items)
    methods = ("popularity", "item_knn", "implicit_als", "tdr_ranker")
    sums = {m: np.zeros(2) for m in methods}
    recall = 0.0
    for b in _blocks(users, cfg.block):
        scores = score_block(s, b)
        cand, ranks = candidate_block(scores, cfg)
        target = data.test[b]
        recall += float((cand == target[:, None]).any(axis=1).sum())
        feats = pair_features(scores, ranks, cand, s.lengths[b])
        ranked = np.full_like(scores["popularity"], -np.inf)
        pred = ranker.booster_.predict(
            feats.reshape(-1, feats.shape[2]), num_iteration=ranker.best_iteration_, num_threads=THREADS
        ).reshape(cand.shape)
        np.put_along_axis(ranked, cand, pred.astype(np.float32), axis=1)
        dense = {
            "popularity": scores["popularity"],
            "item_knn": scores["knn"],
            "implicit_als": scores["als"],
            "tdr_ranker": ranked,
        }
        for m in methods:
            hit, ndcg = hit_ndcg(target_rank(dense[m], target, tie_order))
            sums[m] += (hit.sum(), ndcg.sum())
    out = {
        m: {"hr_at_10": float(v[0] / users.size), "ndcg_at_10": float(v[1] / users.size)}
        for m, v in sums.items()
    }
    out["tdr_ranker"]["candidate_recall"] = recall / users.size
    return out


def evaluate_mooccubex(
    zip_path: Path, max_users: int | None = None, seed: int = 0, config: RankerConfig | None = None
) -> dict[str, object]:
    """Run the whole protocol; ``max_users`` evaluates a random subset (the models always fit on all of train)."""
    cfg = config or RankerConfig()
    started = time.perf_counter()
    data = load_mooccubex(zip_path)
    n_users = data.log.n_users
    users = np.arange(n_users)
    if max_users is not None and max_users < n_users:
        users = np.sort(np.random.default_rng(seed).choice(n_users, max_users, replace=False))
    ranker, training = train_ranker(data, cfg, seed)
    results = evaluate_all(data, ranker, users, cfg, seed)
    importance = dict(
        zip(FEATURE_NAMES, ranker.booster_.feature_importance("gain").round(1).tolist(), strict=True)
    )
    return {
        "dataset": "MOOCCubeX (XuetangX) raw.zip",
        "protocol": "full ranking of every course not already taken; HR@10 / NDCG@10 on the held-out test course",
        "users_evaluated": int(users.size),
        "all_users": bool(users.size == n_users),
        "items": int(data.log.n_items),
        "train_enrolments": len(data.log),
        "dropped_truncated_tail": data.dropped_truncated_tail,
        "test_course_unseen_in_train": int((data.test[users] < 0).sum()),
        "seed": seed,
        "results": results,
        "ranker": training,
        "feature_importance_gain": importance,
        "config": asdict(cfg),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_gb": round(psutil.Process().memory_info().rss / 2**30, 2),
        "cpu_threads": THREADS,
    }


def markdown_table(report: dict[str, object]) -> str:
    results = report["results"]
    assert isinstance(results, dict)
    lines = [
        f"MOOCCubeX, {report['users_evaluated']:,} users{' (all)' if report['all_users'] else ''}, "
        f"wall {report['wall_seconds']} s",
        "",
        "| method | HR@10 | NDCG@10 |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {v['hr_at_10']:.4f} | {v['ndcg_at_10']:.4f} |" for m, v in results.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = evaluate_mooccubex(args.zip, args.max_users, args.seed)
    write_text_atomic(args.out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(markdown_table(report))


if __name__ == "__main__":
    main()
