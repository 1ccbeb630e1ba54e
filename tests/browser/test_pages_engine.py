"""The pages in headless Chromium on the real engine (the trained province, its growth measured): a teacher signs
in, sees the radar drawn and accepts a course from the menu (the event is stored); a trainer of the county sees
its heatmap; a trainer of the province picks the trainees of a project and reads 训后成效; a teacher assessed
twice sees 我的成长.
Screenshots land in tests/artifacts/browser/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from api.app import create_app
from api.auth import create_token
from api.settings import ServiceSettings
from data.workspace import Workspace
from recommender.effects import measure_growth
from recommender.service import Engine

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def service(
    province: Path, tmp_path_factory: pytest.TempPathFactory, serve: Any
) -> Iterator[tuple[str, Path, Any]]:
    ws = tmp_path_factory.mktemp("pages") / "ws"
    shutil.copytree(province / "ws", ws)
    measure_growth(Workspace.open(ws))
    # no search on these pages: the engine is loaded without warming the search model
    app = create_app(ws, engine_factory=Engine.load, settings=ServiceSettings(reload_interval_s=3600))
    with serve(app) as url:
        yield url, ws, app


@pytest.fixture(scope="module")
def teacher(service: tuple[str, Path, Any]) -> pd.Series:
    """An assessed teacher of the largest county."""
    rows = pd.read_parquet(service[1] / "portraits" / "teachers.parquet")
    county = rows["county"].value_counts().index[0]
    return rows[(rows["county"] == county) & rows["assessed"]].sort_values("teacher_id").iloc[0]


def _sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_teacher_sees_the_radar_and_accepts_a_course_of_the_real_menu(
    page: Any, service: tuple[str, Path, Any], teacher: pd.Series, drawn: Any
) -> None:
    url, ws, app = service
    teacher_id = str(teacher["teacher_id"])
    _sign_in(page, url, create_token(ws, "teacher", teacher_id=teacher_id))
    page.wait_for_url(f"{url}/me/portrait")
    page.wait_for_selector("#radar canvas")
    page.wait_for_selector("#competencies tbody tr")
    assert drawn(page, "#radar") and drawn(page, "#hours")
    page.snap("portrait")

    page.click("#nav >> text=我的选学菜单")
    page.wait_for_selector("#menu-items li.item")
    first = page.locator("#menu-items li.item").first
    course_id = first.get_attribute("data-course")
    first.locator("button.accept").click()
    page.wait_for_selector("#menu-items li.item.accepted")
    page.snap("menu")
    stored = app.state.events.list_events(teacher_id)
    assert [(e.course_id, e.type.value) for e in stored] == [(course_id, "enrolled")]
    assert page.js_errors == []


def _trainer_signs_in(page: Any, service: tuple[str, Path, Any], scope: str) -> str:
    """Sign in as a trainer of the scope; trainers land on the cohort page. Returns the service URL."""
    url, ws, _ = service
    _sign_in(page, url, create_token(ws, "trainer", scope=scope))
    page.wait_for_url(f"{url}/trainer/cohorts")
    return str(url)


def test_county_trainer_sees_the_heatmap_of_the_county(
    page: Any, service: tuple[str, Path, Any], teacher: pd.Series, drawn: Any
) -> None:
    _trainer_signs_in(page, service, f"county:{teacher['county']}")
    page.wait_for_selector("#heatmap canvas")
    page.wait_for_selector("#behind tbody tr")
    assert drawn(page, "#heatmap") and drawn(page, "#distribution")
    assert page.input_value("#cohort-value") == teacher["county"]
    assert page.js_errors == []


def test_province_trainer_picks_trainees_for_a_project(
    page: Any, service: tuple[str, Path, Any], teacher: pd.Series, drawn: Any
) -> None:
    url = _trainer_signs_in(page, service, f"province:{teacher['province']}")
    page.click("#nav >> text=培训项目选人")
    page.wait_for_url(f"{url}/trainer/projects")
    page.wait_for_selector("#project-id option", state="attached")
    page.click("#project-form button[type=submit]")
    page.wait_for_selector("#roster tbody tr")
    page.wait_for_selector("#class-heatmap canvas")
    assert page.locator("#roster tbody tr").count() > 0
    assert drawn(page, "#class-heatmap")
    page.snap("projects")
    with page.expect_download() as download:
        page.click("#selection-export")
    assert download.value.suggested_filename.startswith("选人结果_")
    assert download.value.suggested_filename.endswith(".xlsx")
    assert Path(download.value.path()).read_bytes()[:2] == b"PK"  # an XLSX is a zip
    assert page.js_errors == []


def test_province_trainer_reads_the_measured_effects_as_a_forest_plot(
    page: Any, service: tuple[str, Path, Any], teacher: pd.Series, drawn: Any
) -> None:
    url = _trainer_signs_in(page, service, f"province:{teacher['province']}")
    page.click("#nav >> text=训后成效")
    page.wait_for_url(f"{url}/trainer/effects")
    page.wait_for_selector("#effects-table tbody tr")
    page.wait_for_selector("#forest canvas")
    assert drawn(page, "#forest")
    assert "前后两次测评的教师" in page.inner_text("#effects-summary")
    page.snap("effects")
    assert page.js_errors == []


def test_teacher_assessed_twice_sees_my_growth(page: Any, service: tuple[str, Path, Any], drawn: Any) -> None:
    url, ws, _ = service
    changes = pd.read_parquet(Path(ws) / "effects" / "changes.parquet")
    teacher_id = str(changes["teacher_id"].value_counts().index[0])
    _sign_in(page, url, create_token(ws, "teacher", teacher_id=teacher_id))
    page.wait_for_url(f"{url}/me/portrait")
    page.wait_for_selector("#growth canvas")
    assert drawn(page, "#growth")
    note = page.inner_text("#growth-note")
    assert "次测评）" in note and "只有一次" not in note
    page.wait_for_selector("#competencies details[open]")
    page.snap("growth")
    assert page.js_errors == []
