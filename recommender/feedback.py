"""Feedback (反馈闭环): what the service's events change, for training and at once in the running service.

- An **enrolled** or **completed** event is a training record from then on (`event_records`): it counts in the
  teacher's history, hours done and owed and mandatory topics covered, and a completed course is not proposed
  again — in `tdr train` (which reads every event, `data.events.read_events`) and in the service as soon as the
  event is stored. A **rated** event is that record's satisfaction.
- A **dismissed** course is not proposed to that teacher again until the course changes (`dismissals`): each
  dismissal keeps the hash of the course's content when it was first seen; once the course is edited its hash
  differs and the dismissal lapses. A later enrolment in the same course lifts it.

Pure functions of frames; `recommender.train` and `recommender.service` call them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from data.policy import Policy
from features.history import history_features, hours_owed
from features.portrait import history_windows

# course columns whose change makes a course "changed" for a standing dismissal
CONTENT_COLUMNS = ("title", "description", "hours", "format", "level", "competencies", "stages", "subjects")
# an event whose course already has a record starting this long before the event or later is that record
SAME_RECORD = pd.Timedelta(days=60)
DISMISSED_COLUMNS = ["teacher_id", "course_id", "course_hash", "ts"]
STATIC_COLUMNS = (
    "teacher_id", "stage", "subject", "school_type", "years_teaching", "career_stage", "assessed", "county", "roles",
)  # fmt: skip


def course_hashes(courses: pd.DataFrame) -> pd.Series:
    """course_id → a short hash of the course's content (CONTENT_COLUMNS present in `courses`)."""
    cols = [c for c in CONTENT_COLUMNS if c in courses]

    def text(row: tuple[object, ...]) -> str:
        parts = [";".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else str(v) for v in row]
        return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]

    values = courses[cols].itertuples(index=False, name=None)
    return pd.Series(
        [text(r) for r in values], index=courses["course_id"].astype(str).to_numpy(), dtype=object
    )


def event_records(events: pd.DataFrame, courses: pd.DataFrame) -> pd.DataFrame:
    """Training records made from enrolled / completed events (one per teacher and course, rated events as its
    satisfaction), in the training_records layout; record_id "event:<teacher>:<course>"."""
    ev = events[events["course_id"].notna()]
    taken = ev[ev["type"].isin(("enrolled", "completed"))]
    if not len(taken):
        return pd.DataFrame(columns=["record_id", "teacher_id", "course_id", "start_date", "end_date", "hours",
                                     "format", "status", "score", "satisfaction"])  # fmt: skip
    key = ["teacher_id", "course_id"]
    first = taken.groupby(key, as_index=False).agg(start_date=("ts", "min"))
    done = ev[ev["type"] == "completed"].groupby(key, as_index=False).agg(end_date=("ts", "max"))
    rated = ev[ev["type"] == "rated"].groupby(key, as_index=False).agg(value=("value", "last"))
    r = first.merge(done, on=key, how="left").merge(rated, on=key, how="left")
    c = courses.drop_duplicates("course_id").set_index(
        courses.drop_duplicates("course_id")["course_id"].astype(str)
    )
    completed = r["end_date"].notna().to_numpy()
    hours = c["hours"].reindex(r["course_id"]).to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "record_id": "event:" + r["teacher_id"] + ":" + r["course_id"],
            "teacher_id": r["teacher_id"].to_numpy(dtype=object),
            "course_id": r["course_id"].to_numpy(dtype=object),
            "start_date": r["start_date"].to_numpy(),
            "end_date": r["end_date"].to_numpy(),
            "hours": np.where(completed, hours, 0.0),
            "format": c["format"].reindex(r["course_id"]).to_numpy(dtype=object),
            "status": np.where(completed, "completed", "enrolled").astype(object),
            "score": np.nan,
            "satisfaction": np.clip(r["value"].to_numpy(dtype=np.float64), 1.0, 5.0),
        }
    )


