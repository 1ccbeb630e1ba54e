"""A newly hired teacher has a portrait but no training records yet: every path that plans a menu live — the CLI,
the API's GET and POST, a scored block — answers for them instead of failing on the empty record set.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import API_PREFIX, create_app
from api.auth import create_token
from api.settings import ServiceSettings
from data.workspace import Workspace
from recommender.artifacts import load_current
from recommender.scoring import PortraitBlock, score_batch
from tdr.cli import app as cli


@pytest.fixture(scope="module")
def hired(province: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A copy of the province whose first three teachers' training records are gone (new hires), and their ids."""
    ws = tmp_path_factory.mktemp("hired") / "ws"
    shutil.copytree(province / "ws", ws)
    table = Workspace.open(ws).table_path("training_records")  # a folder of Parquet parts
    records = pd.read_parquet(table)
    new = sorted(records["teacher_id"].astype(str).unique())[:3]
    shutil.rmtree(table)
    table.mkdir()
    records[~records["teacher_id"].isin(new)].to_parquet(table / "part-0.parquet", index=False)
    return ws, new


@pytest.fixture(scope="module")
def client(hired: tuple[Path, list[str]]) -> Iterator[TestClient]:
    with TestClient(
        create_app(hired[0], settings=ServiceSettings(reload_interval_s=3600)), raise_server_exceptions=False
    ) as c:
        yield c


def _admin(ws: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(ws, 'admin')}"}


def test_cli_recommends_a_menu_to_a_teacher_without_records(hired: tuple[Path, list[str]]) -> None:
    ws, new = hired
    result = CliRunner().invoke(cli, ["recommend", new[0], "--workspace", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    assert '"items"' in result.output


def test_api_menu_get_and_post_answer_a_teacher_without_records(
    client: TestClient, hired: tuple[Path, list[str]]
) -> None:
    ws, new = hired
    headers = _admin(ws)
    got = client.get(f"{API_PREFIX}/teachers/{new[0]}/menu", headers=headers)
    assert got.status_code == 200, got.text
    assert got.json()["items"], "a new teacher still gets courses to choose from"
    posted = client.post(f"{API_PREFIX}/teachers/{new[1]}/menu", json={"hours": 24}, headers=headers)
    assert posted.status_code == 200, posted.text
    assert posted.json()["hours_target"] == 24


def test_a_block_of_teachers_without_records_is_scored(hired: tuple[Path, list[str]]) -> None:
    ws = Workspace.open(hired[0])
    new = hired[1]
    rows = pd.read_parquet(ws.portraits_dir / "teachers.parquet")
    comp = pd.read_parquet(ws.portraits_dir / "competencies.parquet")
    records = ws.read_table("training_records")
    block = PortraitBlock(
        rows[rows["teacher_id"].isin(new)].reset_index(drop=True),
        comp[comp["teacher_id"].isin(new)].reset_index(drop=True),
        records.iloc[:0],
    )
    recs, menus = score_batch(block, load_current(ws.bundles_dir))
    assert set(recs["teacher_id"]) == set(new)
    assert set(menus["teacher_id"]) == set(new)
