"""The cohort-portrait notebook runs top to bottom on a trained province and draws its plots with Chinese
labels in a CJK font (a missing glyph would be drawn as a box, and matplotlib warns about it)."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "cohort_portraits.py"


def test_cohort_portraits_notebook_executes_and_draws_chinese_labels(
    province: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDR_NOTEBOOK_WORKSPACE", str(province / "ws"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = jupytext.read(NOTEBOOK)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "missing from font" not in streams and "Glyph" not in streams, "a label fell back to boxes"
    assert "最薄弱的能力点" in streams
