"""Dependencies of the routes: the engine interface and its hot-reloading holder, the caller, the stores.

Routes see the engine only through `EngineProtocol`; `EngineHolder` swaps in the bundle that `tdr train` names
in WS/bundles/CURRENT without a restart, serving the previous engine until the new one is fully loaded.
"""

from __future__ import annotations

import atexit
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import InvalidTokenError, Principal, TokenStore
from api.errors import ApiError
from api.events import EventStore
from api.schemas import MenuConstraints
from api.settings import ServiceSettings
from recommender.selection import Project, Selection

log = logging.getLogger(__name__)

BUNDLE_POINTER = Path("bundles") / "CURRENT"
# objects frozen after a load (see EngineHolder._load) are handed back to the collector at exit, so that
# extension types are finalised as usual
atexit.register(gc.unfreeze)


class EngineProtocol(Protocol):
    """What the service needs from the recommender core; each record is read by the schema named beside it.

    Records may be dataclasses, objects or mappings with (at least) the schema's required fields; a method
    returns None when the teacher / course / cohort is unknown.

    An engine may also offer `ready_menu(teacher_id) -> object | None`: the default menu when it is at hand
    without computing (else None), which the menu route then answers without a worker thread.
    """

    @property
    def version(self) -> str:
        """The bundle version in use (WS/bundles/<version>)."""
        ...

    def portrait(self, teacher_id: str) -> object | None:
        """-> `schemas.Portrait`."""
        ...

    def menu(self, teacher_id: str, constraints: MenuConstraints | None) -> object | None:
        """-> `schemas.Menu`; `constraints` None means the policy's default menu."""
        ...

    def search(self, q: str, top_k: int) -> Sequence[object]:
        """-> list of `schemas.CourseHit`, best first, at most `top_k`."""
        ...

    def course(self, course_id: str) -> object | None:
        """-> `schemas.Course`."""
        ...

    def cohort(self, by: str, value: str, scope: tuple[str, str] | None) -> object | None:
        """-> `schemas.Cohort` of the teachers with `by == value`, restricted to `scope` (kind, value) if given."""
        ...

    def effects(self, scope: tuple[str, str] | None) -> object | None:
        """-> `schemas.EffectsReport` of the teachers in `scope` (all when None); None before growth is measured."""
        ...

    def growth(self, teacher_id: str) -> object | None:
        """-> `schemas.Growth` of the teacher; None when unknown."""
        ...

    def projects(self, scope: tuple[str, str] | None) -> Sequence[Project]:
        """The training projects a caller with `scope` (kind, value; None: everything) selects for."""
        ...

    def selection(
        self, project_id: str, mix_counties: bool, scope: tuple[str, str] | None, min_cohort_size: int
    ) -> Selection | None:
        """The project's selection (kept for the bundle) as a caller with `scope` may see it, classes under
        `min_cohort_size` showing their size only; None for an unknown project. Raises
        `recommender.selection.scope.OutsideScope` when the project lies outside the caller's area and
        `recommender.selection.SelectionError` when it cannot be selected for."""
        ...


EngineFactory = Callable[[Path], EngineProtocol]


def default_engine_factory(workspace: Path, settings: ServiceSettings | None = None) -> EngineProtocol:
    """Load the recommender engine of the workspace's current bundle with the app's ``settings``, its search
    model included (once per process): the first load happens before the server accepts requests, so no
    search waits for the model and no request runs beside the model's import."""
    from recommender.service import Engine

    engine = Engine.load(workspace, config=settings)
    engine.warm()
    served: EngineProtocol = engine
    return served


class EngineHolder:
    """The engine in service, reloaded in the background when WS/bundles/CURRENT names another bundle.

    A request never waits for a load: it gets the engine that is ready, and the swap is one reference
    assignment, so requests in flight finish on the engine they started with.
    """

    def __init__(
        self,
        workspace: Path,
        factory: EngineFactory,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workspace = Path(workspace)
        self._factory = factory
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._engine: EngineProtocol | None = None
        self._loaded_pointer: str | None = None
        # a bundle that failed to load is not retried until CURRENT names another one
        self._failed_pointer: str | None = None
        self._loader: threading.Thread | None = None
        self._next_check = 0.0
        self.loaded_at: datetime | None = None
        self.problem: str | None = "模型尚未加载。"

    def _read_pointer(self) -> str | None:
        try:
            return (self.workspace / BUNDLE_POINTER).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def _load(self, pointer: str) -> None:
        try:
            engine = self._factory(self.workspace)
        except Exception:
            log.exception("loading bundle %s failed; keeping the engine in service", pointer)
            with self._lock:
                self._failed_pointer = pointer
                self._loader = None
                self.problem = f"模型版本 {pointer} 加载失败，请检查训练结果。"
            return
        with self._lock:
            self._engine = engine
            self._loaded_pointer = pointer
            self._loader = None
            self.loaded_at = datetime.now(UTC)
            self.problem = None
        # The engine and the libraries behind it are half a million long-lived objects; a full collection that
        # walks them pauses every request for half a second. Frozen, they are left out of collections, and stay
        # frozen across swaps: the replaced engine is freed by reference counting (six swaps in a row left the
        # frozen count and the resident size unchanged), so only the young objects are collected here.
        gc.collect(1)
        gc.freeze()
        log.info("engine %s in service", engine.version)

    def _start_load_if_due(self, now: float) -> threading.Thread | None:
        with self._lock:
            if now < self._next_check or self._loader is not None:
                return self._loader
            self._next_check = now + self._interval_s
            pointer = self._read_pointer()
            if pointer is None:
                if self._engine is None:
                    self.problem = "尚未训练模型，请先运行 tdr train。"
                return None
            if pointer in (self._loaded_pointer, self._failed_pointer):
                return None
            self._loader = threading.Thread(
                target=self._load, args=(pointer,), name="tdr-engine-load", daemon=True
            )
            self._loader.start()
            return self._loader

    def current(self) -> EngineProtocol | None:
        """The engine to use for this request (None until a first bundle has loaded)."""
        now = self._clock()
        if now >= self._next_check:
            self._start_load_if_due(now)
        return self._engine

    def load_now(self) -> None:
        """Load the current bundle and wait for it (start-up, so the first request finds a ready engine)."""
        loader = self._start_load_if_due(self._clock())
        if loader is not None:
            loader.join()


# The dependencies are `async def` because none of them blocks (a pointer-file stat every few seconds, one
# indexed SQLite read): FastAPI runs a plain `def` dependency in the thread pool, a hop per dependency per
# request that costs more than the work itself.


async def holder(request: Request) -> EngineHolder:
    return request.app.state.engine_holder  # type: ignore[no-any-return]


async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_events(request: Request) -> EventStore:
    return request.app.state.events  # type: ignore[no-any-return]


async def get_engine(response: Response, engine_holder: EngineHolder = Depends(holder)) -> EngineProtocol:
    engine = engine_holder.current()
    if engine is None:
        raise ApiError(503, "模型尚未就绪，请稍后重试。", headers={"Retry-After": "5"})
    response.headers["X-TDR-Model-Version"] = engine.version
    return engine


_bearer = HTTPBearer(auto_error=False, description="`tdr token create` 生成的访问令牌")


async def get_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    if credentials is None:
        raise ApiError(401, "缺少访问令牌，请先登录。")
    tokens: TokenStore = request.app.state.tokens
    try:
        return tokens.authenticate(credentials.credentials)
    except InvalidTokenError:
        raise ApiError(401, "访问令牌无效，请重新登录。") from None
