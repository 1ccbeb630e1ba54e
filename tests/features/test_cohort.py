"""Cohort portraits: figures equal to hand-computed ones, small groups suppressed, rural vs urban."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.cohort import behind_on_hours, cohort_portrait, cohort_summary_frame

# County 甲: six teachers with hand-checkable estimates; county 乙: four teachers (below the privacy floor).
ESTIMATES_JIA = [40.0, 50.0, 55.0, 60.0, 70.0, 90.0]


def teacher_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "teacher_id": [f"j{i}" for i in range(6)] + [f"y{i}" for i in range(4)],
            "county": ["甲"] * 6 + ["乙"] * 4,
            "school_id": ["s1", "s1", "s1", "s2", "s2", "s2", "s3", "s3", "s3", "s3"],
            "school_type": ["rural", "rural", "urban", "urban", "town", "rural"] + ["urban"] * 4,
            "hours_done_cycle": [100.0, 360.0, 200.0, 400.0, 0.0, 300.0, 10.0, 20.0, 30.0, 40.0],
            "hours_owed": [260.0, 0.0, 160.0, 0.0, 360.0, 60.0, 350.0, 340.0, 330.0, 320.0],
            "it_hours_owed": [0.0, 0.0, 0.0, 10.0, 50.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            "n_completed": [4, 2, 0, 3, 1, 0, 1, 1, 1, 1],
            "n_no_show": [0, 1, 0, 1, 0, 0, 0, 0, 0, 0],
            "n_finished": [4, 4, 0, 4, 1, 0, 1, 1, 1, 1],
            "missing_mandatory": [["师德师风"], [], [], [], ["师德师风"], []] + [[]] * 4,
            "top_gaps": [["A1", "B1"], ["A1"], ["B1", "A1"], ["C1"], ["A1", "C1"], []] + [["A1"]] * 4,
        }
    )


def competencies_long() -> pd.DataFrame:
    rows = teacher_rows()
    a1 = pd.DataFrame(
        {
            "teacher_id": rows["teacher_id"],
            "competency": "A1",
            "estimate": ESTIMATES_JIA + [20.0, 30.0, 40.0, 50.0],
            "is_prior": False,
        }
    )
    # B1 is assessed for three 甲 teachers only; the others carry a prior (their peers' mean).
    b1 = pd.DataFrame(
        {
            "teacher_id": rows["teacher_id"],
            "competency": "B1",
            "estimate": [80.0, 70.0, 60.0] + [65.0] * 7,
            "is_prior": [False] * 3 + [True] * 7,
        }
    )
    return pd.concat([a1, b1], ignore_index=True)


def competency_row(frame: pd.DataFrame, county: str, code: str) -> pd.Series:
    match = frame[(frame["county"] == county) & (frame["competency"] == code)]
    assert len(match) == 1
    return match.iloc[0]


def test_cohort_figures_equal_hand_computed_ones() -> None:
    portrait = cohort_portrait(teacher_rows(), competencies_long(), "county", threshold=60)
    a1 = competency_row(portrait.competencies, "甲", "A1")
    # sorted 40 50 55 60 70 90; position of quantile q is 5q, interpolated linearly
    assert a1["n"] == 6
    assert a1["mean"] == pytest.approx(365.0 / 6)
    assert a1["p10"] == pytest.approx(45.0)
    assert a1["p25"] == pytest.approx(51.25)
    assert a1["p50"] == pytest.approx(57.5)
    assert a1["p75"] == pytest.approx(67.5)
    assert a1["p90"] == pytest.approx(80.0)
    assert a1["share_below"] == pytest.approx(3 / 6)  # 60 itself is not below


def test_group_hours_progress_and_pooled_rates() -> None:
    groups = cohort_portrait(teacher_rows(), competencies_long(), "county").groups.set_index("county")
    jia = groups.loc["甲"]
    assert jia["n_teachers"] == 6
    assert jia["mean_hours_done_cycle"] == pytest.approx(1360.0 / 6)
    assert jia["share_owing_hours"] == pytest.approx(4 / 6)
    assert jia["total_hours_owed"] == pytest.approx(840.0)
    assert jia["share_owing_it_hours"] == pytest.approx(2 / 6)
    assert jia["share_missing_mandatory"] == pytest.approx(2 / 6)
    assert jia["completion_rate"] == pytest.approx(10 / 13)
    assert jia["no_show_rate"] == pytest.approx(2 / 13)
    assert jia["n_assessed"] == 6


def test_groups_below_min_size_show_only_suppressed_and_size_bucket() -> None:
    portrait = cohort_portrait(teacher_rows(), competencies_long(), "county", min_size=5)
    assert portrait.suppressed.to_dict("records") == [{"county": "乙", "group": "乙", "size_bucket": "<5"}]
    yi = portrait.groups.set_index("county").loc["乙"]
    assert bool(yi["suppressed"]) and pd.isna(yi["n_teachers"])
    figure_columns = [c for c in portrait.groups.columns if c.startswith(("mean_", "share_", "total_"))]
    assert yi[figure_columns].isna().all()
    assert "乙" not in set(portrait.competencies["county"])
    assert "乙" not in set(portrait.common_gaps["county"])
    summary = cohort_summary_frame(portrait)
    yi_rows = summary[summary["county"] == "乙"]
    assert yi_rows["row_type"].tolist() == ["group"]
    assert yi_rows[["mean", "p50", "share_below", "common_gaps"]].isna().all(axis=None)
    assert not summary.columns.str.contains("teacher_id").any()


def test_min_size_can_be_lowered_for_a_small_class() -> None:
    portrait = cohort_portrait(teacher_rows(), competencies_long(), "county", min_size=4)
    assert not portrait.groups["suppressed"].any()
    yi = competency_row(portrait.competencies, "乙", "A1")
    assert yi["mean"] == pytest.approx(35.0)


def test_priors_are_left_out_and_thin_cells_are_hidden() -> None:
    portrait = cohort_portrait(teacher_rows(), competencies_long(), "county", min_size=3)
    b1 = competency_row(portrait.competencies, "甲", "B1")
    assert b1["n"] == 3 and b1["mean"] == pytest.approx(70.0)  # the four priors of 65 do not count
    with_priors = cohort_portrait(teacher_rows(), competencies_long(), "county", include_priors=True)
    assert competency_row(with_priors.competencies, "甲", "B1")["n"] == 6
    default = cohort_portrait(teacher_rows(), competencies_long(), "county", min_size=5)
    thin = competency_row(default.competencies, "甲", "B1")
    assert thin["n"] == 3 and np.isnan(thin["mean"]) and np.isnan(thin["p50"])


def test_rural_vs_urban_comparison_within_a_group() -> None:
    rows = teacher_rows()
    rows["county"] = "甲"  # one group of ten
    rows.loc[rows["teacher_id"] == "j4", "school_type"] = "rural"  # rural j0 j1 j4 j5, urban j2 j3 y0..y3
    portrait = cohort_portrait(rows, competencies_long(), "county", min_size=3)
    a1 = competency_row(portrait.competencies, "甲", "A1")
    assert (a1["n_rural"], a1["n_urban"], a1["n_town"]) == (4, 6, 0)
    assert a1["mean_rural"] == pytest.approx(62.5)  # (40 + 50 + 70 + 90) / 4
    assert a1["mean_urban"] == pytest.approx(42.5)  # (55 + 60 + 20 + 30 + 40 + 50) / 6
    assert np.isnan(a1["mean_town"])
    assert a1["urban_minus_rural"] == pytest.approx(-20.0)


def test_school_type_means_cannot_be_recovered_by_subtraction() -> None:
    rows = teacher_rows()
    rows["county"] = "甲"  # rural j0 j1 j5, urban j2 j3 y0..y3, town j4 (alone)
    portrait = cohort_portrait(rows, competencies_long(), "county", min_size=3)
    a1 = competency_row(portrait.competencies, "甲", "A1")
    assert (a1["n_rural"], a1["n_urban"], a1["n_town"]) == (3, 6, 1)
    assert not np.isnan(a1["mean"])
    # the lone town teacher is hidden, and so is the smaller shown part, else whole − rural − urban = town
    assert np.isnan(a1["mean_town"]) and np.isnan(a1["mean_rural"])
    assert a1["mean_urban"] == pytest.approx(42.5)
    assert np.isnan(a1["urban_minus_rural"])


def test_common_gaps_are_counted_per_teacher_and_ranked() -> None:
    gaps = cohort_portrait(teacher_rows(), competencies_long(), "county").common_gaps
    jia = gaps[gaps["county"] == "甲"]
    assert jia[["rank", "competency", "n_teachers"]].values.tolist() == [
        [1, "A1", 4],
        [2, "B1", 2],
        [3, "C1", 2],
    ]
    assert jia["share"].tolist() == pytest.approx([4 / 6, 2 / 6, 2 / 6])


def test_grouping_by_two_columns_and_blank_keys() -> None:
    rows = teacher_rows()
    rows.loc[9, "school_id"] = None
    portrait = cohort_portrait(rows, competencies_long(), ["county", "school_id"], min_size=3)
    labels = portrait.groups.set_index("group")
    assert labels.loc["甲 × s1", "n_teachers"] == 3
    assert labels.loc["乙 × s3", "n_teachers"] == 3
    assert bool(labels.loc["乙 × （空）", "suppressed"])
    assert portrait.groups["suppressed"].sum() == 1
    with pytest.raises(ValueError, match="cannot group by"):
        cohort_portrait(rows, competencies_long(), "province")


def test_summary_frame_is_the_long_table_of_the_cli() -> None:
    portrait = cohort_portrait(teacher_rows(), competencies_long(), "county", min_size=3)
    summary = cohort_summary_frame(portrait)
    assert summary.columns[:4].tolist() == ["county", "group", "row_type", "competency"]
    expected = ["n", "mean", "p10", "p25", "p50", "p75", "p90", "share_below"]
    assert set(expected) <= set(summary.columns)
    # groups in key order (乙 sorts before 甲), each group row followed by its competency rows;
    # 乙 has no B1 row because all its B1 estimates are priors
    assert summary[["county", "row_type", "competency"]].fillna("").values.tolist() == [
        ["乙", "group", ""],
        ["乙", "competency", "A1"],
        ["甲", "group", ""],
        ["甲", "competency", "A1"],
        ["甲", "competency", "B1"],
    ]
    jia_group = summary.iloc[2]
    assert jia_group["n"] == 6 and jia_group["common_gaps"] == "A1(4)；B1(2)；C1(2)"
    a1 = summary.iloc[3]
    assert a1["n"] == 6 and a1["p25"] == pytest.approx(51.25)


def test_behind_on_hours_lists_teachers_owing_most_first_within_the_filter() -> None:
    rows = teacher_rows()
    assert behind_on_hours(rows, {"county": "甲"}) == ["j4", "j0", "j2", "j5", "j3"]
    assert behind_on_hours(rows, {"county": "乙", "teacher_id": ["y0", "y3"]}) == ["y0", "y3"]
    assert behind_on_hours(rows.drop(columns="it_hours_owed"), {"school_id": "s2"}) == ["j4", "j5"]
