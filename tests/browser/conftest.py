"""Browser-test helpers: the service on a free loopback port in a thread, and Debian's headless Chromium.

Chromium comes from Debian (`make browser-deps`), never from a browser download; playwright only drives it.
Each test's last screen is kept under tests/artifacts/browser/ as a test artefact. Helpers reach tests as
fixtures (`serve`, `drawn`, `page`), since a conftest is not imported by name.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

CHROMIUM = Path(os.environ.get("TDR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 in a thread; yield its base URL; stop it afterwards."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, name="tdr-live-server", daemon=True)
    thread.start()
    # uvicorn sets `started` after the lifespan start-up, so the engine is loaded by then
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server exited during start-up")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve() -> Any:
    """`with serve(app) as url:` — the app on a loopback port for the duration of the block."""
    return live_server


@pytest.fixture(scope="session")
def drawn() -> Any:
    """`drawn(page, "#radar")` — whether that chart painted its canvas."""
    return canvas_is_drawn


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps`)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh phone-sized page (own storage); its last screen is saved as an artefact, failed or not."""
    context = chromium.new_context(locale="zh-CN", viewport=PHONE, device_scale_factor=2)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.js_errors = errors
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # page.snap("portrait") keeps an intermediate screen too
    tab.snap = lambda label: tab.screenshot(
        path=str(ARTIFACTS / f"{request.node.name}-{label}.png"), full_page=True
    )
    yield tab
    tab.snap("last")
    context.close()


def canvas_is_drawn(page: Any, selector: str) -> bool:
    """Whether the chart inside `selector` painted anything (a canvas with at least one non-transparent pixel)."""
    return bool(
        page.eval_on_selector(
            f"{selector} canvas",
            """c => {
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
                return false;
            }""",
        )
    )
