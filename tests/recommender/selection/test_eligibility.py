"""Eligibility: every target-group rule with its reason, and the policy's bars (the three-year bar after a
no-show, no repeat of the same content)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from data.reference import load_policy
from recommender.selection import (
    RULES,
    Project,
    eligibility,
)
from recommender.selection.eligibility import bar_guards

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
    assert bar_guards(project(format="workshop"), rules)
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
