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
# a tag beyond the top one needs the model to find it more likely than not
MIN_PROBABILITY = 0.5
# rows of course-to-course similarities held at once while voting (bounds memory on large catalogues)
_VOTE_CHUNK = 2048


def _signals(sim: np.ndarray, lexical: np.ndarray, vote: np.ndarray) -> np.ndarray:
    """(n, K, 4) signals per (course, competency) pair."""
    z = (sim - sim.mean(axis=1, keepdims=True)) / (sim.std(axis=1, keepdims=True) + 1e-6)
    return np.stack([sim, z, lexical, vote], axis=-1)


def _votes(
    vectors: np.ndarray, ref_vectors: np.ndarray, ref_labels: np.ndarray, exclude_self: bool
) -> np.ndarray:
    """Share of the most similar tagged courses that carry each competency: (n, K). With ``exclude_self``,
    ``vectors`` are the reference courses themselves and none votes for itself."""
    k = min(NEIGHBOURS, len(ref_vectors) - int(exclude_self))
    out = np.zeros((len(vectors), ref_labels.shape[1]))
    if k <= 0:
        return out
    for start in range(0, len(vectors), _VOTE_CHUNK):
        rows = slice(start, start + _VOTE_CHUNK)
        sims = vectors[rows] @ ref_vectors.T
        if exclude_self:
            sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[rows] = ref_labels[nn].mean(axis=1)
    return out


class CompetencyTagger:
    """Fit on tagged courses, predict competency probabilities for any course.

    Unweighted logistic regression keeps the probabilities calibrated (about one pair in K is a tag), so
    :func:`top_tags` can read them against a fixed threshold.
    """

    def __init__(self, c: float = 1.0) -> None:
        self.c = c

    def fit(
        self, vectors: np.ndarray, comp_vectors: np.ndarray, lexical: np.ndarray, labels: np.ndarray
    ) -> CompetencyTagger:
        """``vectors`` (n, d) tagged course embeddings, ``comp_vectors`` (K, d) competency embeddings,
        ``lexical`` (n, K) BM25 of each competency's text in each course scaled to [0, 1], ``labels`` (n, K)
        multi-hot."""
        n, k = np.shape(labels)
        if np.shape(vectors)[0] != n or np.shape(lexical) != (n, k) or np.shape(comp_vectors)[0] != k:
            raise ValueError(
                f"shapes disagree: vectors {np.shape(vectors)}, comp_vectors {np.shape(comp_vectors)}, "
                f"lexical {np.shape(lexical)}, labels {np.shape(labels)}"
            )
        y = np.asarray(labels).reshape(-1) > 0
        if y.all() or not y.any():
            raise ValueError("labels need both tagged and untagged (course, competency) pairs to learn from")
        self.comp_vectors_ = np.asarray(comp_vectors, dtype=np.float32)
        self.ref_vectors_ = np.asarray(vectors, dtype=np.float32)
        self.ref_labels_ = np.asarray(labels, dtype=np.float64)
        vote = _votes(self.ref_vectors_, self.ref_vectors_, self.ref_labels_, exclude_self=True)
        x = _signals(self.ref_vectors_ @ self.comp_vectors_.T, np.asarray(lexical), vote)
        self.model_ = LogisticRegression(C=self.c, max_iter=1000)
        self.model_.fit(x.reshape(-1, x.shape[-1]), y)
        return self

    def predict_proba(self, vectors: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        """(n, K) probability that each course teaches each competency."""
        v = np.asarray(vectors, dtype=np.float32)
        vote = _votes(v, self.ref_vectors_, self.ref_labels_, exclude_self=False)
        x = _signals(v @ self.comp_vectors_.T, np.asarray(lexical), vote)
        n, k, f = x.shape
        return np.asarray(self.model_.predict_proba(x.reshape(-1, f))[:, 1].reshape(n, k))


def top_tags(proba: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
    """Tags per course as column positions (the top one always, then up to two more that reach
    ``MIN_PROBABILITY``), and the probability of the top one as its confidence."""
    order = np.argsort(-proba, axis=1, kind="stable")[:, :MAX_TAGS]
    top = np.take_along_axis(proba, order, axis=1)
    keep = top >= MIN_PROBABILITY
    keep[:, 0] = True
    tags = [o[k].tolist() for o, k in zip(order, keep, strict=True)]
    return tags, top[:, 0]