def with_events(records: pd.DataFrame, events: pd.DataFrame, courses: pd.DataFrame) -> pd.DataFrame:
    """`records` plus the records of `events`. A record of the same course starting SAME_RECORD before the event or
    later is the same enrolment (the platform's export carries it too): it stays as it is, unless the event
    completes what the record still has open (enrolled), when the event's record replaces it."""
    extra = event_records(events, courses)
    if not len(extra):
        return records
    have = records[records["course_id"].notna()][["teacher_id", "course_id", "start_date", "status"]]
    m = (
        extra[["teacher_id", "course_id", "start_date", "status"]]
        .reset_index()
        .merge(
            have.reset_index(names="record"),
            on=["teacher_id", "course_id"],
            how="left",
            suffixes=("", "_record"),
        )
    )
    same = m[m["start_date_record"] >= m["start_date"] - SAME_RECORD]
    newer = (same["status"] == "completed") & (same["status_record"] != "completed")
    records = records[~records.index.isin(same.loc[newer, "record"].unique())]
    extra = extra[~extra.index.isin(same.loc[~newer, "index"].unique())]
    if not len(extra):
        return records.reset_index(drop=True)
    extra = extra.reindex(columns=records.columns)
    return pd.concat([records, extra.astype({c: records[c].dtype for c in ("start_date", "end_date")})],
                     ignore_index=True)  # fmt: skip


def dismissals(
    events: pd.DataFrame, courses: pd.DataFrame, previous: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Standing dismissals (DISMISSED_COLUMNS): each (teacher, course) whose latest dismissal no enrolment or
    completion followed, with the course's content hash when the dismissal was first seen (from `previous`, the
    last bundle's list) or now."""
    ev = events[events["course_id"].notna()]
    dismissed = (
        ev[ev["type"] == "dismissed"]
        .groupby(["teacher_id", "course_id"], as_index=False)
        .agg(ts=("ts", "max"))
    )
    taken = ev[ev["type"].isin(("enrolled", "completed"))].groupby(["teacher_id", "course_id"])["ts"].max()
    later = taken.reindex(pd.MultiIndex.from_frame(dismissed[["teacher_id", "course_id"]])).to_numpy()
    dismissed = dismissed[~(pd.notna(later) & (later >= dismissed["ts"].to_numpy()))]
    now = course_hashes(courses).reindex(dismissed["course_id"]).to_numpy(dtype=object)
    dismissed = dismissed.assign(course_hash=now)
    if previous is not None and len(previous):
        old = previous.set_index(["teacher_id", "course_id", "ts"])["course_hash"]
        kept = old.reindex(pd.MultiIndex.from_frame(dismissed[["teacher_id", "course_id", "ts"]])).to_numpy()
        dismissed = dismissed.assign(course_hash=np.where(pd.notna(kept), kept, now))
    return dismissed[dismissed["course_hash"].notna()][DISMISSED_COLUMNS].reset_index(drop=True)


def in_force(dismissed: pd.DataFrame, courses: pd.DataFrame) -> pd.DataFrame:
    """The dismissals whose course is unchanged since (teacher_id, course_id)."""
    if dismissed is None or not len(dismissed):
        return pd.DataFrame({"teacher_id": pd.Series(dtype=object), "course_id": pd.Series(dtype=object)})
    now = course_hashes(courses).reindex(dismissed["course_id"].astype(str)).to_numpy(dtype=object)
    return dismissed[dismissed["course_hash"].to_numpy(dtype=object) == now][["teacher_id", "course_id"]]


def rows_asof(
    rows: pd.DataFrame,
    records: pd.DataFrame,
    courses: pd.DataFrame,
    taxonomy: pd.DataFrame,
    policy: Policy,
    cut: pd.Timestamp,
) -> pd.DataFrame:
    """Portrait rows with the history part (hours, formats, completed courses, hours and topics owed) recomputed
    from `records` as of `cut`: for training on the past, and for a teacher's events in the service."""
    hist = history_features(rows, records, courses, taxonomy, cut, windows=history_windows(policy))
    owed = hours_owed(hist, policy, cut, stages=rows["stage"])
    static = [c for c in STATIC_COLUMNS if c in rows]
    return rows[static].merge(hist, on="teacher_id").merge(owed, on="teacher_id")
