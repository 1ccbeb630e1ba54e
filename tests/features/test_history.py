"""Training-history portrait: career stage, hours by window, hours owed, mandatory topics, format taste."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from data.policy import MandatoryTopic, Policy
from data.reference import load_policy, load_taxonomy
from features.history import (
    CAREER_STAGE_ZH,
    CAREER_STAGES,
    FORMAT_PRIOR_HOURS,
    FORMATS,
    career_stage,
    domain_hours_column,
    format_share_column,
    history_features,
    hours_owed,
    mandatory_column,
)

ASOF = pd.Timestamp("2025-06-30")

TAXONOMY = pd.DataFrame(
    {
        "code": ["ETH1", "KNW1", "IT1", "IT2"],
        "name": ["师德规范", "学科知识", "多媒体教学", "数据评价"],
        "domain": ["师德与理念", "专业知识", "信息技术应用", "信息技术应用"],
    }
)


def teachers(*ids: str, stages: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"teacher_id": list(ids), "stage": stages or ["primary"] * len(ids)})


def courses(*rows: tuple[str, float, str, list[str], str | None]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["course_id", "hours", "format", "competencies", "mandatory_topic"])


def records(*rows: tuple[str, str | None, str, str, float | None]) -> pd.DataFrame:
    """Rows of (teacher_id, course_id, end_date, status, hours)."""
    frame = pd.DataFrame(rows, columns=["teacher_id", "course_id", "end_date", "status", "hours"])
    frame["end_date"] = pd.to_datetime(frame["end_date"])
    frame["start_date"] = frame["end_date"] - pd.Timedelta(days=5)
    frame["record_id"] = [f"r{i}" for i in range(len(frame))]
    return frame


def policy(**changes: object) -> Policy:
    base = dataclasses.replace(
        load_policy("default"),
        cycle_hours=360.0,
        cycle_years=5,
        it_hours=50.0,
        it_years=3,
        mandatory_topics=(MandatoryTopic("师德师风", 12, (), ()),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def features(t: pd.DataFrame, r: pd.DataFrame, c: pd.DataFrame, asof: pd.Timestamp = ASOF) -> pd.DataFrame:
    return history_features(t, r, c, TAXONOMY, asof).set_index("teacher_id")


def test_career_stage_rules_first_match_wins() -> None:
    cases = [
        # years, title, roles, expected
        (3, "full_senior", [], "novice"),
        (0, "none", [], "novice"),
        (4, "none", [], "developing"),
        (5, "full_senior", [], "expert"),
        (20, "senior", [], "expert"),
        (19, "senior", [], "backbone"),
        (12, "senior", ["researcher"], "expert"),
        (8, "senior", ["trainer"], "expert"),
        (8, "first", ["researcher"], "backbone"),
        (5, "first", [], "backbone"),
        (10, "second", [], "backbone"),
        (9, "second", [], "developing"),
        (6, "second", ["principal"], "backbone"),
        (6, "third", ["party_secretary"], "backbone"),
        (6, "third", ["head_teacher"], "developing"),
        (None, None, [], "developing"),
        (None, "full_senior", None, "expert"),
    ]
    t = pd.DataFrame(
        {
            "teacher_id": [f"t{i}" for i in range(len(cases))],
            "years_teaching": pd.array([c[0] for c in cases], dtype="Int64"),
            "title": [c[1] for c in cases],
            "roles": [c[2] for c in cases],
        }
    )
    assert career_stage(t).tolist() == [c[3] for c in cases]


def test_career_stage_reads_roles_as_parquet_arrays_and_keeps_the_index() -> None:
    t = pd.DataFrame(
        {
            "teacher_id": ["a", "b"],
            "years_teaching": pd.array([12, 4], dtype="Int64"),
            "title": ["senior", "second"],
            "roles": [np.array(["trainer"], dtype=object), np.array(["principal"], dtype=object)],
        },
        index=[10, 20],
    )
    stage = career_stage(t)
    assert stage.to_dict() == {10: "expert", 20: "backbone"}
    assert set(CAREER_STAGE_ZH) == set(CAREER_STAGES)
    assert CAREER_STAGE_ZH["novice"] == "新入职" and CAREER_STAGE_ZH["backbone"] == "骨干"


def test_hours_owed_counts_the_cycle_window_edges_inclusive_and_ignores_the_future() -> None:
    c = courses(("c1", 30.0, "online", ["KNW1"], None))
    r = records(
        ("t1", "c1", "2020-06-30", "completed", 40.0),  # exactly 5 years back: counted
        ("t1", "c1", "2020-06-29", "completed", 100.0),  # one day older: not counted
        ("t1", "c1", "2025-06-30", "completed", None),  # on asof, hours from the course: 30
        ("t1", "c1", "2025-07-01", "completed", 100.0),  # after asof: not counted
        ("t1", "c1", "2024-01-01", "dropped", 100.0),  # not completed: not counted
        ("t2", "c1", "2023-01-01", "completed", 400.0),
    )
    owed = hours_owed(history_features(teachers("t1", "t2", "t3"), r, c, TAXONOMY, ASOF), policy(), ASOF)
    owed = owed.set_index("teacher_id")
    assert owed.loc["t1", "hours_done_cycle"] == 70.0
    assert owed.loc["t1", "hours_owed"] == 290.0
    assert owed.loc["t2", "hours_owed"] == 0.0
    assert owed.loc["t3", "hours_done_cycle"] == 0.0
    assert owed.loc["t3", "hours_owed"] == 360.0


def test_it_hours_are_the_it_domain_share_within_it_years() -> None:
    c = courses(
        ("mix", 20.0, "blended", ["IT1", "KNW1"], None),
        ("it", 12.0, "online", ["IT1", "IT2"], None),
    )
    r = records(
        ("t1", "mix", "2024-03-01", "completed", None),  # 10 of 20 hours are IT
        ("t1", "it", "2022-06-30", "completed", None),  # exactly 3 years back: 12 IT hours
        ("t1", "it", "2022-06-29", "completed", None),  # outside the 3 years
    )
    owed = hours_owed(history_features(teachers("t1"), r, c, TAXONOMY, ASOF), policy(), ASOF)
    assert owed.loc[0, "it_hours_done"] == 22.0
    assert owed.loc[0, "it_hours_owed"] == 28.0
    assert owed.loc[0, "hours_done_cycle"] == 44.0


def test_missing_mandatory_topic_within_and_outside_twelve_months() -> None:
    c = courses(("ethics", 10.0, "online", ["ETH1"], "师德师风"), ("other", 10.0, "online", ["KNW1"], None))
    r = records(
        ("in", "ethics", "2024-08-15", "completed", None),  # 10.5 months ago
        ("edge", "ethics", "2024-06-30", "completed", None),  # exactly 12 months ago: still counts
        ("out", "ethics", "2024-06-29", "completed", None),  # 12 months and a day
        ("dropped", "ethics", "2025-01-01", "dropped", None),
        ("never", "other", "2025-01-01", "completed", None),
    )
    t = teachers("in", "edge", "out", "dropped", "never", "none")
    history = history_features(t, r, c, TAXONOMY, ASOF)
    missing = hours_owed(history, policy(), ASOF).set_index("teacher_id")["missing_mandatory"]
    assert missing.to_dict() == {
        "in": [],
        "edge": [],
        "out": ["师德师风"],
        "dropped": ["师德师风"],
        "never": ["师德师风"],
        "none": ["师德师风"],
    }
    assert history.set_index("teacher_id").loc["in", mandatory_column("师德师风")] == pd.Timestamp(
        "2024-08-15"
    )


def test_mandatory_topics_without_recency_and_limited_to_stages() -> None:
    c = courses(("law", 6.0, "online", ["ETH1"], "法治教育"))
    r = records(("old", "law", "2019-01-01", "completed", None))
    topics = (MandatoryTopic("法治教育", None, (), ()), MandatoryTopic("少先队工作", 12, ("primary",), ()))
    t = teachers("old", "junior", stages=["primary", "junior"])
    history = history_features(t, r, c, TAXONOMY, ASOF)
    with_stages = hours_owed(history, policy(mandatory_topics=topics), ASOF, stages=t["stage"])
    assert with_stages["missing_mandatory"].tolist() == [["少先队工作"], ["法治教育"]]
    without_stages = hours_owed(history, policy(mandatory_topics=topics), ASOF)
    assert without_stages["missing_mandatory"].tolist() == [["少先队工作"], ["法治教育", "少先队工作"]]


def test_format_taste_is_smoothed_toward_the_population() -> None:
    c = courses(("on", 10.0, "online", [], None), ("ws", 10.0, "workshop", [], None))
    r = records(
        ("fan", "on", "2025-01-01", "completed", 72.0),
        ("mixed", "on", "2025-01-01", "completed", 12.0),
        ("mixed", "ws", "2025-02-01", "completed", 36.0),
    )
    f = features(teachers("fan", "mixed", "new"), r, c)
    shares = f[[format_share_column(fmt) for fmt in FORMATS]]
    population = {"online": 84.0 / 120.0, "workshop": 36.0 / 120.0}
    expected_fan_online = (72.0 + FORMAT_PRIOR_HOURS * population["online"]) / (72.0 + FORMAT_PRIOR_HOURS)
    assert f.loc["fan", "format_share_online"] == pytest.approx(expected_fan_online)
    assert population["online"] < f.loc["fan", "format_share_online"] < 1.0
    assert f.loc["mixed", "format_share_workshop"] > f.loc["fan", "format_share_workshop"]
    assert f.loc["new", "format_share_online"] == pytest.approx(population["online"])
    assert f.loc["new", "format_share_offline"] == 0.0
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_hours_split_equally_among_competencies_with_an_unknown_bucket() -> None:
    c = courses(
        ("two", 20.0, "offline", ["ETH1", "IT2"], None),
        ("untagged", 8.0, "online", [], None),
        ("foreign", 6.0, "online", ["ZZZ9"], None),
    )
    r = records(
        ("t1", "two", "2025-01-01", "completed", None),
        ("t1", "untagged", "2025-01-01", "completed", None),
        ("t1", "foreign", "2025-01-01", "completed", None),
        ("t1", None, "2025-01-01", "completed", 4.0),
    )
    f = features(teachers("t1"), r, c).loc["t1"]
    assert f[domain_hours_column("师德与理念", 1)] == 10.0
    assert f[domain_hours_column("信息技术应用", 1)] == 10.0
    assert f[domain_hours_column("专业知识", 1)] == 0.0
    assert f[domain_hours_column("unknown", 1)] == 18.0
    domain_cols = [col for col in f.index if col.startswith("hours_1y_dom_")]
    assert f[domain_cols].sum() == f["hours_1y"] == 38.0
    assert f["hours_1y_fmt_offline"] == 20.0 and f["hours_1y_fmt_unknown"] == 4.0


def test_windows_of_one_three_and_five_years() -> None:
    c = courses(("k", 10.0, "online", ["KNW1"], None))
    r = records(
        ("t1", "k", "2025-01-01", "completed", None),
        ("t1", "k", "2023-01-01", "completed", None),
        ("t1", "k", "2021-01-01", "completed", None),
        ("t1", "k", "2019-01-01", "completed", None),
    )
    f = features(teachers("t1"), r, c).loc["t1"]
    assert (f["hours_1y"], f["hours_3y"], f["hours_5y"]) == (10.0, 20.0, 30.0)
    assert f[domain_hours_column("专业知识", 3)] == 20.0


def test_rates_scores_and_recency_leave_running_records_out() -> None:
    c = courses(("k", 10.0, "online", ["KNW1"], None))
    r = records(
        ("t1", "k", "2025-06-20", "completed", None),
        ("t1", "k", "2025-03-01", "completed", None),
        ("t1", "k", "2025-02-01", "dropped", None),
        ("t1", "k", "2025-01-01", "no_show", None),
        ("t1", "k", "2025-06-01", "enrolled", None),
    )
    r["score"] = [80.0, 90.0, np.nan, np.nan, np.nan]
    r["satisfaction"] = [4.0, np.nan, 2.0, np.nan, np.nan]
    f = features(teachers("t1", "t2"), r, c)
    one = f.loc["t1"]
    assert one["n_records"] == 5 and one["n_finished"] == 4
    assert (one["completion_rate"], one["dropout_rate"], one["no_show_rate"]) == (0.5, 0.25, 0.25)
    assert (one["mean_score"], one["mean_satisfaction"]) == (85.0, 3.0)
    assert one["days_since_last_training"] == 10.0
    none = f.loc["t2"]
    assert none["n_records"] == 0 and none["hours_5y"] == 0.0
    assert np.isnan(none["completion_rate"]) and np.isnan(none["days_since_last_training"])


def test_repeated_topics_within_three_years() -> None:
    c = courses(
        ("ethics_a", 10.0, "online", ["ETH1"], "师德师风"),
        ("ethics_b", 10.0, "online", ["ETH1", "KNW1"], "师德师风"),
        ("it_a", 10.0, "online", ["IT2", "IT1"], None),
        ("it_b", 10.0, "workshop", ["IT1", "IT2"], None),
        ("knw", 10.0, "online", ["KNW1"], None),
    )
    r = records(
        ("t1", "ethics_a", "2023-01-01", "completed", None),  # same mandatory topic twice
        ("t1", "ethics_b", "2025-01-01", "completed", None),
        ("t1", "it_a", "2024-01-01", "completed", None),  # same competency set twice
        ("t1", "it_b", "2025-01-01", "completed", None),
        ("t1", "knw", "2025-01-01", "completed", None),  # once inside three years ...
        ("t1", "knw", "2021-01-01", "completed", None),  # ... once outside
        ("t2", "knw", "2025-01-01", "completed", None),
        ("t2", "knw", "2025-02-01", "dropped", None),
    )
    f = features(teachers("t1", "t2"), r, c)
    assert f["repeated_topics"].to_dict() == {"t1": 2, "t2": 0}


def test_completed_course_ids_are_sorted_lists_and_empty_without_history() -> None:
    c = courses(
        ("b", 10.0, "online", [], None), ("a", 10.0, "online", [], None), ("z", 10.0, "online", [], None)
    )
    r = records(
        ("t1", "b", "2024-01-01", "completed", None),
        ("t1", "a", "2023-01-01", "completed", None),
        ("t1", "b", "2025-01-01", "completed", None),
        ("t1", "z", "2025-01-01", "dropped", None),
    )
    f = features(teachers("t2", "t1"), r, c)
    assert f.index.tolist() == ["t2", "t1"]
    assert f["completed_course_ids"].tolist() == [[], ["a", "b"]]


def test_hours_owed_needs_the_policy_windows() -> None:
    history = history_features(teachers("t1"), records(), courses(), TAXONOMY, ASOF, windows=(1, 3))
    with pytest.raises(ValueError, match="cycle_years=5"):
        hours_owed(history, policy(), ASOF)


def test_built_in_taxonomy_domains_get_english_columns() -> None:
    history = history_features(teachers("t1"), records(), courses(), load_taxonomy(), ASOF)
    expected = {
        "ethics",
        "knowledge",
        "instruction",
        "assessment",
        "classroom",
        "it",
        "research",
        "leadership",
    }
    found = {col.removeprefix("hours_5y_dom_") for col in history.columns if col.startswith("hours_5y_dom_")}
    assert found == expected | {"unknown"}
