"""Errors as RFC 9457 problem details (application/problem+json) with a Chinese `detail` for people.

Every failure path ends here, so no handler can leak a stack trace, a file path or another teacher's id.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# What people read when the framework (not our code) refused a request.
_DEFAULT_DETAIL = {
    400: "请求格式不正确。",
    401: "缺少或无效的访问令牌，请重新登录。",
    403: "无权访问该资源。",
    404: "未找到请求的资源。",
    405: "不支持该请求方法。",
    406: "无法按所请求的格式返回结果。",
    409: "请求与已有数据冲突。",
    413: "请求内容过大。",
    415: "不支持的请求内容类型，请使用 JSON。",
    422: "请求参数不合法。",
    429: "请求过于频繁，请稍后再试。",
    500: "服务内部错误，请稍后重试。",
    503: "服务暂不可用，请稍后重试。",
}
_LOCATION = {"body": "请求体", "query": "查询参数", "path": "路径参数", "header": "请求头"}


class ApiError(StarletteHTTPException):
    """An HTTP error whose `detail` is already a Chinese sentence meant for the user."""


def problem_response(status: int, detail: str, extra: dict[str, Any] | None = None) -> JSONResponse:
    """The problem+json answer every error takes (also sent by middleware, before any route runs)."""
    # No `instance`: the concrete path would repeat the teacher id the caller was refused.
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    """Every method some route of the app takes on this path: a path's GET and POST are separate routes, and
    the router's own 405 names only the first one's methods."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    return ", ".join([*allowed, "OPTIONS"])


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = {"Allow": _allowed_methods(request)}
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=allow)
        exc = StarletteHTTPException(405, headers=allow)
    # Framework errors carry English phrases; only our own ApiError texts are shown as they are.
    detail = exc.detail if isinstance(exc, ApiError) else _DEFAULT_DETAIL.get(exc.status_code, "请求失败。")
    response = problem_response(exc.status_code, detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _where(loc: tuple[Any, ...]) -> str:
    head, *rest = loc or ("body",)
    field = ".".join(str(part) for part in rest) or str(head)
    return f"{_LOCATION.get(str(head), str(head))} {field}"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    places = "；".join(dict.fromkeys(_where(tuple(e.get("loc", ()))) for e in errors))
    # Only where and what kind: echoing the rejected input back could reflect someone's data.
    listed = [{"loc": [str(p) for p in e.get("loc", ())], "type": str(e.get("type", ""))} for e in errors]
    return problem_response(422, f"请求参数不合法，请检查：{places}。", {"errors": listed})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.error("unhandled error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
    return problem_response(500, f"服务内部错误，请稍后重试（错误编号 {incident}）。")


def _document_problems(app: FastAPI) -> None:
    """Describe every 4xx/5xx answer in the OpenAPI as what it is: a Problem sent as problem+json."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # caches itself on app.openapi_schema; adjusted once, in place
            problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if "requestBody" in operation:  # the body-size limit (api.app.BodySizeLimit) guards it
                        operation["responses"].setdefault("413", {"description": "请求内容过大"})
                    for status, response in operation.get("responses", {}).items():
                        if status[:1] in "45":
                            response["content"] = problem
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def install_problem_details(app: FastAPI) -> None:
    """Answer every error with problem+json, and document it so."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    _document_problems(app)
