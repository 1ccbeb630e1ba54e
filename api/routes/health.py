"""Health checks: /healthz (the process answers) and /readyz (an engine is loaded; which bundle version)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import EngineHolder, holder
from api.errors import ApiError
from api.routes.common import problems
from api.schemas import Health, Readiness

router = APIRouter(tags=["运行状态"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """进程存活。"""
    return Health()


@router.get("/readyz", response_model=Readiness, responses=problems(503))
def readyz(engine_holder: EngineHolder = Depends(holder)) -> Readiness:
    """模型已加载即就绪；返回正在使用的模型版本。"""
    engine = engine_holder.current()
    if engine is None:
        raise ApiError(503, engine_holder.problem or "模型尚未就绪。", headers={"Retry-After": "5"})
    return Readiness(ready=True, model_version=engine.version, loaded_at=engine_holder.loaded_at)
