"""The cognitive-diagnosis benchmark's reader and sparse variant (bench/cdm.py): any CD-format folder, any ids."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cdm import load, measured, sparse


def write_bank(folder: Path, n_users: int = 30, seed: int = 0) -> None:
    """Items with string ids and one or two skills with gaps in their codes; users with ids that are not 0..n-1."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"q{j * 7}" for j in range(12)],
            "knowledge_code": ["[3]", "[3, 10]", "[10]", "[42]"] * 3,
        }
    )
    items.to_csv(folder / "item.csv", index=False)
    rows = [(1000 + 13 * u, f"q{j * 7}", int(rng.random() < 0.6)) for u in range(n_users) for j in range(12)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "score"])
    part = rng.integers(0, 5, len(frame))
    frame[part <= 2].to_csv(folder / "train.csv", index=False)
    frame[part == 3].to_csv(folder / "valid.csv", index=False)
    frame[part == 4].to_csv(folder / "test.csv", index=False)


def test_any_ids_map_to_positions_and_the_q_matrix_follows_the_codes(tmp_path: Path) -> None:
    write_bank(tmp_path)
    bank = load(tmp_path)
    assert bank.q.shape == (12, 3)
    assert bank.q[1].tolist() == [True, True, False]
    assert bank.n_persons == 30
    for split in (bank.train, bank.valid, bank.test):
        assert split.person.min() >= 0 and split.person.max() < 30
        assert split.item.max() < 12


def test_the_sparse_variant_keeps_at_most_k_responses_per_item_the_same_way_each_time(tmp_path: Path) -> None:
    write_bank(tmp_path)
    bank = load(tmp_path)
    thin = sparse(bank, keep=5)
    counts = np.bincount(thin.train.item, minlength=12)
    full = np.bincount(bank.train.item, minlength=12)
    assert np.all(counts == np.minimum(full, 5))
    again = sparse(bank, keep=5)
    np.testing.assert_array_equal(again.train.person, thin.train.person)
    assert thin.valid is bank.valid and thin.test is bank.test


def test_a_response_to_an_unknown_item_names_file_row_and_column(tmp_path: Path) -> None:
    write_bank(tmp_path)
    test = pd.read_csv(tmp_path / "test.csv")
    test.loc[1, "item_id"] = "nowhere"
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(ValueError, match=r"test\.csv: row 3, column item_id"):
        load(tmp_path)


def test_timing_fits_run_without_the_memory_tracer() -> None:
    """The fits that time the models leave the tracer off (it charges every allocation, short fits most); the grid
    fit traces its peak memory and stops the tracer after."""
    out, cost = measured(lambda: np.ones(10_000).sum(), trace_memory=False)
    assert out == 10_000.0
    assert set(cost) == {"fit_s", "fit_cpu_s"}
    assert not tracemalloc.is_tracing()
    _, traced = measured(lambda: np.ones(100_000).sum())
    assert traced["peak_mb"] >= 0.7
    assert not tracemalloc.is_tracing()
