"""Trainer project routes: roster and classes within the caller's area, 403 outside it, an XLSX export that
holds what the page shows, and the page itself."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from api.app import create_app
from api.auth import TokenStore
from data.reference import load_jiangxi_projects
from recommender.service import Engine


@pytest.fixture(scope="module")
def ws(province: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("projects-api") / "ws"
    shutil.copytree(province / "ws", root)
    return root


@pytest.fixture(scope="module")
def client(ws: Path) -> Iterator[TestClient]:
    # the project routes reach selection through the engine, like every other route
    app = create_app(ws, engine_factory=Engine.load)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def teachers(ws: Path) -> pd.DataFrame:
    return pd.read_parquet(ws / "portraits" / "teachers.parquet")


@pytest.fixture(scope="module")
def projects(ws: Path) -> pd.DataFrame:
    path = ws / "tables" / "projects.parquet"
    return pd.read_parquet(path) if path.exists() else load_jiangxi_projects()


def bearer(ws: Path, role: str, scope: str | None = None, teacher_id: str | None = None) -> dict[str, str]:
    token = TokenStore(ws).create(role, teacher_id=teacher_id, scope=scope)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def admin(ws: Path) -> dict[str, str]:
    return bearer(ws, "admin")


@pytest.fixture(scope="module")
def province_wide(client: TestClient, admin: dict[str, str], projects: pd.DataFrame) -> dict[str, Any]:
    """The province-wide project whose roster spans the most counties, as the admin sees it."""
    views = [
        client.get(f"/api/v1/projects/{pid}/selection", headers=admin).json()
        for pid in projects.loc[projects["scope_counties"].map(len) == 0, "project_id"].head(12)
    ]
    best: dict[str, Any] = max(views, key=lambda v: len({r["county"] for r in v["roster"]}))
    assert len(best["roster"]) > 10
    return best


def county_trainer(ws: Path, view: dict[str, Any], which: int) -> tuple[str, dict[str, str]]:
    """The county with the most (``which`` 0) or the fewest (-1) trainees on the admin's roster, and a token of
    that county's trainer."""
    county = str(pd.Series([r["county"] for r in view["roster"]]).value_counts().index[which])
    return county, bearer(ws, "trainer", scope=f"county:{county}")


def test_requests_without_a_token_are_refused(client: TestClient) -> None:
    assert client.get("/api/v1/projects").status_code == 401


def test_teachers_cannot_see_selections(client: TestClient, ws: Path, teachers: pd.DataFrame) -> None:
    headers = bearer(ws, "teacher", teacher_id=str(teachers["teacher_id"].iloc[0]))
    assert client.get("/api/v1/projects", headers=headers).status_code == 403
    response = client.get("/api/v1/projects/JX2022-001/selection", headers=headers)
    assert response.status_code == 403
    assert response.json()["detail"] == "教师账号不能查看培训项目选人结果。"


def test_a_trainer_outside_the_projects_counties_gets_403(
    client: TestClient, ws: Path, teachers: pd.DataFrame, projects: pd.DataFrame
) -> None:
    scoped = projects[projects["scope_counties"].map(len) > 0].iloc[0]
    outside = sorted(set(teachers["county"]) - set(scoped["scope_counties"]))[0]
    headers = bearer(ws, "trainer", scope=f"county:{outside}")
    pid = scoped["project_id"]
    for path in (f"/projects/{pid}/selection", f"/projects/{pid}/selection/export"):
        response = client.get("/api/v1" + path, headers=headers)
        assert response.status_code == 403
        assert response.json()["detail"] == "该培训项目不在您的管理范围内。"
    listed = {p["project_id"] for p in client.get("/api/v1/projects", headers=headers).json()}
    assert pid not in listed


def test_unknown_projects_are_not_found(client: TestClient, admin: dict[str, str]) -> None:
    assert client.get("/api/v1/projects/NOPE/selection", headers=admin).status_code == 404


def test_admin_sees_roster_classes_and_cost(province_wide: dict[str, Any]) -> None:
    view = province_wide
    roster, classes = view["roster"], view["classes"]
    assert view["n_selected"] == len(roster) == sum(c["n_teachers"] for c in classes)
    assert max(c["n_teachers"] for c in classes) <= view["project"]["class_size"]
    assert all(c["visible"] and c["portrait"] for c in classes)
    assert [r["rank"] for r in roster] == sorted(r["rank"] for r in roster)
    assert all(r["reason"].startswith("需求得分") for r in roster)
    assert view["cost"]["total_yuan"] == view["cost"]["per_trainee_yuan"] * len(roster)
    assert sum(e["n_teachers"] > 0 for e in view["exclusions"]) > 0


