"""The top-k selections that build each teacher's candidates: faiss-heap and prefix selections against a plain
numpy reference (distinct scores, so the reference's answer is unique)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.retrieval import top_per_row
from recommender.scoring import _top_eligible, _top_eligible_shared, owed_top


def _reference(scores: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """Each row's k eligible positions of highest score, by a full sort."""
    out = np.zeros(eligible.shape, dtype=bool)
    for i in range(len(scores)):
        cols = np.flatnonzero(eligible[i] & np.isfinite(scores[i]))
        out[i, cols[np.argsort(-scores[i, cols], kind="stable")[:k]]] = True
    return out


def _case(seed: int, n: int, c: int, density: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n * c).reshape(n, c).astype(np.float64) / (n * c)
    return scores, rng.random((n, c)) < density


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(1, 12),
    st.integers(1, 300),
    st.integers(1, 40),
    st.floats(0.0, 1.0),
)
def test_top_eligible_is_the_k_best_eligible_of_each_row(
    seed: int, n: int, c: int, k: int, density: float
) -> None:
    scores, eligible = _case(seed, n, c, density)
    got = _top_eligible(scores, eligible, k)
    assert (got == _reference(scores, eligible, k)).all()
    # a row with fewer than k eligible courses gets all of them, never an ineligible one
    assert not (got & ~eligible).any()
    assert (got.sum(axis=1) == np.minimum(k, eligible.sum(axis=1))).all()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 10_000), st.integers(1, 12), st.integers(1, 300), st.integers(1, 40), st.floats(0.0, 1.0)
)
def test_shared_score_selection_matches_the_full_one(
    seed: int, n: int, c: int, k: int, density: float
) -> None:
    scores, eligible = _case(seed, n, c, density)
    course_score = scores[0].copy()
    course_score[::7] = np.nan  # courses without the signal are never chosen by it
    shared = np.broadcast_to(course_score, eligible.shape)
    assert (_top_eligible_shared(course_score, eligible, k) == _reference(shared, eligible, k)).all()


def test_top_per_row_skips_non_finite_scores() -> None:
    scores = np.array([[0.5, -np.inf, 0.9, np.nan], [-np.inf, -np.inf, -np.inf, -np.inf]])
    rows, cols = top_per_row(scores, 3)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (0, 2)]


def test_owed_top_takes_the_best_courses_of_each_owed_topic_only() -> None:
    rng = np.random.default_rng(3)
    n, c, k = 6, 40, 4
    mandatory_idx = np.repeat([-1, 0, 1, -1], 10)  # courses 10-19: topic 0, 20-29: topic 1
    missing = np.zeros((n, 2), dtype=bool)
    missing[:3, 0] = True
    missing[2:5, 1] = True
    need = rng.permutation(n * c).reshape(n, c).astype(np.float64)
    eligible = rng.random((n, c)) < 0.7
    got = owed_top(missing, mandatory_idx, need, eligible, k)
    for topic in (0, 1):
        cols = mandatory_idx == topic
        want = np.zeros((n, c), dtype=bool)
        want[:, cols] = _reference(need[:, cols], eligible[:, cols], k)
        want[~missing[:, topic]] = False
        assert (got[:, cols] == want[:, cols]).all()
    assert not got[:, mandatory_idx < 0].any()
    assert not got[5].any()  # owes nothing
