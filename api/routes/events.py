"""Event route: teachers' feedback on recommended courses, stored once per client event_id before the 2xx.

Event ids are the teacher's own: a retried POST (same teacher, event_id and content) answers 200 with
`stored: false`; a teacher reusing an id for different content gets a 409, never a silent overwrite, and
another teacher's ids never conflict (so they cannot be probed). Events name a teacher the service knows.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from fastapi import APIRouter, Body, Depends, Response

from api.auth import Principal, Role, can_see_teacher
from api.deps import EngineProtocol, get_engine, get_events, get_principal
from api.errors import ApiError
from api.events import Event, EventStore
from api.routes.common import problems
from api.schemas import EventIn, EventOut

router = APIRouter(prefix="/events", tags=["反馈"])


def _same_content(stored: Event, new: Event, compare_ts: bool) -> bool:
    """A retry carries the same content; without a client ts the retry's ts is its own arrival, so skip it."""

    def content(e: Event) -> tuple[object, ...]:
        return (e.teacher_id, e.course_id, e.type, e.value, e.ts if compare_ts else None)

    return content(stored) == content(new)


@router.post(
    "",
    response_model=EventOut,
    status_code=201,
    responses=problems(
        400,
        401,
        403,
        404,
        409,
        422,
        503,
        ok={"model": EventOut, "description": "重复提交：已存在，未再次写入"},
    ),
)
def post_event(
    response: Response,
    event_in: EventIn = Body(),
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
    events: EventStore = Depends(get_events),
) -> EventOut:
    """记录一条反馈（展示、点击、接受选学、完成、不感兴趣、评分）；按 event_id 幂等。"""
    # Feedback is the teacher's own voice (or a platform's, with an admin token); trainers do not speak for them.
    if principal.role is Role.TRAINER or not can_see_teacher(principal, {"teacher_id": event_in.teacher_id}):
        raise ApiError(403, "只能为本人提交反馈。")
    # an admin token may speak for any teacher, but only for one the service knows (as portrait and menu do)
    if engine.portrait(event_in.teacher_id) is None:
        raise ApiError(404, "未找到该教师，请检查教师编号。")
    if engine.course(event_in.course_id) is None:
        raise ApiError(404, "未找到该课程，请检查课程编号。")
    received_at = datetime.now(UTC)
    event = Event(
        event_id=event_in.event_id,
        teacher_id=event_in.teacher_id,
        course_id=event_in.course_id,
        type=event_in.type,
        value=event_in.value,
        ts=event_in.ts_utc(received_at).isoformat(),
        received_at=received_at.isoformat(),
    )
    stored = events.record(event)
    if not stored:
        existing = events.get(event.teacher_id, event.event_id)
        if existing is None or not _same_content(existing, event, compare_ts=event_in.ts is not None):
            raise ApiError(409, "该事件编号已用于另一条反馈，请使用新的编号。")
        event = existing
        response.status_code = 200
    return EventOut(**asdict(event), stored=stored)
