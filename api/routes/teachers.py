"""Teacher routes: a teacher's portrait, study menu and re-planned menu, and the feedback they gave.

Every route first decides whether the caller may see the teacher, and refuses in the same words whether the
teacher exists or not, so ids outside the caller's reach cannot be probed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, Role, can_see_teacher
from api.deps import EngineProtocol, get_engine, get_events, get_principal
from api.errors import ApiError
from api.events import EventStore
from api.routes.common import problems
from api.schemas import EventOut, Menu, MenuConstraints, Portrait

router = APIRouter(prefix="/teachers", tags=["教师"])

TeacherId = Annotated[str, Path(min_length=1, max_length=64, description="教师编号")]
FORBIDDEN = "无权查看该教师的数据。"
_PLACE = {"teacher_id", "province", "city", "county"}


def _portrait(engine: EngineProtocol, teacher_id: str) -> Portrait | None:
    raw = engine.portrait(teacher_id)
    return None if raw is None else Portrait.model_validate(raw)


def authorise_teacher(principal: Principal, teacher_id: str, engine: EngineProtocol) -> Portrait | None:
    """Raise 403 unless the caller may see the teacher; returns the portrait when it had to be read to decide."""
    if principal.role is Role.TRAINER:
        portrait = _portrait(engine, teacher_id)
        place = portrait.model_dump(include=_PLACE) if portrait is not None else {}
    else:
        portrait, place = None, {"teacher_id": teacher_id}
    if not can_see_teacher(principal, place):
        raise ApiError(403, FORBIDDEN)
    return portrait


def _not_found(principal: Principal) -> ApiError:
    if principal.role is Role.TEACHER:
        return ApiError(404, "暂未找到您的画像数据，请联系培训管理员。")
    return ApiError(404, "未找到该教师。")


@router.get("/{teacher_id}/portrait", response_model=Portrait, responses=problems(401, 403, 404, 422, 503))
def get_portrait(
    teacher_id: TeacherId,
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
) -> Portrait:
    """教师数字画像：各能力点估计及其不确定性、学时进度、培训经历。"""
    portrait = authorise_teacher(principal, teacher_id, engine) or _portrait(engine, teacher_id)
    if portrait is None:
        raise _not_found(principal)
    return portrait


def _as_menu(engine: EngineProtocol, raw: object) -> Menu:
    # a menu names the bundle that made it (a previous bundle's scored menu, just after a hot swap), else the
    # engine's
    menu = Menu.model_validate(raw)
    return menu if menu.model_version else menu.model_copy(update={"model_version": engine.version})


def _menu(
    engine: EngineProtocol, principal: Principal, teacher_id: str, constraints: MenuConstraints | None
) -> Menu:
    authorise_teacher(principal, teacher_id, engine)
    raw = engine.menu(teacher_id, constraints)
    if raw is None:
        raise _not_found(principal)
    return _as_menu(engine, raw)


@router.get("/{teacher_id}/menu", response_model=Menu, responses=problems(401, 403, 404, 422, 503))
async def get_menu(
    teacher_id: TeacherId,
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
) -> Menu:
    """按本省政策为教师生成的选学菜单，每门课附推荐理由。"""
    # The busiest route. A menu the engine has ready (see `EngineProtocol`) is answered on the event loop;
    # whatever may compute (a menu not yet made, a trainer's check of the teacher's area) runs in a worker
    # thread. Under a burst, a thread per cached answer would only queue the threads for the GIL.
    if principal.role is not Role.TRAINER:
        authorise_teacher(principal, teacher_id, engine)
        ready = getattr(engine, "ready_menu", None)
        raw = ready(teacher_id) if ready is not None else None
        if raw is not None:
            return _as_menu(engine, raw)
    return await run_in_threadpool(_menu, engine, principal, teacher_id, None)


@router.post("/{teacher_id}/menu", response_model=Menu, responses=problems(400, 401, 403, 404, 422, 503))
def replan_menu(
    teacher_id: TeacherId,
    constraints: Annotated[MenuConstraints, Body()],
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
) -> Menu:
    """按教师自己的条件（学时、学习形式、排除的课程）重新生成菜单。"""
    return _menu(engine, principal, teacher_id, constraints)


@router.get("/{teacher_id}/events", response_model=list[EventOut], responses=problems(401, 403, 422, 503))
def list_teacher_events(
    teacher_id: TeacherId,
    principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
    events: EventStore = Depends(get_events),
) -> list[EventOut]:
    """教师已提交的反馈（接受、不感兴趣等），按时间先后。"""
    authorise_teacher(principal, teacher_id, engine)
    return [EventOut.model_validate(e) for e in events.list_events(teacher_id)]
