"""The pages in headless Chromium: a teacher signs in, sees the radar drawn, accepts a course (the event is stored);
a trainer sees the heatmap. Screenshots land in tests/artifacts/browser/.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from api.app import create_app
from api.auth import create_token
from api.settings import ServiceSettings

pytestmark = pytest.mark.browser

CODES = [("TEA-1", "师德践行", "师德与理念"), ("IT-A3", "数据支持的学情分析", "信息技术应用"),
         ("EVAL-2", "过程性评价", "学生评价"), ("CLS-1", "班级管理", "班级管理与育人"),
         ("DES-2", "教学设计", "教学设计与实施")]  # fmt: skip
SCHOOLS = ["S-XS-1", "S-XS-2", "S-XS-3"]


class FakeEngine:
    """Fixed records in the shapes of `api.schemas`; enough for the pages to draw every chart."""

    version = "v-browser"

    def portrait(self, teacher_id: str) -> dict[str, Any] | None:
        if not teacher_id.startswith("XS"):
            return None
        comps = [
            {"competency": c, "name": n, "domain": d, "estimate": 40.0 + 8 * i, "std_error": 4.0 + i,
             "source": "items", "peer_mean": 55.0, "gap": max(0.0, 70.0 - 40.0 - 8 * i)}
            for i, (c, n, d) in enumerate(CODES)
        ]  # fmt: skip
        history = [
            {"course_id": "C0", "title": "新时代师德师风建设", "start_date": "2023-03-01", "end_date": "2023-03-20",
             "hours": 12.0, "format": "online", "status": "completed", "score": 88.0},
            {"course_id": "C9", "title": "跨学科主题教学", "start_date": "2024-05-01", "hours": 24.0,
             "format": "workshop", "status": "no_show"},
        ]  # fmt: skip
        return {
            "teacher_id": teacher_id, "province": "江西省", "city": "九江市", "county": "修水县", "school_id": "S-XS-1",
            "stage": "primary", "subject": "数学", "career_stage": "developing", "assessed": True,
            "hours_required": 360.0, "hours_done": 212.0, "hours_owed": 148.0, "missing_mandatory": ["师德师风"],
            "need_statement": "在「数据支持的学情分析」上低于同学段教师平均。", "competencies": comps, "history": history,
        }  # fmt: skip

    def menu(self, teacher_id: str, constraints: Any) -> dict[str, Any] | None:
        items = [
            {"course_id": f"C{i}", "title": f"课程{i}：{n}", "hours": 10.0, "format": "blended", "competencies": [c],
             "practical": True, "reason": f"针对您在「{n}」上的差距。"}
            for i, (c, n, _) in enumerate(CODES, start=1)
        ]  # fmt: skip
        return {"teacher_id": teacher_id, "items": items, "hours_target": 50.0}

    def search(self, q: str, top_k: int) -> list[dict[str, Any]]:
        return [{"course_id": "C2", "title": "课程2：数据支持的学情分析", "score": 0.8}][:top_k]

    def course(self, course_id: str) -> dict[str, Any] | None:
        return {"course_id": course_id, "title": "课程", "hours": 10.0, "description": "课程简介。"}

    def cohort(self, by: str, value: str, scope: tuple[str, str] | None) -> dict[str, Any] | None:
        if (by, value) != ("county", "修水县"):
            return None
        return {
            "by": by, "value": value, "n_teachers": 30,
            "span": {"province": ["江西省"], "city": ["九江市"], "county": ["修水县"]},
            "competencies": [
                {"competency": c, "name": n, "domain": d, "mean": 50.0 + i, "p10": 30.0, "p25": 42.0, "p50": 51.0,
                 "p75": 60.0, "p90": 72.0, "share_below_target": 0.7}
                for i, (c, n, d) in enumerate(CODES)
            ],
            "heatmap": {"row_level": "school", "rows": SCHOOLS, "row_sizes": [10, 12, 8], "columns": [c for c, _, _ in CODES],
                        "values": [[45.0 + 5 * r + i for i in range(len(CODES))] for r in range(len(SCHOOLS))]},
            "common_gaps": [{"competency": "IT-A3", "name": "数据支持的学情分析", "share": 0.4}],
            "hours": {"required_mean": 360.0, "done_mean": 240.0, "owed_mean": 120.0, "share_behind": 0.3},
            "behind_on_hours": [{"teacher_id": "XS07", "school_id": "S-XS-2", "county": "修水县", "hours_required": 360.0,
                                 "hours_done": 80.0, "hours_owed": 280.0}],
        }  # fmt: skip

    def growth(self, teacher_id: str) -> dict[str, Any] | None:
        if not teacher_id.startswith("XS"):
            return None
        dates = ["2023-05-10", "2024-06-01"]
        points = [
            {"date": d, "competency": c, "name": n, "domain": dom, "estimate": 40.0 + 8 * i + 5 * k, "std_error": 5.0}
            for k, d in enumerate(dates)
            for i, (c, n, dom) in enumerate(CODES)
        ]  # fmt: skip
        moved = [{"competency": "IT-A3", "name": "数据支持的学情分析", "change": 6.5, "effect": 3.2, "ci_low": 1.1,
                  "ci_high": 5.3, "known": True}]  # fmt: skip
        return {"dates": dates, "points": points, "courses": [
            {"course_id": "C2", "title": "课程2：数据支持的学情分析", "date": "2023-11-20", "competencies": moved}
        ]}  # fmt: skip

    def effects(self, scope: tuple[str, str] | None) -> dict[str, Any] | None:
        rows = [
            {"kind": "course", "unit_id": f"C{i}", "title": f"课程{i}：{n}", "competency": c, "competency_name": n,
             "effect": 1.5 * i - 1.0, "ci_low": 1.5 * i - 3.0, "ci_high": 1.5 * i + 1.0, "n_treated": 10 * i,
             "n_comparison": 400, "known": True, "method": "ancova_eiv_eb", "n_records": 12 * i,
             "completion_rate": 0.8, "satisfaction": 4.2}
            for i, (c, n, _) in enumerate(CODES, start=1)
        ]  # fmt: skip
        rows.append({"kind": "project", "unit_id": "JX2024-006", "title": "乡村教师数字素养提升", "n_records": 30,
                     "completion_rate": 0.9, "satisfaction": 4.6, "known": False, "method": "unknown"})  # fmt: skip
        return {"scope": None if scope is None else ":".join(scope), "n_teachers_measured": 420, "rows": rows}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, serve: Any) -> Iterator[tuple[str, Path, Any]]:
    ws = tmp_path_factory.mktemp("ws")
    (ws / "bundles").mkdir()
    (ws / "bundles" / "CURRENT").write_text("v-browser\n", encoding="utf-8")
    app = create_app(
        ws, engine_factory=lambda _: FakeEngine(), settings=ServiceSettings(reload_interval_s=3600)
    )
    with serve(app) as url:
        yield url, ws, app


def _sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_teacher_signs_in_sees_the_radar_and_accepts_a_course(
    page: Any, service: tuple[str, Path, Any], drawn: Any
) -> None:
    url, ws, app = service
    _sign_in(page, url, create_token(ws, "teacher", teacher_id="XS01"))
    page.wait_for_url(f"{url}/me/portrait")
    page.wait_for_selector("#radar canvas")
    page.wait_for_selector("#timeline li")
    assert drawn(page, "#radar") and drawn(page, "#hours")
    assert page.locator("#competencies tbody tr").count() == len(CODES)
    page.wait_for_selector("#growth canvas")
    assert drawn(page, "#growth")
    assert "本人 +6.5" in page.inner_text("#moved")
    page.snap("portrait")

    page.click("#nav >> text=我的选学菜单")
    page.wait_for_selector("#menu-items li.item")
    first = page.locator("#menu-items li.item").first
    first.locator("button.accept").click()
    page.wait_for_selector("#menu-items li.item.accepted")
    stored = app.state.events.list_events("XS01")
    assert [(e.course_id, e.type.value) for e in stored] == [("C1", "enrolled")]
    assert page.js_errors == []


def test_the_page_keeps_the_tokens_lifetime_and_drops_it_once_expired(
    page: Any, service: tuple[str, Path, Any]
) -> None:
    url, ws, _ = service
    _sign_in(page, url, create_token(ws, "teacher", teacher_id="XS01", ttl=timedelta(seconds=4)))
    page.wait_for_url(f"{url}/me/portrait")
    assert page.evaluate("localStorage.getItem('tdr_token_expires')") is not None
    # the open page signs itself out when the lifetime ends, without a request to tell it
    page.wait_for_url(f"{url}/login", timeout=15_000)
    assert page.evaluate("localStorage.getItem('tdr_token')") is None
    # a page opened later with an expired token kept in storage drops it before any request
    page.evaluate(
        "localStorage.setItem('tdr_token', 'tdr_stale'); localStorage.setItem('tdr_token_expires', '2000-01-01T00:00:00Z')"
    )
    page.goto(f"{url}/me/menu")
    page.wait_for_url(f"{url}/login")
    assert page.evaluate("localStorage.getItem('tdr_token')") is None
    assert page.js_errors == []


def test_trainer_sees_the_county_heatmap(page: Any, service: tuple[str, Path, Any], drawn: Any) -> None:
    url, ws, _ = service
    _sign_in(page, url, create_token(ws, "trainer", scope="county:修水县"))
    page.wait_for_url(f"{url}/trainer/cohorts")
    page.wait_for_selector("#heatmap canvas")
    page.wait_for_selector("#behind tbody tr")
    assert drawn(page, "#heatmap") and drawn(page, "#distribution")
    with page.expect_download() as download:
        page.click("#cohort-export")
    assert download.value.suggested_filename.endswith(".xlsx")
    book = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert book["学时落后教师"]["A2"].value == "XS07"
    assert page.js_errors == []


def test_portrait_shows_strengths_and_gaps_first_and_folds_the_competencies_by_domain(
    page: Any, service: tuple[str, Path, Any]
) -> None:
    url, ws, _ = service
    _sign_in(page, url, create_token(ws, "teacher", teacher_id="XS01"))
    page.wait_for_url(f"{url}/me/portrait")
    page.wait_for_selector("#competencies details")
    assert page.locator("#competencies details").count() == len({d for _, _, d in CODES})
    # only the domain with the largest gap is open: the page no longer runs one long column
    assert page.locator("#competencies details[open]").count() == 1
    assert "师德践行" in page.inner_text("#highlights")
    assert page.js_errors == []


def test_trainer_sees_effects_as_a_forest_plot_sorts_them_and_exports_them(
    page: Any, service: tuple[str, Path, Any], drawn: Any
) -> None:
    url, ws, _ = service
    _sign_in(page, url, create_token(ws, "trainer", scope="county:修水县"))
    page.wait_for_url(f"{url}/trainer/cohorts")
    page.click("#nav >> text=训后成效")
    page.wait_for_url(f"{url}/trainer/effects")
    page.wait_for_selector("#forest canvas")
    page.wait_for_selector("#effects-table tbody tr")
    assert drawn(page, "#forest")
    titles = page.locator("#effects-table tbody tr td:first-child").all_inner_texts()
    assert titles[0].startswith(f"课程{len(CODES)}")  # largest effect first
    page.click("#effects-table th[data-key=effect]")
    titles = page.locator("#effects-table tbody tr td:first-child").all_inner_texts()
    assert titles[0].startswith("课程1")  # ascending after a click
    page.uncheck("#effects-known")
    page.select_option("#effects-kind", "")
    assert page.locator("#effects-table tbody tr").count() == len(CODES) + 1
    assert "证据不足" in page.inner_text("#effects-table tbody")
    with page.expect_download() as download:
        page.click("#effects-export")
    book = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert book["训后成效"]["C2"].value.startswith("课程")
    page.snap("effects")
    assert page.js_errors == []


def test_api_docs_render_from_the_service_itself_under_its_csp(
    page: Any, service: tuple[str, Path, Any]
) -> None:
    url = service[0]
    elsewhere: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(url) else elsewhere.append(r.url))
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    response = page.goto(f"{url}/api/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "TDR" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    assert "/api/v1/events" in page.inner_text("#swagger-ui")
    assert elsewhere == [] and blocked == [] and page.js_errors == []
