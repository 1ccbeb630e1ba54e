"""What the service refuses before any route runs, and what it tells a browser or a client about itself:
an oversized body (413, unread and before the token is checked), the methods a path allows, a blank search,
the API docs served from the service itself under its own CSP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import API_PREFIX, create_app
from api.auth import create_token
from api.settings import ServiceSettings

LIMIT = 4096


class FakeEngine:
    """Just enough of `api.deps.EngineProtocol`: one teacher, two courses, a search that echoes."""

    version = "v-hardening"

    def portrait(self, teacher_id: str) -> dict[str, object] | None:
        return (
            {"teacher_id": "T1", "province": "江西省", "city": "九江市", "county": "修水县"}
            if teacher_id == "T1"
            else None
        )

    def course(self, course_id: str) -> dict[str, object] | None:
        return {"course_id": course_id, "title": "课程", "hours": 8.0} if course_id in {"C1", "C2"} else None

    def menu(self, teacher_id: str, constraints: object) -> dict[str, object] | None:
        return {"teacher_id": teacher_id, "items": [], "model_version": self.version}

    def search(self, q: str, top_k: int) -> list[dict[str, object]]:
        return [{"course_id": "C1", "title": q, "score": 1.0}]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "CURRENT").write_text("v-hardening\n", encoding="utf-8")
    return tmp_path


@pytest.fixture
def client(ws: Path) -> Iterator[TestClient]:
    settings = ServiceSettings(reload_interval_s=3600, max_body_bytes=LIMIT)
    with TestClient(create_app(ws, engine_factory=lambda _: FakeEngine(), settings=settings)) as c:
        yield c


def _teacher(ws: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(ws, 'teacher', teacher_id='T1')}"}


def _event(**extra: object) -> dict[str, object]:
    return {"event_id": "evt-0001-aaaa", "teacher_id": "T1", "course_id": "C1", "type": "enrolled", **extra}


def _is_413(response: Any) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert str(LIMIT) in response.json()["detail"]


# --- body size ---------------------------------------------------------------------------------------------


def test_an_oversized_body_is_413_before_the_token_is_checked(client: TestClient) -> None:
    big = json.dumps(_event(padding="x" * (2 * LIMIT)))
    _is_413(client.post(f"{API_PREFIX}/events", content=big, headers={"Content-Type": "application/json"}))


def test_an_oversized_chunked_body_is_413_too(client: TestClient, ws: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"event_id": "evt-0001-aaaa", "padding": "'
        for _ in range(16):
            yield b"x" * 1024
        yield b'"}'

    response = client.post(
        f"{API_PREFIX}/events", content=chunks(), headers={**_teacher(ws), "Content-Type": "application/json"}
    )
    _is_413(response)


def test_a_body_within_the_limit_is_served(client: TestClient, ws: Path) -> None:
    assert client.post(f"{API_PREFIX}/events", json=_event(), headers=_teacher(ws)).status_code == 201
    chunked = iter([json.dumps(_event(event_id="evt-0002-bbbb")).encode()])
    response = client.post(
        f"{API_PREFIX}/events", content=chunked, headers={**_teacher(ws), "Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text


def test_no_more_than_the_limit_is_read_from_an_endless_body(ws: Path) -> None:
    settings = ServiceSettings(reload_interval_s=3600, max_body_bytes=LIMIT)
    app = create_app(ws, engine_factory=lambda _: FakeEngine(), settings=settings)
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1024
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": f"{API_PREFIX}/events", "raw_path": b"/api/v1/events", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert received <= LIMIT + 1024


def test_the_openapi_documents_the_limit_and_the_413(client: TestClient) -> None:
    spec = client.get(f"{API_PREFIX}/openapi.json").json()
    assert str(LIMIT) in spec["info"]["description"]
    assert "413" in spec["paths"]["/api/v1/events"]["post"]["responses"]
    assert "413" in spec["paths"]["/api/v1/teachers/{teacher_id}/menu"]["post"]["responses"]
    assert "413" not in spec["paths"]["/api/v1/teachers/{teacher_id}/menu"]["get"]["responses"]


# --- methods, search text, docs -------------------------------------------------------------------------------


def test_options_on_the_menu_lists_get_and_post(client: TestClient) -> None:
    response = client.options(f"{API_PREFIX}/teachers/T1/menu")
    assert response.status_code == 204
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["allow"].split(",")}


def test_a_method_not_allowed_names_every_method_of_the_path(client: TestClient) -> None:
    response = client.put(f"{API_PREFIX}/teachers/T1/menu")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["allow"].split(",")}


@pytest.mark.parametrize("blank", [" ", "\t\n", "\u3000\u3000", "\x1c"])
def test_a_blank_search_is_refused_by_the_schema_itself(client: TestClient, ws: Path, blank: str) -> None:
    response = client.get(f"{API_PREFIX}/courses", params={"q": blank}, headers=_teacher(ws))
    assert response.status_code == 422
    assert response.json()["errors"] == [{"loc": ["query", "q"], "type": "string_pattern_mismatch"}]
    spec = client.get(f"{API_PREFIX}/openapi.json").json()
    (q,) = [p for p in spec["paths"]["/api/v1/courses"]["get"]["parameters"] if p["name"] == "q"]
    assert "pattern" in q["schema"]


def test_a_search_padded_with_spaces_is_served_stripped(client: TestClient, ws: Path) -> None:
    response = client.get(f"{API_PREFIX}/courses", params={"q": "\u3000课堂 "}, headers=_teacher(ws))
    assert response.status_code == 200 and response.json()["query"] == "课堂"


def test_the_docs_page_loads_swagger_ui_from_the_service_only(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text and "<script>" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
        assert f"/static/swagger/{asset}" in page.text
        assert client.get(f"/static/swagger/{asset}").status_code == 200
