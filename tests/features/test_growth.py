"""Growth (features.growth): assessment occasions, measurements per occasion, pre/post changes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.growth import WAVE_GAP_DAYS, changes, course_teaches, exposures, occasions, unshrunk


def _days(teacher: str, *dates: str) -> pd.DataFrame:
    return pd.DataFrame({"teacher_id": teacher, "taken_at": pd.to_datetime(list(dates))})


def test_assessments_days_apart_are_one_occasion_dated_by_its_last_day() -> None:
    responses = _days("T1", "2021-03-01", "2021-03-08", "2023-05-02")
    scores = pd.concat([_days("T1", "2021-04-01"), _days("T2", "2022-01-01")])
    got = occasions(responses, scores).set_index(["teacher_id", "taken_at"])["date"]
    assert got[("T1", pd.Timestamp("2021-03-01"))] == pd.Timestamp("2021-04-01")
    assert got[("T1", pd.Timestamp("2023-05-02"))] == pd.Timestamp("2023-05-02")
    assert got[("T2", pd.Timestamp("2022-01-01"))] == pd.Timestamp("2022-01-01")
    assert got.groupby(level=0).nunique().to_dict() == {"T1": 2, "T2": 1}


def test_a_gap_longer_than_the_wave_gap_starts_a_new_occasion() -> None:
    start = pd.Timestamp("2021-01-01")
    later = start + pd.Timedelta(days=WAVE_GAP_DAYS + 1)
    got = occasions(_days("T1", str(start.date()), str(later.date())), _days("T1").iloc[:0])
    assert got["date"].nunique() == 2


def test_undoing_shrinkage_spreads_item_estimates_and_leaves_scale_scores_alone() -> None:
    # normal-normal: truth ~ N(50, 15²), measurement = truth + N(0, 9²); the posterior mean shrinks by r
    rng = np.random.default_rng(0)
    truth = rng.normal(50, 15, 4000)
    r = 15**2 / (15**2 + 9**2)
    shrunk = 50 + r * (truth + rng.normal(0, 9, 4000) - 50)
    post_se = np.full(4000, np.sqrt(r * 9**2))
    m = pd.DataFrame({"competency": "A1", "estimate": shrunk, "std_error": post_se, "source": "items"})
    u = unshrunk(m)
    slope = np.polyfit(truth, u["estimate"], 1)[0]
    assert abs(slope - 1.0) < 0.05
    assert abs(np.var(u["estimate"] - truth) / np.mean(u["std_error"] ** 2) - 1.0) < 0.1
    scores = m.assign(source="scores")
    assert np.allclose(unshrunk(scores)["estimate"], scores["estimate"])


def test_changes_pair_first_and_last_occasion_and_read_level_from_the_other_competencies() -> None:
    d1, d2, d3 = pd.Timestamp("2021-01-01"), pd.Timestamp("2022-01-01"), pd.Timestamp("2023-01-01")
    m = pd.DataFrame(
        {
            "teacher_id": ["T1"] * 6 + ["T2"],
            "date": [d1, d2, d3, d1, d3, d1, d1],
            "competency": ["A", "A", "A", "B", "B", "C", "A"],
            "estimate": [40.0, 45.0, 50.0, 60.0, 64.0, 70.0, 55.0],
            "std_error": 5.0,
            "source": "items",
        }
    )
    teachers = pd.DataFrame(
        {"teacher_id": ["T1", "T2"], "stage": ["primary", "junior"], "subject": ["数学", "语文"]}
    )
    ch = changes(m, teachers).set_index("competency")
    # C was measured once and T2 once: neither has a change
    assert sorted(ch.index) == ["A", "B"]
    assert ch.loc["A", "pre"] == 40.0 and ch.loc["A", "post"] == 50.0 and ch.loc["A", "post_date"] == d3
    assert ch.loc["A", "level"] == 60.0 and ch.loc["B", "level"] == 40.0
    assert ch.loc["A", "stage"] == "primary"


def test_exposures_are_completed_records_dated_by_their_end() -> None:
    records = pd.DataFrame(
        {
            "teacher_id": ["T1", "T1", "T2"],
            "course_id": ["C1", "C2", None],
            "project_id": [None, None, "P1"],
            "status": ["completed", "dropped", "completed"],
            "start_date": pd.to_datetime(["2022-01-01", "2022-02-01", "2022-03-01"]),
            "end_date": pd.to_datetime([None, "2022-03-01", "2022-04-01"]),
        }
    )
    courses = exposures(records, "course_id")
    assert courses.to_dict("records") == [
        {"teacher_id": "T1", "unit_id": "C1", "date": pd.Timestamp("2022-01-01")}
    ]
    assert exposures(records, "project_id")["unit_id"].tolist() == ["P1"]
    teaches = course_teaches(pd.DataFrame({"course_id": ["C1", "C2"], "competencies": [["A", "B"], []]}))
    assert teaches.to_dict("records") == [
        {"unit_id": "C1", "competency": "A"},
        {"unit_id": "C1", "competency": "B"},
    ]
