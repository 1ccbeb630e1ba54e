"""The recommendation-quality notebook runs top to bottom on a trained province and shows its figures."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "recommendation_quality.py"


def test_recommendation_quality_notebook_executes_and_draws(
    province: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDR_NOTEBOOK_WORKSPACE", str(province / "ws"))
    monkeypatch.setenv("TDR_NOTEBOOK_TRUTH", str(province / "input" / "_truth"))
    monkeypatch.setenv("TDR_NOTEBOOK_MAX_TEACHERS", "200")
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parent.parent))
    nb = jupytext.read(NOTEBOOK)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "TDR / 最佳基线" in text
