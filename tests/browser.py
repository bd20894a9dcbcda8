"""Fixtures for the web console's tests: a real headless Chromium (Debian's, driven by
Playwright) and the real HTTP server (guard/server.py) on 127.0.0.1, port 0.

- `browser`: one Chromium per test session; fails (never skips) when /usr/bin/chromium is
  missing, so CI cannot pass without the browser tests.
- `page`: a fresh browser context and page per test (no cookies carried over).
- `serve_console`: a factory that serves a `Guard`'s console and stops it after the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from guard.cycle import Guard
from guard.server import Server

CHROMIUM = os.environ.get("COST_GUARD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(
            f"the web console's tests need Chromium at {CHROMIUM}: apt-get install -y chromium"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a context of its own; a laptop-sized viewport. Anything off 127.0.0.1 is
    aborted, so a page that reached for a CDN would show it (and fail its test)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(("http://127.0.0.1", "http://localhost", "data:"))
            else route.abort()
        ),
    )
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


@pytest.fixture
def serve_console() -> Iterator[Callable[[Guard], Server]]:
    """`serve_console(guard)` -> a started Server on 127.0.0.1 (its `.url`), stopped after."""
    servers: list[Server] = []

    def start(guard: Guard) -> Server:
        server = Server(guard, host="127.0.0.1", port=0).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
