"""Who am I: the signed-in role and binding, so the pages know which views to offer."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth import Principal
from api.deps import get_principal
from api.routes.common import problems
from api.schemas import Me

router = APIRouter(tags=["身份"])


@router.get("/me", response_model=Me, responses=problems(401))
def me(principal: Principal = Depends(get_principal)) -> Me:
    """当前令牌对应的角色与范围。"""
    return Me(
        role=principal.role.value,
        teacher_id=principal.teacher_id,
        scope=principal.scope_text,
        expires_at=principal.expires_at,
    )
