"""`tdr evaluate` prints what it wrote, however long the report is, and exits 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import recommender.evaluate
from tdr.cli import app as cli


def test_evaluate_prints_a_long_report_whole_and_exits_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = {
        "ranking": {"methods": {"tdr": {"mean": 0.5}, "popular": {"mean": 0.25}}},
        "menus": {f"rule_{i}": {"violations": 0, "checked": 1000 + i} for i in range(300)},
    }

    def fake(ws: Any, truth: Any, k: int = 10) -> dict[str, Any]:
        return long

    monkeypatch.setattr(recommender.evaluate, "evaluate", fake)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["evaluate", "--workspace", str(tmp_path / "ws"), "--out", str(out)])
    assert len(json.dumps(long["menus"])) > 4000
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8")) == long
    assert "rule_299" in result.output
