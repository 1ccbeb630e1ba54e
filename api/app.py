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
from api.errors import install_problem_details
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
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.settings = config
    app.state.engine_holder = engine_holder
    app.state.tokens = TokenStore(ws)
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
    app.add_middleware(SecurityHeaders)
    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory api.app:app_from_env` (several workers): the workspace from TDR_WORKSPACE."""
    return create_app(Path(os.environ["TDR_WORKSPACE"]))
