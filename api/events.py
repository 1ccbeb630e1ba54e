"""Feedback events (shown / clicked / enrolled / completed / dismissed / rated): an append-only SQLite store.

Writes are idempotent by the client's event_id within a teacher's own events (two teachers' ids never meet, so
one cannot probe another's) and durable (WAL, synchronous=FULL) before `record` returns, so a client may retry a
POST safely and a 2xx means the event survives a crash.
"""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd

from api.db import ThreadConnections
from data.workspace import write_parquet_atomic

EVENTS_DB = "events.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT NOT NULL,
    teacher_id  TEXT NOT NULL,
    course_id   TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('shown', 'clicked', 'enrolled', 'completed', 'dismissed', 'rated')),
    value       REAL,
    ts          TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (teacher_id, event_id)
)
"""
_BY_TEACHER_INDEX = "CREATE INDEX IF NOT EXISTS events_teacher ON events (teacher_id, ts)"
# Appends only: the store refuses to change history even if a later code path tries.
_NO_UPDATE = """
CREATE TRIGGER IF NOT EXISTS events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END
"""
_NO_DELETE = """
CREATE TRIGGER IF NOT EXISTS events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END
"""


class EventType(StrEnum):
    SHOWN = "shown"
    CLICKED = "clicked"
    ENROLLED = "enrolled"
    COMPLETED = "completed"
    DISMISSED = "dismissed"
    RATED = "rated"


@dataclass(frozen=True)
class Event:
    """One feedback event; `ts` is when it happened (ISO 8601), `received_at` when the service stored it."""

    event_id: str
    teacher_id: str
    course_id: str
    type: EventType
    value: float | None
    ts: str
    received_at: str


_COLUMNS = tuple(f.name for f in fields(Event))
# The `events` table of the data contract (DESIGN.md): what `tdr train` may read back as feedback.
CONTRACT_COLUMNS = ("event_id", "teacher_id", "course_id", "type", "value", "ts")


def _scope_ids_per_teacher(con: sqlite3.Connection) -> None:
    """Move a store made when event ids were global (primary key event_id alone) to per-teacher ids."""
    keyed = [row[1] for row in con.execute("PRAGMA table_info(events)") if row[5]]
    if keyed != ["event_id"]:
        return
    con.execute("ALTER TABLE events RENAME TO events_global_ids")
    con.execute("DROP TRIGGER IF EXISTS events_append_only_update")
    con.execute("DROP TRIGGER IF EXISTS events_append_only_delete")
    con.execute("DROP INDEX IF EXISTS events_teacher")
    con.execute(_SCHEMA)
    con.execute(f"INSERT INTO events SELECT {', '.join(_COLUMNS)} FROM events_global_ids")
    con.execute("DROP TABLE events_global_ids")


class EventStore:
    """WS/events.sqlite; one connection per server thread, each write committed with a full fsync."""

    def __init__(self, ws_root: Path) -> None:
        self.db_path = Path(ws_root) / EVENTS_DB
        self._db = ThreadConnections(self.db_path)
        with self._db.transaction() as con:
            _scope_ids_per_teacher(con)
            for statement in (_SCHEMA, _BY_TEACHER_INDEX, _NO_UPDATE, _NO_DELETE):
                con.execute(statement)

    def record(self, event: Event) -> bool:
        """Store `event` unless the teacher already has an event with its event_id; True when it was new."""
        with self._db.transaction() as con:
            cur = con.execute(
                f"INSERT OR IGNORE INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                astuple(event),
            )
            return cur.rowcount == 1

    def get(self, teacher_id: str, event_id: str) -> Event | None:
        """The teacher's event with this id, if stored."""
        with self._db.transaction() as con:
            row = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM events WHERE teacher_id = ? AND event_id = ?",
                (teacher_id, event_id),
            ).fetchone()
        return None if row is None else _event(row)

    def list_events(self, teacher_id: str) -> list[Event]:
        """A teacher's events, oldest first."""
        with self._db.transaction() as con:
            rows = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM events WHERE teacher_id = ? ORDER BY ts, event_id",
                (teacher_id,),
            ).fetchall()
        return [_event(r) for r in rows]

    def to_frame(self) -> pd.DataFrame:
        """Every event in the contract's `events` layout (ts as datetime64)."""
        with self._db.transaction() as con:
            df = pd.read_sql_query(
                f"SELECT {', '.join(CONTRACT_COLUMNS)} FROM events ORDER BY ts, event_id", con
            )
        # naive UTC, like every other table's datetime64 columns
        df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601").dt.tz_convert(None)
        return df

    def export(self, target: Path) -> Path:
        """Write the events as a Parquet table (atomically), e.g. WS/tables/events.parquet for retraining."""
        return write_parquet_atomic(self.to_frame(), Path(target))


def _event(row: tuple[Any, ...]) -> Event:
    event_id, teacher_id, course_id, type_, value, ts, received_at = row
    return Event(
        event_id=str(event_id),
        teacher_id=str(teacher_id),
        course_id=str(course_id),
        type=EventType(str(type_)),
        value=None if value is None else float(value),
        ts=str(ts),
        received_at=str(received_at),
    )