def test_a_county_trainer_sees_own_teachers_and_no_mixed_class_portraits(
    client: TestClient, ws: Path, province_wide: dict[str, Any]
) -> None:
    view = province_wide
    county, headers = county_trainer(ws, view, 0)
    mine = client.get(f"/api/v1/projects/{view['project']['project_id']}/selection", headers=headers).json()
    assert mine["scope"] == f"county:{county}"
    assert {r["county"] for r in mine["roster"]} == {county}
    assert [r["teacher_id"] for r in mine["roster"]] == [
        r["teacher_id"] for r in view["roster"] if r["county"] == county
    ]
    assert sum(c["n_mine"] for c in mine["classes"]) == len(mine["roster"])
    for c in mine["classes"]:
        if c["n_mine"] < c["n_teachers"]:
            assert not c["visible"] and c["portrait"] == [] and c["common_gaps"] is None
    assert any(not c["visible"] for c in mine["classes"])


def test_a_county_trainer_sees_in_scope_ranks_and_cost_only(
    client: TestClient, ws: Path, province_wide: dict[str, Any]
) -> None:
    view = province_wide
    _, headers = county_trainer(ws, view, -1)
    pid = view["project"]["project_id"]
    mine = client.get(f"/api/v1/projects/{pid}/selection", headers=headers).json()
    assert [r["rank"] for r in mine["roster"]] == list(range(1, len(mine["roster"]) + 1))
    assert mine["cost"]["trainees"] == mine["n_selected"] == len(mine["roster"]) < view["n_selected"]
    assert mine["cost"]["total_yuan"] == mine["cost"]["per_trainee_yuan"] * len(mine["roster"])
    last = mine["roster"][-1]["teacher_id"]
    status = client.get(f"/api/v1/projects/{pid}/teachers/{last}", headers=headers).json()
    assert status["rank"] == len(mine["roster"])


def test_the_export_holds_what_the_page_shows(
    client: TestClient, ws: Path, province_wide: dict[str, Any]
) -> None:
    view = province_wide
    _, headers = county_trainer(ws, view, 0)
    path = f"/api/v1/projects/{view['project']['project_id']}/selection"
    page = client.get(path + "?mix_counties=true", headers=headers).json()
    response = client.get(path + "/export?mix_counties=true", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    wb = load_workbook(io.BytesIO(response.content), read_only=True)
    rows = list(wb["名单"].iter_rows(min_row=2, values_only=True))
    assert [(r[1], r[12], r[13]) for r in rows] == [
        (r["teacher_id"], r["class_label"], r["reason"]) for r in page["roster"]
    ]
    classes = list(wb["分班"].iter_rows(min_row=2, values_only=True))
    assert [(c[0], c[1], c[2]) for c in classes] == [
        (c["class_label"], c["n_teachers"], c["n_mine"]) for c in page["classes"]
    ]
    shown = {r[0] for r in wb["班级画像"].iter_rows(min_row=2, values_only=True)}
    assert shown == {c["class_label"] for c in page["classes"] if c["portrait"]}
    overview = dict(wb["概览"].iter_rows(min_row=2, values_only=True))
    assert overview["入选人数"] == page["n_selected"] and overview["编班方式"] == "各班混合不同县区"


def test_teacher_status_explains_selection_and_exclusion(
    client: TestClient, ws: Path, admin: dict[str, str], province_wide: dict[str, Any]
) -> None:
    view = province_wide
    pid = view["project"]["project_id"]
    chosen = view["roster"][0]
    status = client.get(f"/api/v1/projects/{pid}/teachers/{chosen['teacher_id']}", headers=admin).json()
    assert status["status"] == "selected" and status["class_label"] == chosen["class_label"]
    other = next(c for c in {r["county"] for r in view["roster"]} if c != chosen["county"])
    headers = bearer(ws, "trainer", scope=f"county:{other}")
    refused = client.get(f"/api/v1/projects/{pid}/teachers/{chosen['teacher_id']}", headers=headers)
    assert refused.status_code == 403


def test_an_excluded_teacher_is_told_why(
    client: TestClient, admin: dict[str, str], teachers: pd.DataFrame, projects: pd.DataFrame
) -> None:
    for_head_teachers = projects[projects["target_roles"].map(lambda r: list(r) == ["head_teacher"])].iloc[0]
    other = teachers[~teachers["roles"].map(lambda r: "head_teacher" in list(r))].iloc[0]
    pid, tid = for_head_teachers["project_id"], other["teacher_id"]
    status = client.get(f"/api/v1/projects/{pid}/teachers/{tid}", headers=admin).json()
    assert status["status"] == "excluded" and status["status_label"] == "不符合条件"
    assert "岗位不符：本项目面向班主任，该教师未登记此岗位" in status["reason"]


def test_the_page_and_its_script_are_served(client: TestClient) -> None:
    page = client.get("/trainer/projects")
    assert page.status_code == 200 and "培训项目选人与编班" in page.text
    assert "/trainer/projects.js" in page.text
    script = client.get("/trainer/projects.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "/selection/export" in script.text
