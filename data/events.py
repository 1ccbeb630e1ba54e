"""The feedback events a workspace holds, read back for training: the ingested `events` table (the data
contract's) and the service's own append-only log (WS/events.sqlite, written by `api.events.EventStore`).

Reading lives here, below every layer that learns from events; writing stays with the service.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

from data.workspace import Workspace

# the service's event log inside a workspace (api.events.EventStore writes it)
EVENTS_DB = "events.sqlite"
# The `events` table of the data contract (DESIGN.md): what `tdr train` reads back as feedback.
CONTRACT_COLUMNS = ("event_id", "teacher_id", "course_id", "type", "value", "ts")


def empty_events() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in CONTRACT_COLUMNS})
    return frame.astype({"value": "float64", "ts": "datetime64[ns]"})


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reindex(columns=list(CONTRACT_COLUMNS)).copy()
    for col in ("event_id", "teacher_id", "course_id", "type"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
        out[col] = out[col].map(lambda v: None if v is None else str(v))
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    ts = pd.to_datetime(out["ts"], utc=True, format="ISO8601", errors="coerce")
    out["ts"] = ts.dt.tz_convert(None).astype("datetime64[ns]")
    return out


def read_log(root: Path) -> pd.DataFrame:
    """The service's event log under `root` in the contract's layout (empty when there is none); opened read-only,
    so a running service keeps writing."""
    path = Path(root) / EVENTS_DB
    if not path.exists():
        return empty_events()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        frame = pd.read_sql_query(
            f"SELECT {', '.join(CONTRACT_COLUMNS)} FROM events ORDER BY ts, event_id", con
        )
    return _normalised(frame)


def read_events(ws: Workspace) -> pd.DataFrame:
    """Every event of the workspace: the ingested table and the service's log, each (teacher_id, event_id) once
    (event ids are the client's, unique per teacher; the log's copy wins), oldest first."""
    parts = [read_log(ws.root)]
    if ws.has_table("events"):
        parts.append(_normalised(ws.read_table("events")))
    events = pd.concat(parts, ignore_index=True).drop_duplicates(["teacher_id", "event_id"], keep="first")
    events = events[events["teacher_id"].notna() & events["type"].notna()]
    return events.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)


# the event types that change what a teacher is offered (shown / clicked do not)
FEEDBACK_TYPES = ("enrolled", "completed", "dismissed", "rated")


def _query(root: Path, sql: str, params: tuple[str, ...]) -> pd.DataFrame:
    path = Path(root) / EVENTS_DB
    if not path.exists():
        return empty_events()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        return pd.read_sql_query(sql, con, params=params)


def log_stamp(root: Path) -> tuple[int, ...]:
    """Changes whenever the service's log is written (its file and write-ahead log's size and time)."""
    stamp: list[int] = []
    for name in (EVENTS_DB, EVENTS_DB + "-wal"):
        path = Path(root) / name
        if path.exists():
            st = path.stat()
            stamp += [st.st_mtime_ns, st.st_size]
    return tuple(stamp)


def teachers_with_feedback(root: Path, since: pd.Timestamp) -> dict[str, int]:
    """Per teacher, how many enrolled / completed / dismissed / rated events the service's log holds dated on or
    after `since` (teachers with none left out)."""
    marks = ", ".join("?" * len(FEEDBACK_TYPES))
    frame = _query(root, f"SELECT teacher_id, ts FROM events WHERE type IN ({marks})", tuple(FEEDBACK_TYPES))
    if not len(frame):
        return {}
    ts = pd.to_datetime(frame["ts"], utc=True, format="ISO8601", errors="coerce").dt.tz_convert(None)
    counts = frame.loc[(ts >= since).to_numpy(), "teacher_id"].astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def teacher_log(root: Path, teacher_id: str) -> pd.DataFrame:
    """One teacher's events in the service's log, in the contract's layout, oldest first."""
    cols = ", ".join(CONTRACT_COLUMNS)
    frame = _query(
        root, f"SELECT {cols} FROM events WHERE teacher_id = ? ORDER BY ts, event_id", (teacher_id,)
    )
    return _normalised(frame)
