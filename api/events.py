"""Feedback events (shown / clicked / enrolled / completed / dismissed / rated): an append-only SQLite store.

Writes are idempotent by the client's event_id and durable (WAL, synchronous=FULL) before `record` returns, so
a client may retry a POST safely and a 2xx means the event survives a crash.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd

from data.events import CONTRACT_COLUMNS, EVENTS_DB
from data.workspace import write_parquet_atomic

__all__ = ["CONTRACT_COLUMNS", "EVENTS_DB", "Event", "EventStore", "EventType"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    teacher_id  TEXT NOT NULL,
    course_id   TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('shown', 'clicked', 'enrolled', 'completed', 'dismissed', 'rated')),
    value       REAL,
    ts          TEXT NOT NULL,
    received_at TEXT NOT NULL
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


class EventStore:
    """WS/events.sqlite; one connection per server thread, each write committed with a full fsync."""

    def __init__(self, ws_root: Path) -> None:
        self.db_path = Path(ws_root) / EVENTS_DB
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            for statement in (_SCHEMA, _BY_TEACHER_INDEX, _NO_UPDATE, _NO_DELETE):
                con.execute(statement)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.db_path, timeout=10.0)
            # FULL: the WAL is fsynced at every commit, so a returned write survives power loss
            con.execute("PRAGMA synchronous=FULL")
            self._local.con = con
        with con:
            yield con

    def record(self, event: Event) -> bool:
        """Store `event` unless its event_id is already stored; True when it was new."""
        with self._connect() as con:
            cur = con.execute(
                f"INSERT OR IGNORE INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                astuple(event),
            )
            return cur.rowcount == 1

    def get(self, event_id: str) -> Event | None:
        with self._connect() as con:
            row = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
        return None if row is None else _event(row)

    def list_events(self, teacher_id: str) -> list[Event]:
        """A teacher's events, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM events WHERE teacher_id = ? ORDER BY ts, event_id",
                (teacher_id,),
            ).fetchall()
        return [_event(r) for r in rows]

    def to_frame(self) -> pd.DataFrame:
        """Every event in the contract's `events` layout (ts as datetime64)."""
        with self._connect() as con:
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
