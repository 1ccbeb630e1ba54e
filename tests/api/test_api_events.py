"""Feedback events (idempotent, durable, append-only) and the service's life: health, readiness, hot reload."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_token
from api.deps import EngineHolder
from api.events import CONTRACT_COLUMNS, EVENTS_DB, Event, EventStore, EventType
from api.settings import ServiceSettings


class FakeEngine:
    """Just enough of `api.deps.EngineProtocol` for events: a version and a catalogue of two courses."""

    def __init__(self, version: str = "v1") -> None:
        self.version = version

    def course(self, course_id: str) -> dict[str, object] | None:
        return {"course_id": course_id, "title": "课程", "hours": 8.0} if course_id in {"C1", "C2"} else None

    def portrait(self, teacher_id: str) -> dict[str, object] | None:
        if teacher_id not in {"T1", "T2"}:
            return None
        return {"teacher_id": teacher_id, "province": "江西省", "city": "九江市", "county": "修水县"}


def _point_to(ws: Path, version: str) -> None:
    (ws / "bundles").mkdir(parents=True, exist_ok=True)
    (ws / "bundles" / "CURRENT").write_text(version + "\n", encoding="utf-8")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    _point_to(tmp_path, "v1")
    return tmp_path


@pytest.fixture
def client(ws: Path) -> Iterator[TestClient]:
    app = create_app(
        ws, engine_factory=lambda _: FakeEngine(), settings=ServiceSettings(reload_interval_s=3600)
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture
def teacher(ws: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(ws, 'teacher', teacher_id='T1')}"}


def _event(event_id: str = "evt-0001-aaaa", **changes: object) -> dict[str, object]:
    return {"event_id": event_id, "teacher_id": "T1", "course_id": "C1", "type": "enrolled", **changes}


def _stored(event_id: str = "e1", **changes: object) -> Event:
    base: dict[str, object] = dict(
        event_id=event_id,
        teacher_id="T1",
        course_id="C1",
        type=EventType.CLICKED,
        value=None,
        ts="2024-09-01T00:00:00+00:00",
        received_at="2024-09-01T00:00:01+00:00",
    )
    return Event(**{**base, **changes})  # type: ignore[arg-type]


# --- the API ---------------------------------------------------------------------------------------------


def test_posting_the_same_event_twice_stores_it_once(client: TestClient, teacher: dict[str, str]) -> None:
    first = client.post("/api/v1/events", json=_event(), headers=teacher)
    again = client.post("/api/v1/events", json=_event(), headers=teacher)
    assert (first.status_code, first.json()["stored"]) == (201, True)
    assert (again.status_code, again.json()["stored"]) == (200, False)
    assert again.json()["ts"] == first.json()["ts"], "the retry answers with the stored event"
    listed = client.get("/api/v1/teachers/T1/events", headers=teacher).json()
    assert [e["event_id"] for e in listed] == ["evt-0001-aaaa"]


def test_an_event_id_reused_for_other_content_is_a_409(client: TestClient, teacher: dict[str, str]) -> None:
    assert client.post("/api/v1/events", json=_event(), headers=teacher).status_code == 201
    clash = client.post("/api/v1/events", json=_event(type="dismissed"), headers=teacher)
    assert clash.status_code == 409 and clash.headers["content-type"].startswith("application/problem+json")


def test_a_posted_event_is_on_disk_when_the_answer_arrives(
    client: TestClient, teacher: dict[str, str], ws: Path
) -> None:
    body = _event(type="rated", value=4, ts="2024-09-01T08:30:00+08:00")
    assert client.post("/api/v1/events", json=body, headers=teacher).status_code == 201
    with sqlite3.connect(ws / EVENTS_DB) as con:  # a separate connection, as after a restart
        row = con.execute("SELECT teacher_id, course_id, type, value, ts FROM events").fetchone()
    assert row == ("T1", "C1", "rated", 4.0, "2024-09-01T00:30:00+00:00")


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "rated"},
        {"type": "rated", "value": 9},
        {"type": "liked"},
        {"event_id": "short"},
        {"event_id": "has spaces in it"},
        {"extra": "field"},
        {"ts": "9999-12-31T23:59:59-12:00"},
    ],
)
def test_malformed_events_are_refused_with_a_422_problem(
    client: TestClient, teacher: dict[str, str], changes: dict[str, object]
) -> None:
    response = client.post("/api/v1/events", json=_event(**changes), headers=teacher)
    assert response.status_code == 422 and response.json()["detail"].startswith("请求参数不合法")


def test_an_event_id_of_one_teacher_does_not_conflict_for_another(
    client: TestClient, teacher: dict[str, str], ws: Path
) -> None:
    other = {"Authorization": f"Bearer {create_token(ws, 'teacher', teacher_id='T2')}"}
    assert client.post("/api/v1/events", json=_event(), headers=teacher).status_code == 201
    # the same id with other content: a 409 would tell T2 that someone else used it
    theirs = client.post("/api/v1/events", json=_event(teacher_id="T2", type="dismissed"), headers=other)
    assert (theirs.status_code, theirs.json()["stored"]) == (201, True)
    mine = client.get("/api/v1/teachers/T1/events", headers=teacher).json()
    assert [e["type"] for e in mine] == ["enrolled"]


def test_an_event_for_a_teacher_the_service_does_not_know_is_refused(client: TestClient, ws: Path) -> None:
    admin = {"Authorization": f"Bearer {create_token(ws, 'admin')}"}
    refused = client.post("/api/v1/events", json=_event(teacher_id="T404"), headers=admin)
    assert refused.status_code == 404 and refused.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert EventStore(ws).list_events("T404") == []
    assert client.post("/api/v1/events", json=_event(teacher_id="T2"), headers=admin).status_code == 201


def test_an_event_for_an_unknown_course_is_refused(client: TestClient, teacher: dict[str, str]) -> None:
    assert client.post("/api/v1/events", json=_event(course_id="C404"), headers=teacher).status_code == 404


# --- the store -------------------------------------------------------------------------------------------


def test_record_says_whether_the_event_was_new(ws: Path) -> None:
    store = EventStore(ws)
    assert store.record(_stored()) is True
    assert store.record(_stored()) is False
    assert len(store.list_events("T1")) == 1


def test_concurrent_duplicates_are_stored_exactly_once(ws: Path) -> None:
    store = EventStore(ws)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: store.record(_stored("same-id")), range(32)))
    assert outcomes.count(True) == 1 and len(store.list_events("T1")) == 1


def test_a_store_made_with_global_event_ids_keeps_its_events_and_scopes_ids_per_teacher(ws: Path) -> None:
    with sqlite3.connect(ws / EVENTS_DB) as con:
        con.execute(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, teacher_id TEXT NOT NULL, course_id TEXT NOT NULL,"
            " type TEXT NOT NULL, value REAL, ts TEXT NOT NULL, received_at TEXT NOT NULL)"
        )
        con.execute(
            "INSERT INTO events VALUES ('old-1', 'T1', 'C1', 'clicked', NULL, '2024-01-01', '2024-01-01')"
        )
    store = EventStore(ws)
    assert [e.event_id for e in store.list_events("T1")] == ["old-1"]
    assert store.record(_stored("old-1", teacher_id="T2")) is True
    assert store.record(_stored("old-1")) is False
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), sqlite3.connect(ws / EVENTS_DB) as con:
        con.execute("DELETE FROM events")


def test_events_survive_reopening_the_store_in_wal_mode(ws: Path) -> None:
    EventStore(ws).record(_stored("durable-1"))
    reopened = EventStore(ws)
    assert [e.event_id for e in reopened.list_events("T1")] == ["durable-1"]
    with sqlite3.connect(ws / EVENTS_DB) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_stored_events_cannot_be_changed_or_deleted(ws: Path) -> None:
    EventStore(ws).record(_stored())
    con = sqlite3.connect(ws / EVENTS_DB)
    for statement in ("UPDATE events SET type = 'dismissed'", "DELETE FROM events"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(statement)
    con.close()


def test_export_writes_the_events_table_of_the_contract(ws: Path) -> None:
    store = EventStore(ws)
    store.record(_stored("e2", type=EventType.RATED, value=5.0, ts="2024-09-02T00:00:00+00:00"))
    store.record(_stored("e1"))
    table = pd.read_parquet(store.export(ws / "tables" / "events.parquet"))
    assert tuple(table.columns) == CONTRACT_COLUMNS
    assert list(table.event_id) == ["e1", "e2"] and table.value.iloc[1] == 5.0
    assert pd.api.types.is_datetime64_any_dtype(table.ts) and table.ts.dt.tz is None


# --- health, readiness, hot reload -----------------------------------------------------------------------


def test_healthz_answers_and_readyz_reports_the_model_version(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == "v1"


def test_readyz_is_503_until_a_bundle_exists_and_ready_once_one_is_written(tmp_path: Path) -> None:
    app = create_app(
        tmp_path, engine_factory=lambda _: FakeEngine(), settings=ServiceSettings(reload_interval_s=0)
    )
    with TestClient(app) as c:
        waiting = c.get("/readyz")
        assert waiting.status_code == 503 and "tdr train" in waiting.json()["detail"]
        assert c.get("/api/v1/events").status_code == 405
        _point_to(tmp_path, "v1")
        c.get("/readyz")  # notices the new pointer and starts loading
        app.state.engine_holder.load_now()
        assert c.get("/readyz").json()["model_version"] == "v1"


def test_a_new_bundle_is_swapped_in_without_a_failed_request(ws: Path, teacher: dict[str, str]) -> None:
    release = threading.Event()

    def load(root: Path) -> FakeEngine:
        version = (root / "bundles" / "CURRENT").read_text().strip()
        if version == "v2":
            assert release.wait(timeout=30)
        return FakeEngine(version)

    app = create_app(ws, engine_factory=load, settings=ServiceSettings(reload_interval_s=0))
    with TestClient(app) as c:
        _point_to(ws, "v2")
        during = [c.get("/api/v1/courses/C1", headers=teacher) for _ in range(5)]
        assert [r.status_code for r in during] == [200] * 5
        assert {r.headers["x-tdr-model-version"] for r in during} == {"v1"}, (
            "the old engine serves while v2 loads"
        )
        release.set()
        holder: EngineHolder = app.state.engine_holder
        holder.load_now()  # waits for the load in flight
        assert c.get("/api/v1/courses/C1", headers=teacher).headers["x-tdr-model-version"] == "v2"
        assert c.get("/readyz").json()["model_version"] == "v2"


def test_a_bundle_that_fails_to_load_leaves_the_running_engine_in_service(
    ws: Path, teacher: dict[str, str]
) -> None:
    def load(root: Path) -> FakeEngine:
        version = (root / "bundles" / "CURRENT").read_text().strip()
        if version == "broken":
            raise OSError("truncated file")
        return FakeEngine(version)

    app = create_app(ws, engine_factory=load, settings=ServiceSettings(reload_interval_s=0))
    with TestClient(app) as c:
        _point_to(ws, "broken")
        c.get("/readyz")
        app.state.engine_holder.load_now()
        response = c.get("/api/v1/courses/C1", headers=teacher)
        assert response.status_code == 200 and response.headers["x-tdr-model-version"] == "v1"
