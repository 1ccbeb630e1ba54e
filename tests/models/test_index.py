"""The course vector index: exact for small catalogues, approximate (HNSW) above a size, faithful to exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.index import IndexConfig, VectorIndex

DIM = 384
Large = tuple[np.ndarray, np.ndarray, np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _catalogue(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors shaped like sentence embeddings of courses: a strong shared direction (all cosines high), and
    variation on a low-dimensional manifold (60 topics of Zipf-like popularity in a 24-d latent space) plus a
    little isotropic noise; queries mix three courses' latents, as a teacher's needs mix competencies."""
    rng = np.random.default_rng(seed)
    latent = 24
    basis = rng.standard_normal((latent, DIM)) / np.sqrt(DIM)
    common = rng.standard_normal(DIM)
    common *= 6.0 / np.linalg.norm(common)
    topics = rng.standard_normal((60, latent))
    popularity = 1.0 / np.arange(1, 61) ** 0.8
    z = topics[rng.choice(60, n, p=popularity / popularity.sum())] + 0.6 * rng.standard_normal((n, latent))
    courses = _unit(common + z @ basis + 0.02 * rng.standard_normal((n, DIM)))
    weights = rng.dirichlet(np.ones(3), 200)
    queries = _unit(common + np.einsum("qk,qkl->ql", weights, z[rng.integers(0, n, (200, 3))]) @ basis)
    return courses, queries


@pytest.fixture(scope="module")
def large() -> Large:
    courses, queries = _catalogue(24_000, seed=7)
    ids = np.array([f"KC{i:06d}" for i in range(len(courses))])
    return courses, queries, ids


@pytest.fixture(scope="module")
def approx(large: Large) -> VectorIndex:
    courses, _, ids = large
    return VectorIndex.build(courses, ids)


def test_small_catalogue_is_searched_exactly() -> None:
    courses, queries = _catalogue(500, seed=1)
    index = VectorIndex.build(courses, [f"c{i}" for i in range(500)])
    assert index.kind == "flat"
    scores, ids = index.search(queries[:3], 5)
    expected = np.argsort(-(queries[:3] @ courses.T), axis=1)[:, :5]
    assert (ids == np.array([[f"c{j}" for j in row] for row in expected])).all()
    assert np.allclose(scores, np.take_along_axis(queries[:3] @ courses.T, expected, axis=1), atol=1e-5)


def test_large_catalogue_is_approximate_with_recall_at_100_of_at_least_098(
    large: Large, approx: VectorIndex
) -> None:
    courses, queries, ids = large
    exact = VectorIndex.build(courses, ids, IndexConfig(kind="flat"))
    assert approx.kind == "hnsw"
    _, found = approx.search(queries, 100)
    _, truth = exact.search(queries, 100)
    recall = np.mean([len(set(f) & set(t)) / 100 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.98


def test_deep_search_never_comes_back_short(large: Large, approx: VectorIndex) -> None:
    _, queries, _ = large
    _, found = approx.search(queries[:20], 2_000)
    assert found.shape == (20, 2_000)
    assert (found != "").all()


def test_saved_index_loads_with_the_same_results(tmp_path: Path, large: Large, approx: VectorIndex) -> None:
    _, queries, _ = large
    approx.save(tmp_path / "index")
    approx.save(tmp_path / "index")  # replacing an existing folder
    loaded = VectorIndex.load(tmp_path / "index")
    assert (loaded.kind, len(loaded), loaded.dim) == ("hnsw", 24_000, DIM)
    before, after = approx.search(queries[:10], 50), loaded.search(queries[:10], 50)
    assert (before[1] == after[1]).all()
    assert np.allclose(before[0], after[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_k_larger_than_the_catalogue_returns_every_course() -> None:
    courses, queries = _catalogue(30, seed=2)
    scores, ids = VectorIndex.build(courses, [f"c{i}" for i in range(30)]).search(queries[:2], 100)
    assert ids.shape == (2, 30)
    assert sorted(ids[0]) == sorted(f"c{i}" for i in range(30))
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_duplicate_course_ids_are_refused() -> None:
    courses, _ = _catalogue(3, seed=3)
    with pytest.raises(ValueError, match="unique"):
        VectorIndex.build(courses, ["a", "b", "a"])


def _exact_allowed(courses: np.ndarray, queries: np.ndarray, allowed: np.ndarray, k: int) -> list[set[int]]:
    scores = np.where(allowed, queries @ courses.T, -np.inf)
    return [set(np.argsort(-row)[: min(k, int(ok.sum()))]) for row, ok in zip(scores, allowed, strict=True)]


def test_filtered_search_returns_the_best_allowed_courses_in_order() -> None:
    courses, queries = _catalogue(400, seed=4)
    index = VectorIndex.build(courses, [f"c{i}" for i in range(400)])
    allowed = np.random.default_rng(0).random((10, 400)) < 0.1
    scores, positions = index.search_positions(queries[:10], 20, allowed=allowed)
    assert [set(row) for row in positions] == _exact_allowed(courses, queries[:10], allowed, 20)
    assert allowed[np.arange(10)[:, None], positions].all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_filtering_never_leaves_a_query_short_on_the_approximate_index(
    large: Large, approx: VectorIndex
) -> None:
    courses, queries, _ = large
    allowed = np.random.default_rng(1).random((30, len(courses))) < 0.01  # about 240 of 24,000 per query
    _, positions = approx.search_positions(queries[:30], 100, allowed=allowed)
    assert (positions >= 0).all()
    assert allowed[np.arange(30)[:, None], positions].all()
    truth = _exact_allowed(courses, queries[:30], allowed, 100)
    recall = np.mean([len(set(row) & t) / 100 for row, t in zip(positions, truth, strict=True)])
    assert recall >= 0.98


def test_a_query_allowed_fewer_courses_than_asked_gets_all_of_them() -> None:
    courses, queries = _catalogue(50, seed=5)
    index = VectorIndex.build(courses, [f"c{i}" for i in range(50)])
    allowed = np.zeros((2, 50), dtype=bool)
    allowed[0, [3, 7, 11]] = True
    allowed[1] = True
    scores, ids = index.search(queries[:2], 10, allowed=allowed)
    assert sorted(ids[0][:3]) == ["c11", "c3", "c7"]
    assert list(ids[0][3:]) == [""] * 7
    assert np.isneginf(scores[0][3:]).all()
    assert (ids[1] != "").all()


def test_one_mask_filters_every_query_alike() -> None:
    courses, queries = _catalogue(200, seed=6)
    index = VectorIndex.build(courses, [f"c{i}" for i in range(200)])
    active = np.arange(200) % 3 == 0
    one = index.search_positions(queries[:5], 10, allowed=active)[1]
    each = index.search_positions(queries[:5], 10, allowed=np.tile(active, (5, 1)))[1]
    assert (one == each).all()
    assert active[one].all()


def test_a_mask_of_the_wrong_shape_is_refused() -> None:
    courses, queries = _catalogue(20, seed=8)
    index = VectorIndex.build(courses, [f"c{i}" for i in range(20)])
    with pytest.raises(ValueError, match="allowed"):
        index.search_positions(queries[:2], 5, allowed=np.ones(19, dtype=bool))
