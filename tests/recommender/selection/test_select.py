"""The whole run on the synthetic province: roster, classes, cost, reasons, workbook and printed summary, and
what a county's trainer sees of it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook

from data.workspace import Workspace
from recommender.config import Settings
from recommender.selection import (
    SelectionContext,
    SelectionError,
    class_rows,
    eligibility,
    roster_rows,
    run_selection,
    select_trainees,
    summary_text,
)


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
