"""Training examples are point-in-time correct: their competencies are the portrait as it stood at the cut."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.portrait import Norms
from recommender.ranking import competencies_asof

CODES = ["A1", "B1"]


def history() -> pd.DataFrame:
    """T1 measured low before the cut and high after it (training closed the gap); T2 measured after it only."""
    rows = [
        ("T1", "2021-10-01", "A1", 40.0, 5.0, "items"),
        ("T1", "2021-10-01", "B1", 55.0, 5.0, "items"),
        ("T1", "2024-03-01", "A1", 75.0, 4.0, "fused"),
        ("T1", "2024-03-01", "B1", 60.0, 4.0, "fused"),
        ("T2", "2024-03-01", "A1", 30.0, 4.0, "items"),
    ]
    h = pd.DataFrame(rows, columns=["teacher_id", "date", "competency", "estimate", "std_error", "source"])
    return h.assign(date=pd.to_datetime(h["date"]))


def norms() -> Norms:
    group = {"stage": "primary", "subject": "数学", "career_stage": "backbone"}
    priors = pd.DataFrame([group | {"competency": c, "estimate": 50.0, "std_error": 12.0} for c in CODES])
    peer = pd.DataFrame(
        [{"stage": "primary", "subject": "数学", "competency": c, "peer_mean": 52.0} for c in CODES]
    )
    return Norms(priors, peer, np.zeros(1))


def rows() -> pd.DataFrame:
    return pd.DataFrame(
        {"teacher_id": ["T1", "T2"], "stage": "primary", "subject": "数学", "career_stage": "backbone"}
    )


def test_a_past_example_reads_the_portrait_before_its_cut_not_the_one_measured_after_its_training() -> None:
    comp = competencies_asof(history(), rows(), norms(), CODES, pd.Timestamp("2023-01-01"), target=70.0)
    t1 = comp[comp["teacher_id"] == "T1"].set_index("competency")
    assert t1.loc["A1", "estimate"] == 40.0 and t1.loc["A1", "gap"] == 30.0  # not 75 and no gap
    assert t1.loc["B1", "std_error"] == 5.0 and not t1["is_prior"].any()
    # T2 was first assessed after the cut: at the cut only the cold-start prior was known of them
    t2 = comp[comp["teacher_id"] == "T2"].set_index("competency")
    assert t2["is_prior"].all() and list(t2["estimate"]) == [50.0, 50.0] and (t2["peer_mean"] == 52.0).all()


def test_after_the_last_occasion_the_point_in_time_portrait_is_the_latest_measurement() -> None:
    comp = competencies_asof(history(), rows(), norms(), CODES, pd.Timestamp("2025-01-01"), target=70.0)
    t1 = comp[comp["teacher_id"] == "T1"].set_index("competency")
    assert t1.loc["A1", "estimate"] == 75.0 and t1.loc["A1", "gap"] == 0.0
    t2 = comp[comp["teacher_id"] == "T2"].set_index("competency")
    assert t2.loc["A1", "estimate"] == 30.0 and t2.loc["B1", "is_prior"]
