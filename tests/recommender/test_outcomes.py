"""Outcome labels (recommender.outcomes) and the blend chosen on them (recommender.ranking)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recommender.outcomes import course_changes, grade, measured_change, outcome_gain
from recommender.ranking import outcome_ndcg

CODES = np.array(["A1", "B1"])
COMP = np.array([[1.0, 0.0], [0.5, 0.5]])


def records(**cols: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "teacher_id": ["T1", "T1", "T2"],
        "status": ["completed", "completed", "completed"],
        "start_date": pd.to_datetime(["2023-03-01", "2023-03-01", "2023-03-01"]),
        "end_date": pd.to_datetime(["2023-04-01", "2023-04-01", "2023-04-01"]),
        "satisfaction": [np.nan, np.nan, np.nan],
        "score": [np.nan, np.nan, np.nan],
    }
    base.update(cols)
    return pd.DataFrame(base)


def values() -> pd.DataFrame:
    """T1 assessed before and after on A1 (+6) and B1 (+2), by test; T2 only before; a self-rating of T1 after."""
    rows = [
        ("T1", "A1", "test", "2022-10-01", 40.0),
        ("T1", "A1", "test", "2024-01-01", 46.0),
        ("T1", "B1", "test", "2022-10-01", 50.0),
        ("T1", "B1", "test", "2024-01-01", 52.0),
        ("T1", "A1", "self", "2024-01-01", 90.0),
        ("T2", "A1", "test", "2022-10-01", 30.0),
    ]
    v = pd.DataFrame(rows, columns=["teacher_id", "competency", "source", "taken_at", "value"])
    return v.assign(taken_at=pd.to_datetime(v["taken_at"]))


def test_measured_change_pairs_the_last_assessment_before_with_the_first_after_of_the_same_source() -> None:
    change = measured_change(records(), np.array([0, 1, 0]), COMP, CODES, values())
    assert change[0] == 6.0  # the self-rating after has no self-rating before: not compared
    assert change[1] == 4.0  # half A1 (+6), half B1 (+2)
    assert np.isnan(change[2])  # T2 was not assessed after


def test_grades_put_measured_gains_above_losses_and_the_choice_alone_lowest() -> None:
    r = records(
        teacher_id=["T1", "T2", "T3", "T4", "T5"],
        status=["completed", "completed", "completed", "enrolled", "completed"],
        start_date=pd.to_datetime(["2023-03-01"] * 5),
        end_date=pd.to_datetime(["2023-04-01"] * 5),
        satisfaction=[np.nan, np.nan, 5.0, np.nan, 3.0],
        score=[np.nan] * 5,
    )
    change = np.array([8.0, -3.0, np.nan, np.nan, np.nan])
    g = grade(r, change)
    assert g[0] > g[1]  # a measured gain over a measured loss
    assert g[2] > g[4] > g[3] == 1  # a completion liked, one merely completed, then the choice alone
    gain = outcome_gain(r, change)
    assert gain[0] > gain[1] and np.isnan(gain[3])


def test_course_changes_shrink_a_course_with_few_measured_takers_toward_the_mean() -> None:
    r = records(teacher_id=["T1", "T1"], status=["completed"] * 2, start_date=pd.to_datetime(["2023-03-01"] * 2),
                end_date=pd.to_datetime(["2023-04-01"] * 2), satisfaction=[np.nan] * 2, score=[np.nan] * 2)  # fmt: skip
    c = course_changes(r, np.array([0, 1]), COMP, CODES, values(), n_courses=3)
    assert list(c["n"]) == [1.0, 1.0, 0.0]
    assert c["mean"][0] == 6.0 and np.isnan(c["mean"][2])
    assert c["effect"][1] < c["effect"][0] < c["mean"][0]  # pulled toward the mean of 5


def test_outcome_ndcg_rewards_ranking_taken_courses_by_their_outcome_and_ignores_the_rest() -> None:
    row = np.array([0, 0, 0, 1, 1])
    gain = np.array([2.0, 1.0, 0.0, np.nan, 1.0])  # teacher 1 has one known outcome: left out
    good, n = outcome_ndcg(np.array([3.0, 2.0, 1.0, 9.0, 0.0]), gain, row)
    bad, _ = outcome_ndcg(np.array([1.0, 2.0, 3.0, 9.0, 0.0]), gain, row)
    assert n == 1 and good == 1.0 and bad < good
