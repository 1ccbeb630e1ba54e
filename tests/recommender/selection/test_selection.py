"""Trainee selection and classes: every eligibility rule with its reason, the three-year bar, exact quotas and
class sizes, classes that share needs, and the whole run on the synthetic province with its workbook."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from data.reference import load_policy
from data.workspace import Workspace
from recommender.config import Settings
from recommender.selection import (
    RULES,
    Project,
    SelectionContext,
    SelectionError,
    class_rows,
    class_sizes,
    eligibility,
    fill_quota,
    form_classes,
    parse_county_quotas,
    random_spread,
    read_allocations,
    roster_rows,
    run_selection,
    select_trainees,
    spread,
    summary_text,
)

POLICY = load_policy("jiangxi_2022")
ASOF = pd.Timestamp("2025-11-01")


def project(**fields: Any) -> Project:
    row = {"project_id": "P1", "name": "乡村中小学骨干班主任培训", "format": "blended", "days": 7.0}
    row.update(fields)
    return Project.from_row(row, default_class_size=50)


def teacher(teacher_id: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "teacher_id": teacher_id,
        "stage": "junior",
        "subject": "语文",
        "county": "修水县",
        "school_id": "S1",
        "school_type": "rural",
        "title": "first",
        "years_teaching": 10,
        "roles": ["head_teacher"],
    }
    row.update(fields)
    return row


def record(teacher_id: str, start: str, status: str, fmt: str = "offline", **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "record_id": f"R-{teacher_id}-{start}-{status}",
        "teacher_id": teacher_id,
        "course_id": None,
        "project_id": "JX2023-050",
        "project_name": "中学党组织书记培训",
        "start_date": pd.Timestamp(start),
        "end_date": pd.NaT,
        "format": fmt,
        "status": status,
    }
    row.update(fields)
    return row


def records(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(record("x", "2020-01-01", "completed")))


def verdict(teachers: list[dict[str, Any]], p: Project, recs: pd.DataFrame | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(teachers)
    return eligibility(frame, p, records() if recs is None else recs, POLICY, ASOF).set_index("teacher_id")


# ---------------------------------------------------------------------------------- the three-year bar


def test_three_year_bar_excludes_no_show_dropped_and_unfinished_face_to_face_projects() -> None:
    recs = records(
        record("absent", "2024-05-10", "no_show"),
        record("quit", "2023-09-01", "dropped", "blended"),
        record("unfinished", "2025-03-01", "enrolled", "shadowing", end_date=pd.Timestamp("2025-04-01")),
        record("finished", "2024-05-10", "completed"),
        record("in_training", "2025-10-01", "enrolled", end_date=pd.Timestamp("2025-12-01")),
    )
    names = ["absent", "quit", "unfinished", "finished", "in_training"]
    v = verdict([teacher(n) for n in names], project(), recs)
    assert v["bar"].to_dict() == {
        "absent": True,
        "quit": True,
        "unfinished": True,
        "finished": False,
        "in_training": False,
    }
    assert "2024年05月参加「中学党组织书记培训」未参训，2027年05月10日前不得参加" in v.at["absent", "reason"]
    assert "中途退出" in v.at["quit", "reason"]
    # an unfinished record is dated by its end, and the bar runs three years from there
    assert "未结业，2028年04月01日前" in v.at["unfinished", "reason"]
    assert v.loc[["finished", "in_training"], "eligible"].all()


@pytest.mark.parametrize("policy", ["default", "jiangxi_2022", "henan_2021"])
def test_three_year_bar_counts_a_workshop_as_face_to_face(policy: str) -> None:
    """A 工作坊 project is 集中培训: a no-show there bars, and a workshop project is guarded by the bar."""
    rules = load_policy(policy)
    recs = records(record("absent", "2024-05-10", "no_show", "workshop"))
    frame = pd.DataFrame([teacher("absent")])
    v = eligibility(frame, project(), recs, rules, ASOF).set_index("teacher_id")
    assert v.loc["absent", "bar"]
    assert project(format="workshop").face_to_face(rules)
    barred = records(record("absent", "2024-05-10", "no_show"))
    assert eligibility(frame, project(format="workshop"), barred, rules, ASOF)["bar"].all()


def test_three_year_bar_lapses_three_years_after_the_event() -> None:
    recs = records(
        record("lapsed", "2022-11-01", "no_show"),  # exactly three years before the as-of date
        record("still_barred", "2022-11-02", "no_show"),
    )
    v = verdict([teacher("lapsed"), teacher("still_barred")], project(), recs)
    assert not v.at["lapsed", "bar"]
    assert v.at["still_barred", "bar"]


def test_three_year_bar_ignores_online_projects_and_plain_courses() -> None:
    recs = records(
        record("online", "2025-01-10", "no_show", "online"),
        record("course", "2025-01-10", "no_show", project_id=None, project_name=None, course_id="C1"),
    )
    v = verdict([teacher("online"), teacher("course")], project(), recs)
    assert v["eligible"].all()


def test_three_year_bar_does_not_guard_an_online_project() -> None:
    recs = records(record("absent", "2025-01-10", "no_show"))
    online = project(format="online", days=0.0, online_hours=50.0)
    assert verdict([teacher("absent")], online, recs).at["absent", "eligible"]
    # with no format given, days of face-to-face training make it a face-to-face project
    unformatted = project(format=None, days=5.0)
    assert verdict([teacher("absent")], unformatted, recs).at["absent", "bar"]


def test_recent_completion_of_the_same_project_excludes_even_under_another_run_number() -> None:
    name = "原中央苏区乡村中小学教师教学能力提升帮扶培训(1)"
    recs = records(
        record(
            "same_name",
            "2024-06-01",
            "completed",
            project_name="原中央苏区乡村中小学教师教学能力提升帮扶培训(3)",
        ),
        record("same_id", "2023-06-01", "completed", project_id="P1", project_name=None),
        record("long_ago", "2021-06-01", "completed", project_name=name),
        record("other_content", "2024-06-01", "completed", project_name="中学党组织书记培训"),
        record("dropped_it", "2024-06-01", "dropped", "online", project_name=name),
    )
    names = ["same_name", "same_id", "long_ago", "other_content", "dropped_it"]
    v = verdict([teacher(n) for n in names], project(name=name), recs)
    assert v["repeat"].to_dict() == {
        "same_name": True,
        "same_id": True,
        "long_ago": False,
        "other_content": False,
        "dropped_it": False,
    }
    assert v.at["same_name", "reason"] == (
        "近期已完成同一内容培训：2024年06月结业「原中央苏区乡村中小学教师教学能力提升帮扶培训(3)」（3 年内不重复参训）"
    )


# ---------------------------------------------------------------------------------- target group rules

TARGET_CASES = [
    ("scope", {"scope_counties": ["修水县", "武宁县"]}, {"county": "于都县"}, "本项目限修水县、武宁县，该教师所在县区为于都县"),
    ("stage", {"target_stages": ["junior", "senior"]}, {"stage": "primary"}, "学段不符：本项目面向初中、高中，该教师为小学"),
    ("subject", {"target_subjects": ["语文", "数学"]}, {"subject": "英语"}, "学科不符：本项目面向语文、数学学科，该教师任教英语"),
    ("subject", {"excluded_subjects": "数学;英语"}, {"subject": "数学"}, "学科不符：本项目不含数学、英语学科，该教师任教数学"),
    ("school_type", {"target_school_types": ["rural"]}, {"school_type": "urban"}, "本项目面向乡村学校教师，该教师所在学校为城区"),
    ("role", {"target_roles": ["head_teacher", "principal"]}, {"roles": []}, "岗位不符：本项目面向班主任、校长，该教师未登记此岗位"),
    ("title", {"min_title": "first"}, {"title": "second"}, "职称未达要求：本项目要求一级及以上，该教师为二级"),
    ("years", {"min_years": 5}, {"years_teaching": 3}, "教龄未达要求：本项目要求教龄 5 年及以上，该教师教龄 3 年"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "project_fields", "teacher_fields", "reason"), TARGET_CASES)
def test_each_target_rule_excludes_with_a_readable_reason(
    rule: str, project_fields: dict[str, Any], teacher_fields: dict[str, Any], reason: str
) -> None:
    v = verdict([teacher("fits"), teacher("misfit", **teacher_fields)], project(**project_fields))
    assert v.at["fits", "eligible"] and v.at["fits", "reason"] == ""
    assert not v.at["misfit", "eligible"]
    assert [r for r in RULES if v.at["misfit", r]] == [rule]
    assert reason in v.at["misfit", "reason"]


def test_minimum_title_and_years_are_inclusive() -> None:
    p = project(min_title="first", min_years=10)
    assert verdict([teacher("edge", title="first", years_teaching=10)], p).at["edge", "eligible"]


def test_unknown_title_or_years_cannot_meet_a_minimum() -> None:
    p = project(min_title="second", min_years=3)
    v = verdict([teacher("no_title", title=None), teacher("no_years", years_teaching=pd.NA)], p)
    assert v.at["no_title", "reason"] == "职称未登记，无法确认是否达到二级"
    assert v.at["no_years", "reason"] == "教龄未登记，无法确认是否达到 3 年"


def test_a_teacher_failing_several_rules_gets_every_reason_in_order() -> None:
    recs = records(record("many", "2025-01-10", "no_show"))
    p = project(target_stages=["senior"], target_roles=["principal"])
    reason = verdict([teacher("many")], p, recs).at["many", "reason"]
    parts = reason.split("；")
    assert [part.split("：")[0] for part in parts] == ["学段不符", "岗位不符", "三年内不得参加集中培训"]


# ---------------------------------------------------------------------------------- quotas


def ranked(counties: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"teacher_id": [f"T{i}" for i in range(len(counties))], "county": counties})


def test_fill_quota_takes_exactly_the_quota_best_first() -> None:
    chosen = fill_quota(ranked(["甲"] * 10), 4, None)
    assert chosen.tolist() == [True] * 4 + [False] * 6
    assert fill_quota(ranked(["甲"] * 3), 4, None).all()
    assert fill_quota(ranked(["甲"] * 3), None, None).all()


def test_county_allocations_are_filled_exactly_and_shortfalls_stay_open() -> None:
    frame = ranked(["甲", "乙", "甲", "丙", "甲", "乙", "甲"])
    chosen = fill_quota(frame, 10, {"甲": 3, "乙": 5})
    # 甲 takes its best three, 乙 both it has (three seats stay open), 丙 has no allocation
    assert frame[chosen]["teacher_id"].tolist() == ["T0", "T1", "T2", "T4", "T5"]


def test_allocations_beyond_the_quota_are_refused() -> None:
    with pytest.raises(SelectionError, match="各县名额之和 9 超过项目名额 8"):
        fill_quota(ranked(["甲"]), 8, {"甲": 5, "乙": 4})


def test_parse_county_quotas_reads_text_and_reports_bad_entries() -> None:
    assert parse_county_quotas("修水县:50；武宁县：40") == {"修水县": 50, "武宁县": 40}
    assert parse_county_quotas(None) == {}
    with pytest.raises(SelectionError, match="修水县 的名额“五十”不是整数"):
        parse_county_quotas("修水县:五十")
    with pytest.raises(SelectionError, match="应写作 县区:人数"):
        parse_county_quotas("修水县50")


def test_allocations_file_with_chinese_headers_is_read(tmp_path: Path) -> None:
    path = tmp_path / "名额.csv"
    path.write_text("县区,名额\n修水县,50\n武宁县,40\n", encoding="utf-8-sig")
    assert read_allocations(path) == {"修水县": 50, "武宁县": 40}
    bad = tmp_path / "bad.csv"
    bad.write_text("地区,人数\n修水县,50\n", encoding="utf-8")
    with pytest.raises(SelectionError, match="应有 county（县区）与 quota（名额）两列"):
        read_allocations(bad)


# ---------------------------------------------------------------------------------- classes


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 80))
def test_class_sizes_are_as_equal_as_possible_and_never_above_class_size(n: int, class_size: int) -> None:
    sizes = class_sizes(n, class_size)
    assert sizes.sum() == n
    assert len(sizes) == -(-n // class_size)
    if n:
        assert sizes.max() <= class_size and sizes.max() - sizes.min() <= 1


def test_classes_of_fifty_for_360_trainees_are_eight_classes_of_45() -> None:
    assert class_sizes(360, 50).tolist() == [45] * 8


def test_classes_group_teachers_with_the_same_needs() -> None:
    rng = np.random.default_rng(0)
    # 60 teachers weak in the first competency, 40 weak in the second: two classes of 50
    it_gap = np.c_[rng.normal(40, 2, 60), rng.normal(5, 2, 60)]
    ethics_gap = np.c_[rng.normal(5, 2, 40), rng.normal(40, 2, 40)]
    label = form_classes(np.r_[it_gap, ethics_gap], class_size=50)
    assert np.bincount(label).tolist() == [50, 50]
    # the 40 of the second kind share one class, with the ten most similar of the first kind
    assert len(set(label[60:])) == 1
    assert (label[:60] != label[60]).sum() == 50


def test_mixed_classes_spread_every_county_evenly() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(130, 4))
    county = np.repeat([0, 1, 2], [70, 40, 20])
    label = form_classes(features, class_size=50, groups=county)
    counts = pd.crosstab(label, county).to_numpy()
    assert counts.sum(axis=1).tolist() == [44, 43, 43]
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()


def test_classes_are_more_homogeneous_than_a_random_split() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(200, 6)) * [8, 6, 4, 3, 2, 1]
    label = form_classes(features, class_size=50)
    assert spread(features, label) < 0.8 * random_spread(features, label)


# ---------------------------------------------------------------------------------- the whole run


@pytest.fixture(scope="module")
def context(province_ws: Workspace) -> SelectionContext:
    return SelectionContext.load(province_ws, Settings())


@pytest.fixture(scope="module")
def busiest(context: SelectionContext) -> str:
    """The project with the most eligible teachers in the province."""
    art = context.art
    counts = {
        p.project_id: int(
            eligibility(context.teachers, p, context.records, art.policy, art.asof)["eligible"].sum()
        )
        for p in context.project_list()
    }
    return max(counts, key=lambda k: counts[k])


def test_selection_fills_the_quota_with_eligible_teachers_in_exact_classes(
    context: SelectionContext, busiest: str
) -> None:
    quota = context.art.policy.class_size + 7
    s = select_trainees(context, busiest, quota=quota)
    assert s.n_eligible > quota
    assert len(s.roster) == quota and s.roster["teacher_id"].is_unique
    assert not s.roster["teacher_id"].isin(s.excluded["teacher_id"]).any()
    assert len(s.excluded) + s.n_eligible == s.n_considered == len(context.teachers)
    assert (s.excluded["reason"].str.len() > 0).all()
    assert sorted(s.roster.groupby("class_no").size().tolist()) == [28, 29]
    assert s.classes["n_teachers"].sum() == quota
    assert s.cost.total_yuan == quota * (s.project.days * 400 + s.project.online_hours * 3)


def test_rural_priority_is_the_policy_weight_added_to_need(context: SelectionContext, busiest: str) -> None:
    s = select_trainees(context, busiest, quota=30)
    rural = (s.ranked["rural_bonus"] > 0).to_numpy()
    assert np.allclose(s.ranked["rural_bonus"][rural], context.art.policy.rural_priority_weight)
    assert np.allclose(s.ranked["score"], s.ranked["need"] + s.ranked["rural_bonus"])
    assert s.ranked["score"].is_monotonic_decreasing
    flat = select_trainees(context, busiest, quota=30, rural_priority_weight=0.0)
    assert flat.ranked["need"].is_monotonic_decreasing
    assert (s.roster["school_type"] == "rural").mean() >= (flat.roster["school_type"] == "rural").mean()


def test_selected_teachers_need_the_project_more_than_those_left_out(
    context: SelectionContext, busiest: str
) -> None:
    s = select_trainees(context, busiest, quota=40, rural_priority_weight=0.0)
    left_out = s.ranked[~s.ranked["selected"]]
    assert s.roster["need"].min() >= left_out["need"].max()
    assert s.roster["reason"].str.startswith("需求得分").all()


def test_per_county_allocations_are_honoured_on_the_province(context: SelectionContext, busiest: str) -> None:
    s0 = select_trainees(context, busiest)
    counties = s0.ranked["county"].value_counts()
    big, small = counties.index[0], counties.index[-1]
    s = select_trainees(context, busiest, allocations={big: 3, small: counties[small] + 2})
    got = s.roster["county"].value_counts().to_dict()
    assert got == {big: 3, small: int(counties[small])}
    row = s.allocations.set_index("county").loc[small]
    assert row["unfilled"] == 2
    assert any("名额未满" in note for note in s.notes)


def test_a_psychology_project_is_read_as_teaching_psychological_support(context: SelectionContext) -> None:
    psychology = next(p for p in context.project_list() if "心理健康" in p.name)
    content = context.contents[psychology.project_id]
    names = context.art.taxonomy.set_index("code")["name"]
    assert "学生心理健康教育与辅导" in [names[c] for c in content.codes[:2]]


def test_unknown_project_is_refused_with_a_message(context: SelectionContext) -> None:
    with pytest.raises(SelectionError, match="没有编号为 NOPE 的培训项目"):
        select_trainees(context, "NOPE")


def test_workbook_holds_the_roster_and_classes(province_ws: Workspace, busiest: str, tmp_path: Path) -> None:
    out = tmp_path / "名单.xlsx"
    s = run_selection(province_ws, busiest, Settings(), out, mix_counties=True, quota=60)
    wb = load_workbook(out, read_only=True)
    assert wb.sheetnames[:5] == ["概览", "名单", "分班", "班级画像", "不符合条件统计"]
    sheet_rows = [tuple(r) for r in wb["名单"].iter_rows(min_row=2, values_only=True)]
    assert sheet_rows == roster_rows(s)
    assert [tuple(r) for r in wb["分班"].iter_rows(min_row=2, values_only=True)] == class_rows(s)
    overview = dict(wb["概览"].iter_rows(min_row=2, values_only=True))
    assert overview["入选人数"] == 60 and overview["编班方式"] == "各班混合不同县区"
    portrait_classes = {r[0] for r in wb["班级画像"].iter_rows(min_row=2, values_only=True)}
    assert portrait_classes == {"第 1 班", "第 2 班"}


def test_a_project_nobody_may_join_gives_an_empty_roster_and_a_note(context: SelectionContext) -> None:
    kindergarten = next(p for p in context.project_list() if p.target_stages == ("kindergarten",))
    teachers = context.teachers[context.teachers["stage"] != "kindergarten"]
    s = select_trainees(replace(context, teachers=teachers), kindergarten.project_id)
    assert s.roster.empty and s.classes.empty and s.n_eligible == 0
    assert s.cost.total_yuan == 0
    assert any("名额未满" in note for note in s.notes)
    assert roster_rows(s) == [] and class_rows(s) == []


def test_the_printed_summary_names_counts_cost_and_reasons(context: SelectionContext, busiest: str) -> None:
    s = select_trainees(context, busiest, quota=60)
    text = summary_text(s, top=3)
    assert f"符合条件 {s.n_eligible} 人，入选 60 人，编为 2 个班" in text
    assert f"合计 {s.cost.total_yuan:,.0f} 元" in text
    assert text.count("需求得分") == 3 and "……共 60 人" in text


def test_a_county_view_shows_in_scope_ranks_counts_and_cost(context: SelectionContext, busiest: str) -> None:
    """A county trainer's view ranks its own teachers 1..n and costs its own trainees: a province rank or
    total would tell the county about teachers outside it."""
    full = select_trainees(context, busiest, quota=context.art.policy.class_size + 7)
    county = full.roster["county"].value_counts().index[-1]
    mine = full.within("county", county, context.teachers)
    assert 0 < len(mine.roster) < len(full.roster)
    assert mine.ranked["rank"].tolist() == list(range(1, mine.n_eligible + 1))
    assert mine.roster["rank"].tolist() == list(range(1, len(mine.roster) + 1))
    assert mine.cost.trainees == len(mine.roster)
    assert mine.cost.total_yuan == len(mine.roster) * full.cost.per_trainee_yuan
    assert all(str(full.n_eligible) not in note for note in mine.notes)
