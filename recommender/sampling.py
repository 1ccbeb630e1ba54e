"""The training sample (`tdr train`): collaborative signals, ranking data and the ranker are learned from the
training records of a stratified sample of teachers, read from the workspace in one streaming pass, so their
memory is bounded by the sample, not by the province (portraits are built for everybody, in blocks:
`recommender.portraits`).

Strata are stage × subject × county (the peer groups the signals count in, and the unit trainers report on);
each stratum gets its share of the sample by largest remainder, at least one teacher where it has any, drawn
with a seeded generator. A province no larger than the sample trains on everybody.

How the default size was chosen (`bench/train_sample.py`, `bench/results/train_sample.json`): NDCG@10
against the simulator's true utilities on a 3 000-teacher province at several sample sizes, full vs sampled,
in one run; the ranker itself trains on at most `recommender.ranking.TRAIN_TEACHERS` teachers of the sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STRATA = ("stage", "subject", "county")
# 50 000 teachers ≈ 1 M training records (~0.3 GB in memory): past a few thousand teachers NDCG@10 stops
# moving (bench/results/train_sample.json), and collaborative statistics of rarer courses keep improving
DEFAULT_TRAIN_SAMPLE = 50_000


def stratified_sample(teachers: pd.DataFrame, size: int, seed: int = 0) -> np.ndarray:
    """Sorted teacher ids of a stratified sample of about `size` teachers (every teacher when the province
    has no more than `size`; each non-empty stratum keeps at least one)."""
    ids = teachers["teacher_id"].astype(str).to_numpy()
    if size >= len(ids):
        return np.sort(ids)
    key = pd.Series("", index=teachers.index)
    for c in STRATA:
        if c in teachers:
            key = key + "|" + teachers[c].astype(str).fillna("")
    codes = np.unique(key.to_numpy(), return_inverse=True)[1]
    counts = np.bincount(codes)
    quota = counts * size / len(ids)
    take = np.maximum(np.floor(quota).astype(np.int64), 1)
    short = size - int(take.sum())
    if short > 0:  # largest remainders first
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        room = order[take[order] < counts[order]][:short]
        take[room] += 1
    take = np.minimum(take, counts)
    rng = np.random.default_rng(seed)
    noise = rng.random(len(ids))
    # rank of each teacher inside its stratum by seeded noise; the first `take` of each are drawn
    order = np.lexsort((noise, codes))
    rank = np.empty(len(ids), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(len(ids)) - starts[codes[order]]
    return np.sort(ids[rank < take[codes]])
