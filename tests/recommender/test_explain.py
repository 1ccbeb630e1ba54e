"""Reasons (推荐理由): each sentence states only what its facts row supports, with the row's numbers rounded."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.explain import FACT_COLUMNS, FORMAT_ZH, reasons


def facts(**overrides: Any) -> pd.DataFrame:
    """One row: a teacher 18 points behind peers on a competency, a course 63 peers completed."""
    row: dict[str, Any] = {
        "comp_name": "数据支持的学情分析",
        "estimate": 42.0,
        "peer_mean": 60.0,
        "is_prior": False,
        "mandatory_missing": None,
        "peer_completions": 63,
        "peer_completion_rate": 0.92,
        "satisfaction": None,
        "n_ratings": 0,
        "format_zh": "线上",
        "format_share": 0.2,
        "level": 2,
        "similar_course_title": None,
    }
    row.update(overrides)
    return pd.DataFrame([row])


def reason(**overrides: Any) -> str:
    return str(reasons(facts(**overrides)).iloc[0])


def test_reason_names_the_gap_and_peer_uptake_with_the_numbers() -> None:
    assert reason() == (
        "针对您在「数据支持的学情分析」上的差距（估计 42 分，低于同学段同学科教师平均 18 分）；"
        "同学段同学科 63 位教师已完成，结业率 92%。"
    )


def test_no_gap_claim_when_the_teacher_is_above_peers_and_above_sixty() -> None:
    text = reason(estimate=75.0, peer_mean=70.0)
    assert "差距" not in text and "低于" not in text
    assert "培养「数据支持的学情分析」能力" in text


def test_gap_claim_needs_three_points_below_peers() -> None:
    assert "低于" not in reason(estimate=68.0, peer_mean=70.5)
    assert "低于同学段同学科教师平均 3 分" in reason(estimate=67.0, peer_mean=70.0)


def test_a_low_estimate_is_a_gap_without_a_peer_comparison_when_peers_are_no_better() -> None:
    text = reason(estimate=55.0, peer_mean=54.0)
    assert "差距（估计 55 分，未达 60 分）" in text
    assert "低于" not in text


def test_a_prior_estimate_is_called_an_estimate_from_similar_teachers() -> None:
    assert "参照同类教师估计 42 分" in reason(is_prior=True)


def test_no_gap_claim_without_an_estimate() -> None:
    assert "差距" not in reason(estimate=None)


def test_no_peer_numbers_below_five_completions() -> None:
    text = reason(peer_completions=4)
    assert "位教师已完成" not in text and "结业率" not in text


def test_peer_completions_without_a_rate_are_quoted_alone() -> None:
    assert "同学段同学科 6 位教师已完成。" in reason(peer_completions=6, peer_completion_rate=None)


def test_no_satisfaction_below_five_ratings() -> None:
    assert "满意度" not in reason(satisfaction=4.8, n_ratings=4)
    assert "学员满意度 4.8 分（满分 5 分，5 人评价）" in reason(satisfaction=4.75, n_ratings=5)


def test_a_mandatory_topic_owed_comes_first() -> None:
    assert reason(mandatory_missing="师德师风").startswith("涵盖您尚未完成的必修专题「师德师风」；针对您在")


def test_without_topic_or_gap_the_reason_says_what_the_course_builds() -> None:
    text = reason(estimate=80.0, peer_mean=70.0, level=3, format_zh="工作坊", peer_completions=0)
    assert text == "高级工作坊课程，培养「数据支持的学情分析」能力。"


def test_without_any_fact_the_reason_is_the_ranking_itself() -> None:
    empty = dict.fromkeys(FACT_COLUMNS)
    assert str(reasons(pd.DataFrame([empty])).iloc[0]) == "根据您的能力画像与学习记录综合排序推荐。"


def test_the_usual_format_is_mentioned_from_half_of_the_hours() -> None:
    assert "线上形式占您已学学时的 70%" in reason(format_share=0.7, peer_completions=0)
    assert "形式占您已学学时" not in reason(format_share=0.4, peer_completions=0)


def test_a_course_often_taken_with_one_completed_is_named() -> None:
    assert "常与您已完成的《课堂观察》一起选学" in reason(similar_course_title="课堂观察")


def test_a_reason_has_at_most_three_clauses() -> None:
    text = reason(mandatory_missing="师德师风", satisfaction=4.5, n_ratings=9, similar_course_title="X")
    assert text.count("；") == 2


def test_reasons_keep_the_index_of_the_facts() -> None:
    frame = pd.concat([facts(), facts(estimate=90.0)]).set_axis([10, 20])
    assert reasons(frame).index.tolist() == [10, 20]


def test_missing_fact_columns_are_named() -> None:
    with pytest.raises(KeyError, match="satisfaction"):
        reasons(facts().drop(columns=["satisfaction"]))


def test_every_format_has_a_chinese_name() -> None:
    assert set(FORMAT_ZH) == {"online", "offline", "blended", "workshop", "shadowing", "school_based"}


def half_up(x: float) -> int:
    return math.floor(x + 0.5)


maybe = st.none() | st.floats(0, 100, allow_nan=False)
rows = st.fixed_dictionaries(
    {
        "comp_name": st.sampled_from([None, "课堂观察", "学情分析"]),
        "estimate": maybe,
        "peer_mean": maybe,
        "is_prior": st.booleans(),
        "mandatory_missing": st.sampled_from([None, "师德师风"]),
        "peer_completions": st.integers(0, 200),
        "peer_completion_rate": st.none() | st.floats(0, 1),
        "satisfaction": st.none() | st.floats(1, 5),
        "n_ratings": st.integers(0, 50),
        "format_zh": st.sampled_from([None, *FORMAT_ZH.values()]),
        "format_share": st.none() | st.floats(0, 1),
        "level": st.sampled_from([None, 1, 2, 3]),
        "similar_course_title": st.sampled_from([None, "说课"]),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, min_size=1, max_size=20))
def test_every_number_in_a_reason_is_its_fact_rounded(block: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(block, columns=list(FACT_COLUMNS))
    for r, text in zip(block, reasons(frame), strict=True):
        assert text.endswith("。") and text.count("；") <= 2
        est, peer = r["estimate"], r["peer_mean"]
        if m := re.search(r"估计 (\d+) 分", text):
            assert r["comp_name"] and est is not None and int(m.group(1)) == half_up(est)
            assert ("参照同类教师估计" in text) == r["is_prior"]
        if m := re.search(r"低于同学段同学科教师平均 (\d+) 分", text):
            assert peer is not None and est is not None and peer - est >= 3
            assert int(m.group(1)) == half_up(peer - est)
        if "未达 60 分" in text:
            assert est is not None and est < 60
        if "差距" not in text and r["comp_name"] and est is not None:
            assert est >= 60 and (peer is None or est > peer - 3)
        if m := re.search(r"(\d+) 位教师已完成", text):
            assert r["peer_completions"] >= 5 and int(m.group(1)) == r["peer_completions"]
        else:
            assert r["peer_completions"] < 5
        if m := re.search(r"结业率 (\d+)%", text):
            assert int(m.group(1)) == half_up(r["peer_completion_rate"] * 100)
        if m := re.search(r"满意度 (\d\.\d) 分（满分 5 分，(\d+) 人评价）", text):
            assert r["n_ratings"] >= 5 and int(m.group(2)) == r["n_ratings"]
            assert float(m.group(1)) == pytest.approx(half_up(r["satisfaction"] * 10) / 10)
        if m := re.search(r"占您已学学时的 (\d+)%", text):
            assert r["format_share"] >= 0.5 and int(m.group(1)) == half_up(r["format_share"] * 100)
        assert ("必修专题" in text) == (r["mandatory_missing"] is not None)
        if r["mandatory_missing"] is not None:
            assert text.startswith("涵盖您尚未完成的必修专题")
        assert not np.any([s in text for s in ("nan", "None", "<NA>")])


@pytest.mark.parametrize(
    ("score", "shown"), [(4.25, "4.3"), (4.35, "4.4"), (4.45, "4.5"), (4.95, "5.0"), (0.05, "0.1")]
)
def test_a_satisfaction_score_is_rounded_half_up_to_tenths(score: float, shown: str) -> None:
    assert f"学员满意度 {shown} 分（满分 5 分，5 人评价）" in reason(satisfaction=score, n_ratings=5)


def test_thresholds_are_inclusive_and_a_fractional_level_is_cut_to_its_integer() -> None:
    text = reason(estimate=80.0, level=1.5, peer_completions=5, peer_completion_rate=None, format_share=0.5)
    assert text == (
        "入门线上课程，培养「数据支持的学情分析」能力；同学段同学科 5 位教师已完成；线上形式占您已学学时的 50%。"
    )


def reference(r: dict[str, Any]) -> str:
    """The sentence for one row, written out plainly from the rules in reasons()' docstring."""

    def text(v: Any) -> str | None:
        return v if isinstance(v, str) and v.strip() else None

    def num(v: Any) -> float:
        return math.nan if v is None else float(v)

    comp, topic, fmt = text(r["comp_name"]), text(r["mandatory_missing"]), text(r["format_zh"])
    est, peer, rate, sat = (
        num(r[c]) for c in ("estimate", "peer_mean", "peer_completion_rate", "satisfaction")
    )
    parts = [f"涵盖您尚未完成的必修专题「{topic}」"] if topic else []
    if comp and not math.isnan(est):
        head = f"针对您在「{comp}」上的差距（{'参照同类教师估计' if r['is_prior'] else '估计'} {half_up(est)} 分，"
        if not math.isnan(peer) and est <= peer - 3:
            parts.append(f"{head}低于同学段同学科教师平均 {half_up(peer - est)} 分）")
        elif est < 60:
            parts.append(f"{head}未达 60 分）")
    if not parts:
        kind = f"{({1: '入门', 2: '进阶', 3: '高级'}).get(r['level'], '')}{fmt or ''}课程"
        kind = kind if kind != "课程" else ""
        parts.append(
            f"{kind + '，' if kind else ''}培养「{comp}」能力"
            if comp
            else kind or "根据您的能力画像与学习记录综合排序推荐"
        )
    if r["peer_completions"] >= 5:
        done = f"同学段同学科 {r['peer_completions']} 位教师已完成"
        parts.append(done if math.isnan(rate) else f"{done}，结业率 {half_up(rate * 100)}%")
    if not math.isnan(sat) and r["n_ratings"] >= 5:
        parts.append(f"学员满意度 {half_up(sat * 10) / 10:.1f} 分（满分 5 分，{r['n_ratings']} 人评价）")
    if text(r["similar_course_title"]):
        parts.append(f"常与您已完成的《{r['similar_course_title']}》一起选学")
    if fmt and r["format_share"] is not None and r["format_share"] >= 0.5:
        parts.append(f"{fmt}形式占您已学学时的 {half_up(r['format_share'] * 100)}%")
    return "；".join(parts[:3]) + "。"


# Blocks that repeat rows, as a teacher's block repeats a course's facts: each row still gets its own sentence.
blocks = st.lists(rows, min_size=1, max_size=6).flatmap(
    lambda distinct: st.lists(st.sampled_from(distinct), min_size=1, max_size=30)
)


@settings(max_examples=300, deadline=None)
@given(blocks)
def test_each_sentence_is_the_one_its_row_alone_would_get(block: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(block, columns=list(FACT_COLUMNS))
    assert reasons(frame).tolist() == [reference(r) for r in block]
