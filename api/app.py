"""The TDR service: FastAPI app with the /api/v1 routes, health checks and the Chinese web pages.

`create_app(workspace)` wires the stores of the workspace and the engine holder; `tdr serve` runs it with uvicorn.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import TokenStore
from api.deps import EngineFactory, EngineHolder, default_engine_factory
from api.errors import install_problem_details, problem_response
from api.events import EventStore
from api.routes import cohorts, courses, effects, events, health, me, pages, projects, teachers
from api.settings import ServiceSettings

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/v1"

_PAGE_HEADERS = [
    # scripts only from this origin; ECharts sets inline styles on its own elements
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_API_HEADERS = [(b"cache-control", b"no-store")]
API_DESCRIPTION = (
    "访问令牌由 `tdr token create` 生成，以 `Authorization: Bearer <令牌>` 发送。"
    "请求体不得超过 {max_body_bytes} 字节（服务设置 TDR_MAX_BODY_BYTES），"
    "超出的请求在读取请求体和校验令牌之前即以 413 拒绝。"
    "所有错误均以 application/problem+json 返回。"
)


class SecurityHeaders:
    """Adds the browser hardening headers to every response, and no-store to API answers (personal data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _PAGE_HEADERS + (_API_HEADERS if scope["path"].startswith(API_PREFIX) else [])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuses (413) a request body over `limit` bytes before the body is parsed or the token checked.

    A declared Content-Length over the limit is refused unread; a body without one (chunked) is read only up
    to the limit, then handed on whole. Either way at most `limit` bytes of a request are held in memory.
    (FastAPI's own `max_body_size` counts only what a route reads: a route that reads no body runs, token check
    included, before its answer is swapped for a 413 in another format.)
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, f"请求内容过大（上限 {self.limit} 字节）。")
        response.headers["Connection"] = "close"
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None:
            # the server frames the body by this length, so a body cannot outgrow it
            if not declared.isdigit() or int(declared) > self.limit:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def create_app(
    workspace: Path, engine_factory: EngineFactory | None = None, settings: ServiceSettings | None = None
) -> FastAPI:
    """The service for one workspace; `engine_factory(workspace)` loads the engine of its current bundle."""
    ws = Path(workspace).resolve()
    # built once here, at the edge, and passed down: routes get it through deps.get_settings, the engine at load
    config = settings or ServiceSettings.from_env()
    factory = engine_factory or partial(default_engine_factory, settings=config)
    engine_holder = EngineHolder(ws, factory, config.reload_interval_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # the first load happens before the server accepts connections; later bundles load in the background
        await run_in_threadpool(engine_holder.load_now)
        yield

    app = FastAPI(
        title="TDR 教师发展推荐服务",
        summary="教师数字画像、个性化选学菜单、课程检索与群体画像",
        version="1",
        lifespan=lifespan,
        # Swagger UI from api/static/swagger (see api.routes.pages.docs): the CSP refuses a CDN's scripts
        docs_url=None,
        redoc_url=None,
        description=API_DESCRIPTION.format(max_body_bytes=config.max_body_bytes),
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.settings = config
    app.state.engine_holder = engine_holder
    app.state.tokens = TokenStore(ws, config)
    app.state.events = EventStore(ws)

    install_problem_details(app)
    for router in (
        me.router,
        teachers.router,
        courses.router,
        cohorts.router,
        events.router,
        projects.router,
        effects.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.include_router(projects.page_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    # outside every route and dependency: an oversized body is refused before it is read or the token checked
    app.add_middleware(BodySizeLimit, limit=config.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory api.app:app_from_env` (several workers): the workspace from TDR_WORKSPACE."""
    return create_app(Path(os.environ["TDR_WORKSPACE"]))
