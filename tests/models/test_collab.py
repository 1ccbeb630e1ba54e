"""Collaborative signals on small synthetic enrolment logs, and the MOOCCubeX protocol on a handcrafted miniature."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from bench.mooccubex import (
    BenchConfig,
    evaluate_mooccubex,
    fit_scorers,
    fuse,
    hit_ndcg,
    item_statistics,
    markdown_table,
    parse_mooccubex,
    score_block,
    target_rank,
)
from models.collab import (
    ImplicitALS,
    Interactions,
    ItemKNN,
    Popularity,
    Transition,
    mask_seen,
    top_k_per_row,
    top_n,
)


def _log(sequences: list[list[int]], n_items: int | None = None) -> Interactions:
    users = [u for u, seq in enumerate(sequences) for _ in seq]
    items = [i for seq in sequences for i in seq]
    times = [t for seq in sequences for t in range(len(seq))]
    return Interactions.from_arrays(users, items, times, len(sequences), n_items)


def _two_blocks(n_users: int = 60, seed: int = 0) -> Interactions:
    """Half the users take courses from {0..4}, the other half from {5..9}; each takes 3 of their block."""
    rng = np.random.default_rng(seed)
    seqs = [list(rng.choice(5, 3, replace=False) + (0 if u % 2 == 0 else 5)) for u in range(n_users)]
    return _log(seqs, n_items=10)


def test_interactions_are_sorted_per_user_by_time() -> None:
    log = Interactions.from_arrays([1, 0, 1, 0], [7, 3, 5, 4], [2.0, 9.0, 1.0, 3.0], n_items=8)
    assert log.users.tolist() == [0, 0, 1, 1]
    assert log.items.tolist() == [4, 3, 5, 7]
    assert log.steps_from_end().tolist() == [1, 0, 1, 0]


def test_split_last_holds_out_each_users_latest_item() -> None:
    log = _log([[0, 1, 2], [3], []], n_items=4)
    kept, held = log.split_last()
    assert held.tolist() == [2, 3, -1]
    assert kept.items.tolist() == [0, 1]


def test_repeated_enrolment_counts_once_with_its_largest_weight() -> None:
    log = _log([[0, 1, 0]], n_items=2)
    assert log.matrix().toarray().tolist() == [[1.0, 1.0]]
    weighted = log.recency_matrix(0.5).toarray()
    np.testing.assert_allclose(weighted, [[1.0, 0.5]])


def test_recency_matrix_keeps_only_the_latest_items() -> None:
    log = _log([[0, 1, 2, 3]], n_items=4)
    np.testing.assert_allclose(log.recency_matrix(0.5, last=2).toarray(), [[0.0, 0.0, 0.5, 1.0]])


def test_interactions_reject_indices_outside_the_declared_sizes() -> None:
    with pytest.raises(ValueError):
        Interactions.from_arrays([0, 1], [0, 5], [0, 0], n_items=3)
    with pytest.raises(ValueError):
        Interactions.from_arrays([0, -1], [0, 1], [0, 0])


def test_popularity_orders_items_by_number_of_users() -> None:
    # user 3 took course 2 twice: it still counts once
    log = _log([[0, 1], [1, 2], [1], [2, 2]], n_items=4)
    pop = Popularity().fit(log)
    assert pop.counts_.tolist() == [1.0, 3.0, 2.0, 0.0]
    assert top_n(pop.score(2), 2).tolist() == [[1, 2], [1, 2]]


def test_popularity_half_life_favours_recent_enrolments() -> None:
    # item 0 had three old enrolments, item 1 two recent ones
    log = Interactions.from_arrays([0, 1, 2, 3, 4], [0, 0, 0, 1, 1], [0, 0, 0, 100, 100], n_items=2)
    assert Popularity().fit(log).counts_.argmax() == 0
    assert Popularity(half_life=10.0).fit(log).counts_.argmax() == 1


def test_item_knn_links_only_items_that_are_taken_together() -> None:
    sim = ItemKNN(k=10).fit(_two_blocks().matrix()).similarity_.toarray()
    assert np.all(sim[:5, 5:] == 0) and np.all(sim[5:, :5] == 0)
    assert np.all(sim[:5, :5][~np.eye(5, dtype=bool)] > 0)
    assert np.all(np.diag(sim) == 0)


def test_item_knn_similarity_is_cosine_of_co_enrolment() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
    sim = ItemKNN(k=10).fit(x).similarity_.toarray()
    # items 0 and 1 share 2 users; |0| = 3, |1| = 2
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(6))
    assert sim[1, 2] == 0
    shrunk = ItemKNN(k=10, shrink=10.0).fit(x).similarity_.toarray()
    assert shrunk[0, 1] == pytest.approx(2 / (np.sqrt(6) + 10.0))


def test_item_knn_keeps_k_neighbours_per_target_item() -> None:
    sim = ItemKNN(k=2).fit(_two_blocks().matrix()).similarity_
    assert (sim.getnnz(axis=0) <= 2).all()


def test_item_knn_scores_recommend_the_users_own_block() -> None:
    log = _two_blocks()
    knn = ItemKNN(k=10).fit(log.matrix())
    scores = mask_seen(knn.score(log.matrix()[:2]), log.matrix()[:2])
    best = top_n(scores, 2)
    assert (best[0] < 5).all() and (best[1] >= 5).all()


def test_top_k_per_row_keeps_the_largest_entries() -> None:
    m = sp.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.0], [0.2, 0.0, 0.0, 0.9]], dtype=np.float32))
    np.testing.assert_allclose(top_k_per_row(m, 1).toarray(), [[0, 0.5, 0, 0], [0, 0, 0, 0.9]])


def test_top_k_per_row_breaks_ties_by_column() -> None:
    m = sp.csr_matrix(np.array([[0.0, 0.5, 0.5, 0.5], [0.7, 0.5, 0.0, 0.5]], dtype=np.float32))
    np.testing.assert_allclose(top_k_per_row(m, 2).toarray(), [[0, 0.5, 0.5, 0], [0.7, 0.5, 0, 0]])


def test_top_n_returns_every_column_when_asked_for_more() -> None:
    scores = np.array([[0.2, 0.9, 0.5]], dtype=np.float32)
    assert top_n(scores, 10).tolist() == [[1, 2, 0]]


def test_top_n_after_mask_seen_never_returns_a_seen_item() -> None:
    rng = np.random.default_rng(7)
    seen = sp.random(300, 40, density=0.3, format="csr", random_state=11)
    scores = mask_seen(rng.random((300, 40)).astype(np.float32), seen)
    # ask for as many items as the user with the longest history has left unseen
    best = top_n(scores, 40 - int(seen.getnnz(axis=1).max()))
    taken = seen.toarray() != 0
    assert not taken[np.arange(300)[:, None], best].any()


def test_mask_seen_removes_taken_items_from_the_ranking() -> None:
    scores = np.ones((2, 3), dtype=np.float32)
    mask_seen(scores, sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 1]])))
    assert np.isneginf(scores).tolist() == [[True, False, False], [False, False, True]]


def test_transition_follows_enrolment_order() -> None:
    log = _log([[0, 1, 2], [0, 1], [0, 2]], n_items=3)
    t = Transition(window=1).fit(log).transitions_.toarray()
    # after 0: 1 twice, 2 once; after 1: 2 once; nothing ever goes back
    np.testing.assert_allclose(t, [[0.0, 2 / 3, 1 / 3], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])


def test_transition_window_counts_later_followers_with_decay() -> None:
    log = _log([[0, 1, 2]], n_items=3)
    counts_from_0 = Transition(window=2, decay=0.5).fit(log).transitions_.toarray()[0]
    np.testing.assert_allclose(counts_from_0, [0, 1 / 1.5, 0.5 / 1.5])


def test_transition_shrink_pulls_rarely_seen_sources_toward_zero() -> None:
    log = _log([[0, 1], [2, 1], [2, 1], [2, 1]], n_items=3)
    t = Transition(window=1, shrink=1.0).fit(log).transitions_.toarray()
    assert t[0, 1] == pytest.approx(1 / 2) and t[2, 1] == pytest.approx(3 / 4)


def test_transition_scores_the_next_course_of_the_latest_one() -> None:
    log = _log([[0, 1, 2], [3, 4, 5], [0, 1, 2], [3, 4]], n_items=6)
    trans = Transition(window=1).fit(log)
    recent = log.recency_matrix(0.5, last=1)
    assert trans.score(recent[3]).argmax() == 5


def test_als_factors_have_one_row_per_user_and_item() -> None:
    x = _two_blocks().matrix()
    als = ImplicitALS(factors=4, iterations=3).fit(x)
    assert als.item_factors_.shape == (10, 4)
    assert als.user_factors_.shape == (60, 4)
    assert als.user_factors(x[:5]).shape == (5, 4)
    assert als.score(x[:5]).shape == (5, 10)


def test_als_is_deterministic_for_a_seed() -> None:
    x = _two_blocks().matrix()
    a = ImplicitALS(factors=4, iterations=5, random_state=3).fit(x)
    b = ImplicitALS(factors=4, iterations=5, random_state=3).fit(x)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.score(x[:5]), b.score(x[:5]))


def test_als_finds_a_planted_block_structure() -> None:
    log = _two_blocks(n_users=200)
    x = log.matrix()
    als = ImplicitALS(factors=4, regularization=0.1, alpha=5.0, iterations=10).fit(x)
    scores = als.score(x)
    block_a = np.arange(200) % 2 == 0
    own = np.where(block_a, scores[:, :5].mean(axis=1), scores[:, 5:].mean(axis=1))
    other = np.where(block_a, scores[:, 5:].mean(axis=1), scores[:, :5].mean(axis=1))
    assert (own > other).all()


def test_target_rank_and_metrics_by_hand() -> None:
    scores = np.array(
        [[0.9, 0.1, 0.5, -np.inf], [0.2, 0.2, 0.2, 0.7], [0.3, 0.2, 0.1, 0.0]], dtype=np.float32
    )
    tie_order = np.array([2, 0, 1, 3])
    # row 0: target 2 has only 0.9 ahead; row 1: target 0 ties with 1 and 2, which come first in tie order,
    # and 0.7 is ahead; row 2: the target course is unknown to every model
    rank = target_rank(scores, np.array([2, 0, -1]), tie_order)
    assert rank.tolist() == [1, 3, 4]
    hit, ndcg = hit_ndcg(rank, k=2)
    assert hit.tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(ndcg, [1 / np.log2(3), 0.0, 0.0])


def test_parse_drops_a_trailing_token_that_is_the_truncated_test_course() -> None:
    data = parse_mooccubex("0 5 7 12\n1 7 5 20\n", "0 123\n1 201\n")
    assert data.dropped_label_tail
    assert sorted(data.item_ids.tolist()) == [5, 7]
    assert data.log.items.tolist() == [0, 1, 1, 0]
    assert data.test.tolist() == [-1, -1]
    clean = parse_mooccubex("0 5 7 12\n1 7 5 20\n", "0 5\n1 12\n")
    assert not clean.dropped_label_tail
    assert clean.item_ids[clean.test].tolist() == [5, 12]


def test_parse_reads_the_file_literally_when_asked() -> None:
    data = parse_mooccubex("0 5 7 12\n1 7 5 20\n", "0 123\n1 201\n", drop_label_tail=False)
    assert not data.dropped_label_tail
    assert data.item_ids.tolist() == [5, 7, 12, 20]
    assert len(data.log) == 6


def test_parse_links_courses_to_their_knowledge_graph_concepts() -> None:
    data = parse_mooccubex("0 5 7\n", "0 9\n", kg_txt="5 1 900\n7 1 900\n7 2 901\n99 1 902\n")
    assert data.concepts.toarray().tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_item_statistics_place_courses_in_their_sequences() -> None:
    stats = item_statistics(_log([[0, 1, 2], [0, 2], [1]], n_items=4))
    taken, latest, share, position = stats.T
    np.testing.assert_allclose(np.expm1(taken), [2, 2, 2, 0], rtol=1e-6)
    np.testing.assert_allclose(np.expm1(latest), [0, 1, 2, 0], rtol=1e-6)
    np.testing.assert_allclose(share, [0, 0.5, 1, 0])
    # course 1 sits mid-sequence once; the single-course user says nothing about position
    np.testing.assert_allclose(position, [0, 0.5, 1, 0.5])


def test_candidates_never_include_a_course_already_taken() -> None:
    log = _two_blocks(n_users=80, seed=3)
    cfg = BenchConfig(knn_k=5, als_factors=4, als_iterations=3)
    s = fit_scorers(log, sp.csr_matrix((10, 0), dtype=np.float32), cfg, seed=0)
    users = np.arange(80)
    fused = fuse(score_block(s, users))
    best = top_n(fused, 7)
    taken = log.matrix().toarray() != 0
    assert not taken[users[:, None], best].any()
    # the first two recommendations stay inside the user's own block of courses
    assert ((best[:, :2] < 5) == (users % 2 == 0)[:, None]).all()


def _mini_zip(path: Path) -> Path:
    """20 users; user u took courses 100 … 100 + u % 15 in order, so popularity falls strictly with the id:
    20, 18, 16, 14, 12, 10, 9, 8, …, 1 users for courses 100 … 114."""
    far = {14: 999, 15: 112, 16: 105, 17: 113, 18: 110, 19: 114}
    train, test = [], []
    for u in range(20):
        m = u % 15
        train.append(" ".join(map(str, [u, *range(100, 100 + m + 1)])))
        test.append(f"{u} {far.get(u, 100 + m + 1)}")
    kg = "\n".join(f"{100 + j} 2 {5000 + j % 3}" for j in range(15))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("train.txt", "\n".join(train) + "\n")
        z.writestr("test.txt", "\n".join(test) + "\n")
        z.writestr("kg_final.txt", kg + "\n")
    return path


def test_mooccubex_protocol_on_a_miniature(tmp_path: Path) -> None:
    cfg = BenchConfig(als_factors=4, als_iterations=3, candidates=15, n_estimators=5, block=7)
    report = evaluate_mooccubex(_mini_zip(tmp_path / "mini.zip"), config=cfg)
    assert report["all_users"] and report["users_evaluated"] == 20
    assert report["dropped_label_tail"] is False
    assert report["test_course_unseen_in_train"] == 1
    results = report["results"]
    assert isinstance(results, dict)
    # popularity ranks a user's untaken courses 100 + m + 1, 100 + m + 2, …: users 0-13 hold out the first
    # (rank 0); user 14 a course nobody took (miss); users 15-19 (m = 0..4) hold out 112, 105, 113, 110, 114
    # at ranks 11, 3, 10, 6, 9 — three hits
    assert results["popularity"]["hr_at_10"] == pytest.approx(17 / 20)
    expected_ndcg = (14 + 1 / np.log2(3 + 2) + 1 / np.log2(6 + 2) + 1 / np.log2(9 + 2)) / 20
    assert results["popularity"]["ndcg_at_10"] == pytest.approx(expected_ndcg, rel=1e-6)
    for method in ("item_knn", "implicit_als", "tdr_ranker"):
        assert 0.0 <= results[method]["ndcg_at_10"] <= results[method]["hr_at_10"] <= 1.0
    # with 15 candidates out of 15 courses every known test course is a candidate
    assert results["tdr_ranker"]["candidate_recall"] == pytest.approx(19 / 20)
    published = report["as_published"]
    assert isinstance(published, dict) and published["results"]["popularity"] == results["popularity"]
    assert "| tdr_ranker |" in markdown_table(report)
