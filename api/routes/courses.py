"""Course routes: hybrid (meaning + words) search over the catalogue and a course's detail.

Open to every signed-in role: the catalogue holds no teacher's data, and the schemas pass on course fields only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.auth import Principal
from api.deps import EngineProtocol, get_engine, get_principal, get_settings
from api.errors import ApiError
from api.routes.common import problems
from api.schemas import NOT_BLANK, Course, CourseHit, SearchResult
from api.settings import ServiceSettings

router = APIRouter(prefix="/courses", tags=["课程"])


@router.get("", response_model=SearchResult, responses=problems(401, 422, 503))
def search_courses(
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            pattern=NOT_BLANK,
            description="检索词，如“用数据分析学情”（不可全为空白）",
        ),
    ],
    top_k: Annotated[int, Query(ge=1, le=200, description="返回条数")] = 10,
    _principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
    settings: ServiceSettings = Depends(get_settings),
) -> SearchResult:
    """按语义与关键词混合检索课程。"""
    query = q.strip()  # not empty: the schema's pattern asks for a character strip() keeps
    k = min(top_k, settings.search_max_k)
    hits = [CourseHit.model_validate(h) for h in engine.search(query, k)][:k]
    return SearchResult(query=query, hits=hits)


@router.get("/{course_id}", response_model=Course, responses=problems(401, 404, 422, 503))
def get_course(
    course_id: Annotated[str, Path(min_length=1, max_length=64, description="课程编号")],
    _principal: Principal = Depends(get_principal),
    engine: EngineProtocol = Depends(get_engine),
) -> Course:
    """课程详情。"""
    raw = engine.course(course_id)
    if raw is None:
        raise ApiError(404, "未找到该课程。")
    return Course.model_validate(raw)
