"""Study menu (选学菜单): each policy rule holds, requests re-plan within the policy, and an infeasible policy
names the rule it relaxes and returns the best menu that keeps every other rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from data.policy import MandatoryTopic, Policy
from data.reference import load_policy
from recommender.menu import (
    RELAXATION_ORDER,
    RULES,
    Menu,
    MenuRequest,
    TeacherMenuContext,
    check_menu,
    plan_menu,
    plan_menus,
)

ETHICS = "师德师风"
TEACHER = TeacherMenuContext("T1", "primary")


def policy(**changes: object) -> Policy:
    """The default policy: 50–60 学时, practical ≥ 50 %, at most 3 courses per competency, 师德师风 owed."""
    return dataclasses.replace(load_policy("default"), **changes)  # type: ignore[arg-type]


def course(
    cid: str,
    hours: float = 10.0,
    *,
    score: float | None = None,
    fmt: str = "workshop",
    practical: bool = True,
    topic: str | None = None,
    comps: tuple[str, ...] = ("A1",),
    prereqs: tuple[str, ...] = (),
    cost: float = 0.0,
) -> dict[str, object]:
    return {
        "course_id": cid,
        "score": score,
        "hours": hours,
        "format": fmt,
        "practical": practical,
        "mandatory_topic": topic,
        "competencies": list(comps),
        "prerequisites": list(prereqs),
        "cost_yuan": cost,
    }


def cands(*rows: dict[str, object]) -> pd.DataFrame:
    """Candidates in rank order: a row without a score gets one that keeps the order given."""
    frame = pd.DataFrame(list(rows))
    frame["score"] = frame["score"].astype(float).fillna(pd.Series(-np.arange(len(frame), dtype=float)))
    return frame


def spread(n: int, hours: float = 10.0, **kw: object) -> list[dict[str, object]]:
    """n ordinary courses, each on its own competency."""
    return [course(f"C{i}", hours, comps=(f"K{i}",), **kw) for i in range(n)]  # type: ignore[arg-type]


def plan(
    frame: pd.DataFrame,
    pol: Policy,
    teacher: TeacherMenuContext = TEACHER,
    request: MenuRequest | None = None,
) -> Menu:
    menu = plan_menu(frame, teacher, pol, request)
    assert check_menu(menu, frame, teacher, pol, request) == []
    return menu


def test_menu_never_repeats_a_completed_course() -> None:
    teacher = TeacherMenuContext("T1", "primary", completed=frozenset({"C0", "C1"}))
    menu = plan(cands(*spread(8)), policy(), teacher)
    assert menu.status == "ok"
    assert not {"C0", "C1"} & set(menu.items)


def test_menu_may_repeat_a_completed_course_when_the_policy_allows_it() -> None:
    teacher = TeacherMenuContext("T1", "primary", completed=frozenset({"C0"}))
    menu = plan(cands(*spread(8)), policy(exclude_completed=False), teacher)
    assert "C0" in menu.items


def test_menu_covers_the_missing_ethics_topic() -> None:
    frame = cands(*spread(8), course("E1", 4, topic=ETHICS, practical=False, comps=("E",)))
    teacher = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS,))
    menu = plan(frame, policy(), teacher)
    assert menu.status == "ok"
    assert "E1" in menu.items


def test_menu_leaves_out_a_topic_the_teacher_does_not_owe() -> None:
    frame = cands(*spread(8), course("E1", 4, topic=ETHICS, practical=False, comps=("E",)))
    assert "E1" not in plan(frame, policy()).items


def test_menu_honours_the_format_a_mandatory_topic_requires() -> None:
    online_only = (MandatoryTopic(ETHICS, 12, (), ("online",)),)
    frame = cands(
        *spread(8),
        course("E_off", 4, topic=ETHICS, fmt="offline", practical=False, comps=("E",)),
        course("E_on", 4, topic=ETHICS, fmt="online", practical=False, comps=("E",)),
    )
    teacher = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS,))
    menu = plan(frame, policy(mandatory_topics=online_only), teacher)
    assert "E_on" in menu.items


def test_menu_hours_stay_within_the_window() -> None:
    frame = cands(*[course(f"C{i}", h, comps=(f"K{i}",)) for i, h in enumerate([30, 24, 16, 12, 8, 6, 4, 2])])
    menu = plan(frame, policy())
    assert menu.status == "ok"
    assert 50 <= menu.total_hours <= 60
    assert menu.total_hours == pytest.approx(sum(menu.hours))


def test_menu_meets_the_practical_share() -> None:
    frame = cands(
        *[course(f"L{i}", 10, practical=False, comps=(f"L{i}",)) for i in range(6)],
        *[course(f"P{i}", 10, practical=True, comps=(f"P{i}",)) for i in range(6)],
    )
    menu = plan(frame, policy())
    assert menu.practical_hours >= 0.5 * menu.total_hours
    assert sum(c.startswith("P") for c in menu.items) >= 3


def test_menu_stays_within_budget() -> None:
    frame = cands(*[course(f"C{i}", 10, cost=200.0 if i < 4 else 0.0, comps=(f"K{i}",)) for i in range(10)])
    menu = plan(frame, policy(budget_yuan=400.0))
    assert menu.cost_yuan <= 400
    assert menu.status == "ok"


def test_menu_reads_a_missing_cost_as_free() -> None:
    frame = cands(*[course(f"C{i}", 10, cost=np.nan, comps=(f"K{i}",)) for i in range(6)])
    assert plan(frame, policy(budget_yuan=0.0)).status == "ok"


def test_menu_uses_only_allowed_formats() -> None:
    frame = cands(
        *[course(f"S{i}", 10, fmt="shadowing", comps=(f"S{i}",)) for i in range(6)],
        *[course(f"W{i}", 10, fmt="workshop", comps=(f"W{i}",)) for i in range(6)],
    )
    menu = plan(frame, policy(allowed_formats=("workshop", "online")))
    assert menu.status == "ok"
    assert all(c.startswith("W") for c in menu.items)


def test_menu_caps_courses_per_competency() -> None:
    frame = cands(
        *[course(f"A{i}", 10, comps=("A1",)) for i in range(5)],
        *[course(f"B{i}", 10, comps=("B1", f"X{i}")) for i in range(5)],
    )
    menu = plan(frame, policy(max_courses_per_competency=3))
    assert sum(c.startswith("A") for c in menu.items) <= 3
    assert sum(c.startswith("B") for c in menu.items) <= 3


def test_menu_includes_a_prerequisite_before_its_dependant() -> None:
    frame = cands(
        course("ADV", 20, comps=("A",), prereqs=("BASE",)), *spread(4), course("BASE", 10, comps=("B",))
    )
    menu = plan(frame, policy())
    assert menu.items.index("BASE") < menu.items.index("ADV")


def test_menu_counts_a_completed_prerequisite_as_met() -> None:
    teacher = TeacherMenuContext("T1", "primary", completed=frozenset({"BASE"}))
    frame = cands(course("ADV", 20, comps=("A",), prereqs=("BASE",)), *spread(5))
    assert "ADV" in plan(frame, policy(), teacher).items


def test_menu_drops_a_course_whose_prerequisite_is_neither_offered_nor_completed() -> None:
    frame = cands(course("ADV", 20, comps=("A",), prereqs=("ELSEWHERE",)), *spread(6))
    assert "ADV" not in plan(frame, policy()).items


def test_menu_never_offers_courses_whose_prerequisites_form_a_cycle() -> None:
    frame = cands(
        course("X", 10, comps=("X",), prereqs=("Y",)),
        course("Y", 10, comps=("Y",), prereqs=("X",)),
        *spread(6),
    )
    menu = plan(frame, policy())
    assert not {"X", "Y"} & set(menu.items)


def test_menu_prefers_better_ranked_courses() -> None:
    menu = plan(cands(*spread(12)), policy(practical_share_min=0.0))
    assert set(menu.items) == {f"C{i}" for i in range(6)}
    assert menu.items == tuple(f"C{i}" for i in range(6))


def test_request_sets_its_own_hours_target_and_keeps_the_slack() -> None:
    menu = plan(cands(*spread(12)), policy(), request=MenuRequest(hours_target=20.0))
    assert 20 <= menu.total_hours <= 30


def test_request_narrows_the_formats() -> None:
    frame = cands(
        *[course(f"O{i}", 10, fmt="online", comps=(f"O{i}",)) for i in range(6)],
        *[course(f"W{i}", 10, fmt="workshop", comps=(f"W{i}",)) for i in range(6)],
    )
    menu = plan(frame, policy(), request=MenuRequest(formats=("workshop",)))
    assert all(c.startswith("W") for c in menu.items)


def test_request_cannot_add_a_format_the_policy_forbids() -> None:
    frame = cands(*[course(f"S{i}", 10, fmt="shadowing", comps=(f"S{i}",)) for i in range(6)], *spread(6))
    pol = policy(allowed_formats=("workshop",))
    menu = plan(frame, pol, request=MenuRequest(formats=("shadowing", "workshop")))
    assert not any(c.startswith("S") for c in menu.items)


def test_request_excludes_courses() -> None:
    menu = plan(cands(*spread(9)), policy(), request=MenuRequest(exclude=frozenset({"C0", "C1"})))
    assert not {"C0", "C1"} & set(menu.items)
    assert menu.status == "ok"


def test_request_budget_applies_under_the_policy_budget() -> None:
    frame = cands(*[course(f"C{i}", 10, cost=100.0, comps=(f"K{i}",)) for i in range(8)])
    menu = plan(frame, policy(budget_yuan=1000.0), request=MenuRequest(budget_yuan=500.0))
    assert menu.cost_yuan <= 500


def test_request_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError):
        MenuRequest(formats=("carrier_pigeon",))


def assert_relaxed_only(
    menu: Menu, rule: str, frame: pd.DataFrame, pol: Policy, teacher: TeacherMenuContext
) -> None:
    """The menu relaxes ``rule``, really breaks it, and keeps every other rule."""
    assert menu.relaxed_rule == rule
    assert check_menu(menu, frame, teacher, pol) == []
    broken = check_menu(dataclasses.replace(menu, relaxed_rule=None), frame, teacher, pol)
    assert broken and all(b.startswith(f"{rule}:") for b in broken)


def test_topic_without_a_course_names_the_rule_and_relaxes_only_it() -> None:
    teacher = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS,))
    frame = cands(*spread(8))
    menu = plan_menu(frame, teacher, policy())
    assert menu.status == "relaxed"
    assert menu.message is not None
    assert menu.message.startswith("无法满足「必修专题：师德师风」：候选课程中没有该专题的课程")
    assert 50 <= menu.total_hours <= 60
    assert_relaxed_only(menu, "mandatory_topic", frame, policy(), teacher)


def test_relaxed_topics_still_cover_every_topic_that_can_be_covered() -> None:
    teacher = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS, "思想政治"))
    pol = policy(
        mandatory_topics=(MandatoryTopic(ETHICS, 12, (), ()), MandatoryTopic("思想政治", 12, (), ()))
    )
    frame = cands(*spread(8), course("Z", 4, topic="思想政治", comps=("Z",)))
    menu = plan_menu(frame, teacher, pol)
    assert "Z" in menu.items
    assert menu.message is not None and "思想政治" not in menu.message
    assert_relaxed_only(menu, "mandatory_topic", frame, pol, teacher)


def test_too_few_practical_courses_relax_the_practical_share() -> None:
    frame = cands(*spread(8, practical=False), course("P", 10, comps=("P",)))
    menu = plan_menu(frame, TEACHER, policy())
    assert menu.message is not None and "实践性课程学时不少于 50%" in menu.message
    assert "P" in menu.items
    assert_relaxed_only(menu, "practical_share", frame, policy(), TEACHER)


def test_too_few_hours_take_what_fits() -> None:
    frame = cands(*spread(3))
    menu = plan_menu(frame, TEACHER, policy())
    assert menu.total_hours == 30
    assert menu.message is not None and "学时要求：50–60 学时" in menu.message
    assert_relaxed_only(menu, "hours", frame, policy(), TEACHER)


def test_a_budget_that_caps_the_hours_relaxes_the_hours_first() -> None:
    frame = cands(*[course(f"C{i}", 10, cost=100.0, comps=(f"K{i}",)) for i in range(8)])
    pol = policy(budget_yuan=300.0)
    menu = plan_menu(frame, TEACHER, pol)
    assert (menu.total_hours, menu.cost_yuan) == (30, 300)
    assert_relaxed_only(menu, "hours", frame, pol, TEACHER)


OWES_ETHICS = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS,))


# Budget, formats and the per-competency cap are relaxed only when relaxing an earlier rule cannot help: a topic
# still owed that only a breach can cover, and too few hours for a menu without the topic.


def test_an_owed_topic_over_budget_relaxes_the_budget_with_the_least_overrun() -> None:
    frame = cands(
        *spread(8, cost=100.0),
        course("E_dear", 4, topic=ETHICS, comps=("E",), cost=900.0),
        course("E_cheap", 4, topic=ETHICS, comps=("E",), cost=400.0),
    )
    pol = policy(budget_yuan=300.0)
    menu = plan_menu(frame, OWES_ETHICS, pol)
    assert "E_cheap" in menu.items and "E_dear" not in menu.items
    assert menu.cost_yuan == 900.0  # the topic and 50 学时 at the least cost
    assert menu.message is not None and "费用上限：300 元" in menu.message
    assert_relaxed_only(menu, "budget", frame, pol, OWES_ETHICS)


def test_an_owed_topic_only_in_a_forbidden_format_relaxes_the_formats() -> None:
    frame = cands(
        *spread(2),
        *[course(f"S{i}", 10, fmt="shadowing", comps=(f"S{i}",)) for i in range(6)],
        course("E", 4, topic=ETHICS, fmt="shadowing", comps=("E",)),
    )
    pol = policy(allowed_formats=("workshop",))
    menu = plan_menu(frame, OWES_ETHICS, pol)
    assert {"E", "C0", "C1"} <= set(menu.items)
    assert menu.message is not None and "培训形式：限于工作坊" in menu.message
    assert "34 学时其他形式" in menu.message
    assert_relaxed_only(menu, "formats", frame, pol, OWES_ETHICS)


def test_owed_topics_on_one_crowded_competency_relax_the_cap() -> None:
    both = (MandatoryTopic(ETHICS, 12, (), ()), MandatoryTopic("思想政治", 12, (), ()))
    teacher = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS, "思想政治"))
    frame = cands(
        *spread(4),
        course("E", 4, topic=ETHICS, comps=("M",)),
        course("Z", 4, topic="思想政治", comps=("M",)),
        course("X", 4, comps=("M",)),
    )
    pol = policy(mandatory_topics=both, max_courses_per_competency=1)
    menu = plan_menu(frame, teacher, pol)
    assert {"E", "Z"} <= set(menu.items)
    assert menu.message is not None and "「M」3 门" in menu.message
    assert_relaxed_only(menu, "per_competency", frame, pol, teacher)


def test_rules_are_relaxed_in_the_documented_order() -> None:
    relaxable = [r.code for r in RULES if r.relaxable]
    assert list(RELAXATION_ORDER) == relaxable
    assert relaxable == ["mandatory_topic", "practical_share", "hours", "budget", "formats", "per_competency"]


def test_no_menu_when_two_rules_fail_at_once() -> None:
    teacher = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS,))
    frame = cands(*spread(2), course("E1", 4, topic=ETHICS, practical=False, comps=("E",), cost=900.0))
    menu = plan_menu(frame, teacher, policy(budget_yuan=100.0))
    assert menu.status == "empty"
    assert menu.items == ()
    assert menu.relaxed_rule is None
    assert menu.message is not None and menu.message.startswith("无法生成选学菜单")


def test_no_candidates_give_an_empty_menu_that_says_why() -> None:
    teacher = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS,))
    menu = plan_menu(cands(course("C0")).iloc[:0], teacher, policy())
    assert menu.status == "empty"
    assert menu.message is not None and "没有可选的候选课程" in menu.message


def test_check_menu_reports_each_broken_rule_by_code() -> None:
    frame = cands(*spread(3, practical=False), course("S", 10, fmt="shadowing", cost=50.0, prereqs=("C0",)))
    teacher = TeacherMenuContext("T1", "primary", missing_mandatory=(ETHICS,), completed=frozenset({"C1"}))
    bad = Menu("T1", ("S", "C0", "C1"), (10.0, 10.0, 10.0), 30.0, 10.0, 50.0, "ok")
    pol = policy(allowed_formats=("workshop",), budget_yuan=10.0)
    broken = {b.split(":")[0] for b in check_menu(bad, frame, teacher, pol)}
    assert broken == {
        "completed",
        "prerequisites",
        "hours",
        "practical_share",
        "mandatory_topic",
        "budget",
        "formats",
    }


def test_menu_frame_lists_courses_with_hours() -> None:
    menu = plan(cands(*spread(8)), policy())
    frame = menu.to_frame()
    assert list(frame.columns) == ["teacher_id", "course_id", "hours"]
    assert frame["course_id"].tolist() == list(menu.items)
    assert (frame["teacher_id"] == "T1").all()


def test_plan_menus_gives_each_teacher_the_menu_plan_menu_gives() -> None:
    rng = np.random.default_rng(7)
    frame = cands(
        *[course(f"C{i}", float(rng.choice([4, 8, 10, 16])), comps=(f"K{i % 5}",)) for i in range(15)]
    )
    frame.loc[3, "mandatory_topic"] = ETHICS
    teachers = pd.DataFrame(
        {
            "teacher_id": ["T1", "T2", "T3"],
            "stage": ["primary", "junior", "senior"],
            "missing_mandatory": [[ETHICS], [], [ETHICS]],
            "completed": [["C0"], [], ["C3"]],
        }
    )
    long = pd.concat(
        [frame.assign(teacher_id=t, score=rng.normal(size=len(frame))) for t in teachers["teacher_id"]],
        ignore_index=True,
    )
    menus, statuses = plan_menus(long.sample(frac=1.0, random_state=1), teachers, policy())
    for t in teachers.itertuples():
        context = TeacherMenuContext(
            t.teacher_id, t.stage, tuple(t.missing_mandatory), frozenset(t.completed)
        )
        one = plan_menu(long[long["teacher_id"] == t.teacher_id], context, policy())
        mine = menus[menus["teacher_id"] == t.teacher_id].sort_values("position")
        assert tuple(mine["course_id"]) == one.items
        status = statuses.set_index("teacher_id").loc[t.teacher_id]
        assert (status["status"], status["relaxed_rule"]) == (one.status, one.relaxed_rule)
    assert statuses.loc[statuses["teacher_id"] == "T3", "relaxed_rule"].item() == "mandatory_topic"


def test_plan_menus_reports_a_teacher_without_candidates() -> None:
    teachers = pd.DataFrame(
        {"teacher_id": ["T1", "T2"], "stage": ["primary", "primary"], "missing_mandatory": [[], []]}
    )
    long = cands(*spread(8)).assign(teacher_id="T1")
    menus, statuses = plan_menus(long, teachers, policy())
    assert set(menus["teacher_id"]) == {"T1"}
    assert statuses.set_index("teacher_id").loc["T2", "status"] == "empty"
