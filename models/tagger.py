"""Competency tagging (能力点标注): infer the competencies of courses that arrive untagged.

Each (course, competency) pair is scored by a logistic model over a few signals: embedding similarity of the
course text to the competency's description (raw and relative to the course's other competencies), BM25 of
the competency's words in the course text, and a vote of the most similar tagged courses. The model is fitted
on the courses that do carry tags, so it adapts to a deployment's own taxonomy and catalogue.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

NEIGHBOURS = 10
MAX_TAGS = 3
# a second or third tag must reach this share of the top tag's probability
SECONDARY_SHARE = 0.6


def _signals(sim: np.ndarray, lexical: np.ndarray, vote: np.ndarray) -> np.ndarray:
    """(n, K, 4) signals per (course, competency) pair."""
    z = (sim - sim.mean(axis=1, keepdims=True)) / (sim.std(axis=1, keepdims=True) + 1e-6)
    return np.stack([sim, z, lexical, vote], axis=-1)


def _votes(
    vectors: np.ndarray, ref_vectors: np.ndarray, ref_labels: np.ndarray, exclude_self: bool
) -> np.ndarray:
    """Share of the most similar tagged courses that carry each competency: (n, K)."""
    if len(ref_vectors) == 0:
        return np.zeros((len(vectors), ref_labels.shape[1]))
    sims = vectors @ ref_vectors.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    k = min(NEIGHBOURS, len(ref_vectors) - int(exclude_self))
    if k <= 0:
        return np.zeros((len(vectors), ref_labels.shape[1]))
    nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return ref_labels[nn].mean(axis=1)


class CompetencyTagger:
    """Fit on tagged courses, predict competency probabilities for any course."""

    def __init__(self, c: float = 1.0, random_state: int = 0) -> None:
        self.c = c
        self.random_state = random_state

    def fit(
        self, vectors: np.ndarray, comp_vectors: np.ndarray, lexical: np.ndarray, labels: np.ndarray
    ) -> CompetencyTagger:
        """`vectors` (n, d) tagged course embeddings, `comp_vectors` (K, d), `lexical` (n, K) in [0, 1],
        `labels` (n, K) multi-hot."""
        self.comp_vectors_ = np.asarray(comp_vectors, dtype=np.float32)
        self.ref_vectors_ = np.asarray(vectors, dtype=np.float32)
        self.ref_labels_ = np.asarray(labels, dtype=np.float64)
        vote = _votes(self.ref_vectors_, self.ref_vectors_, self.ref_labels_, exclude_self=True)
        x = _signals(self.ref_vectors_ @ self.comp_vectors_.T, lexical, vote).reshape(-1, 4)
        y = self.ref_labels_.reshape(-1) > 0
        self.model_ = LogisticRegression(C=self.c, class_weight="balanced", random_state=self.random_state)
        self.model_.fit(x, y)
        return self

    def predict_proba(self, vectors: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        """(n, K) probability that each course teaches each competency."""
        v = np.asarray(vectors, dtype=np.float32)
        vote = _votes(v, self.ref_vectors_, self.ref_labels_, exclude_self=False)
        x = _signals(v @ self.comp_vectors_.T, lexical, vote)
        n, k, f = x.shape
        return self.model_.predict_proba(x.reshape(-1, f))[:, 1].reshape(n, k)


def top_tags(proba: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
    """Tags per course (the top one, plus up to two close seconds) and the confidence of the top one."""
    order = np.argsort(-proba, axis=1)[:, :MAX_TAGS]
    top = np.take_along_axis(proba, order, axis=1)
    keep = top >= SECONDARY_SHARE * top[:, :1]
    keep[:, 0] = True
    tags = [list(o[k]) for o, k in zip(order, keep, strict=True)]
    return tags, top[:, 0]
