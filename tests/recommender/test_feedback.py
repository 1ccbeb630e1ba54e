"""Feedback (recommender.feedback, data.events): events become records and standing dismissals, in training and
at once in the running service."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from api.events import Event, EventStore, EventType
from data.events import read_events
from data.workspace import Workspace
from recommender.feedback import dismissals, event_records, in_force, with_events
from recommender.service import Engine

COURSES = pd.DataFrame(
    {
        "course_id": ["C1", "C2"],
        "title": ["课堂观察", "作业设计"],
        "description": ["", ""],
        "hours": [10.0, 6.0],
        "format": ["online", "workshop"],
        "level": [1, 2],
        "competencies": [["A1"], ["DES5"]],
        "stages": [[], []],
        "subjects": [[], []],
    }
)


def events(*rows: tuple[str, str, str, str, float | None]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["teacher_id", "course_id", "type", "ts", "value"])
    return frame.assign(event_id=[f"e{i}" for i in range(len(rows))], ts=pd.to_datetime(frame["ts"]))


def test_completed_events_become_records_with_the_course_hours_and_the_rating() -> None:
    ev = events(
        ("T1", "C1", "enrolled", "2026-01-05", None),
        ("T1", "C1", "completed", "2026-02-01", None),
        ("T1", "C1", "rated", "2026-02-02", 5.0),
        ("T1", "C2", "enrolled", "2026-01-07", None),
        ("T1", "C2", "shown", "2026-01-01", None),
    )
    r = event_records(ev, COURSES).set_index("course_id")
    assert r.loc["C1", "status"] == "completed" and r.loc["C1", "hours"] == 10.0
    assert r.loc["C1", "satisfaction"] == 5.0 and r.loc["C1", "end_date"] == pd.Timestamp("2026-02-01")
    assert r.loc["C2", "status"] == "enrolled" and r.loc["C2", "hours"] == 0.0


def test_an_event_the_platforms_export_already_holds_is_not_counted_twice() -> None:
    records = pd.DataFrame(
        {
            "record_id": ["R1"],
            "teacher_id": ["T1"],
            "course_id": ["C1"],
            "start_date": pd.to_datetime(["2026-01-04"]),
            "end_date": pd.to_datetime(["2026-02-01"]),
            "hours": [10.0],
            "format": ["online"],
            "status": ["completed"],
            "score": [88.0],
            "satisfaction": [4.0],
        }
    )
    ev = events(("T1", "C1", "completed", "2026-02-01", None), ("T1", "C2", "completed", "2026-02-03", None))
    merged = with_events(records, ev, COURSES)
    assert sorted(merged["course_id"]) == ["C1", "C2"]
    assert merged.set_index("course_id").loc["C1", "record_id"] == "R1"
    # an enrolment the export still has open is completed by the event
    still_open = records.assign(status="enrolled", end_date=pd.NaT, hours=0.0)
    merged = with_events(still_open, ev, COURSES).set_index("course_id")
    assert merged.loc["C1", "status"] == "completed" and merged.loc["C1", "hours"] == 10.0


def test_a_dismissal_stands_until_the_course_changes_or_the_teacher_enrols() -> None:
    ev = events(
        ("T1", "C1", "dismissed", "2026-01-05", None),
        ("T1", "C2", "dismissed", "2026-01-05", None),
        ("T1", "C2", "enrolled", "2026-01-09", None),
    )
    standing = dismissals(ev, COURSES)
    assert list(standing["course_id"]) == ["C1"]
    assert list(in_force(standing, COURSES)["course_id"]) == ["C1"]
    edited = COURSES.assign(description=["新版：增加课堂实录分析", ""])
    assert in_force(standing, edited).empty
    # a later training keeps the hash the dismissal was first seen with, so the edit still lifts it
    assert in_force(dismissals(ev, edited, previous=standing), edited).empty


def test_training_reads_the_ingested_events_and_the_services_log_once_each(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    ws.write_table("events", events(("T2", "C1", "dismissed", "2026-01-05", None)))
    store = EventStore(ws.root)
    for event_id in ("e0", "e9"):  # T2's e0 is also in the table (event ids are unique per teacher)
        store.record(
            Event(event_id, "T2", "C2", EventType.ENROLLED, None, "2026-01-06T00:00:00+00:00", "now")
        )
    got = read_events(ws)
    assert sorted(got["event_id"]) == ["e0", "e9"]
    assert set(got["type"]) == {"enrolled"}  # the service's copy of e0 wins


@pytest.fixture()
def engine_ws(province: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(province / "ws", copy)
    return copy


def test_the_running_service_drops_a_dismissed_course_and_counts_a_completed_one_at_once(
    engine_ws: Path,
) -> None:
    engine = Engine.load(engine_ws)
    teacher = str(engine.rows.index[0])
    menu = engine.menu(teacher)
    assert menu is not None and len(menu["items"]) >= 2
    dismissed, completed = menu["items"][0]["course_id"], menu["items"][1]["course_id"]
    before = engine.portrait(teacher)
    assert before is not None
    when = (engine.art.asof + pd.Timedelta(days=2)).isoformat() + "+00:00"
    store = EventStore(engine_ws)
    for i, (course, kind) in enumerate(((dismissed, EventType.DISMISSED), (completed, EventType.COMPLETED))):
        store.record(Event(f"fb-{i}", teacher, course, kind, None, when, when))
    after = engine.menu(teacher)
    assert after is not None
    offered = {item["course_id"] for item in after["items"]}
    assert dismissed not in offered and completed not in offered
    recs = engine.recommendations(teacher)
    assert recs is not None and not {dismissed, completed} & set(recs["course_id"])
    portrait = engine.portrait(teacher)
    assert portrait is not None
    hours = engine.art.courses.set_index("course_id").loc[completed, "hours"]
    assert portrait["hours_done_cycle"] == pytest.approx(before["hours_done_cycle"] + hours)
    assert completed in portrait["completed_course_ids"]
