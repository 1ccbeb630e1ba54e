"""Seats: the quota taken best first, per-county allocations filled exactly, bad allocations refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recommender.selection import (
    SelectionError,
    fill_quota,
    parse_county_quotas,
    read_allocations,
)


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
