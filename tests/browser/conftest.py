"""Browser harness: the real gateway served by uvicorn on a free port, real headless Chromium.

- Chromium is Debian's `/usr/bin/chromium` (or JMT_CHROMIUM), driven by Playwright's Python
  package; Playwright never downloads a browser here. Without either, the tests skip with
  the reason — except under CI=true, where that is a failure.
- The gateway runs in a background thread with a temporary SQLite database, development
  settings (the simulator's WeChat and DingTalk stand-ins, on this same server) and a
  stand-in for Rasa. Its outbox worker and dispatcher run for real.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session

from casework import accounts, db
from casework.settings import Settings, get_settings
from gateway.app import create_app
from tests.gateway.conftest import StandInRasa

CHROMIUM = os.environ.get("JMT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "Jmt-console-2026"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the console in headless Chromium")


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(
        CHROMIUM
    ):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set JMT_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not longer: while Playwright's sync API is active, the
    main thread has a running event loop, and later tests calling asyncio.run() would fail."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI=true: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    # Generous waits: on a busy 2-core CI machine a request can take seconds (SQLite
    # writers queue behind each other); the assertions are about what shows, not speed.
    expect.set_options(timeout=20_000)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Gateway:
    url: str
    app: FastAPI
    database_url: str
    rasa: StandInRasa

    @contextmanager
    def session(self) -> Iterator[Session]:
        with db.session_scope(self.database_url) as session:
            yield session

    def officer(
        self,
        username: str,
        name: str,
        *,
        role: str = "officer",
        desk: str | None = None,
        community: str | None = None,
    ) -> int:
        with self.session() as session:
            user = accounts.create_user(
                session=session,
                username=username,
                password=PASSWORD,
                role=role,
                desk=desk,
                community=community,
            )
            user.display_name = name
            session.flush()
            return int(user.id)

    def resident_says(self, openid: str, content: str = "", **fields: Any) -> dict:
        """What WeChat would send for a resident's message, through the simulator."""
        body = {"openid": openid, "type": "text", "content": content, **fields}
        answer = httpx.post(f"{self.url}/simulator/api/send", json=body, timeout=15)
        answer.raise_for_status()
        return answer.json()

    def inbox(self, openid: str) -> list[dict]:
        """Customer-service messages the simulator's WeChat stand-in delivered."""
        answer = httpx.get(f"{self.url}/simulator/api/inbox", params={"openid": openid})
        answer.raise_for_status()
        return answer.json()


@pytest.fixture
def gateway(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        "JMT_ENV": "development",
        "JMT_SIMULATOR": "1",
        "JMT_VAR_DIR": str(tmp_path),
        "GATEWAY_PORT": str(port),  # development's stand-in URLs point at this server
        "CONSOLE_URL": url,
        "WECHAT_API_BASE_URL": f"{url}/simulator/wechat-api",
        "WECHAT_ENCODING_AES_KEY": "",
        "ACTION_SERVER_URL": "http://127.0.0.1:9",  # nothing listens there
        "SECRET_KEY": "jmt-browser-test-secret-key-0123456789",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in ("DINGTALK_WEBHOOK_URL", "GOVERNANCE_WEBHOOK_URL", "RASA_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    settings = Settings.from_env()
    rasa = StandInRasa()
    app = create_app(settings, rasa=rasa, probe_actions=False)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    try:
        yield Gateway(url=url, app=app, database_url=sqlite_url, rasa=rasa)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        get_settings.cache_clear()


@pytest.fixture
def page(browser: Any, gateway: Gateway) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) on the gateway. Its clock is in
    Los Angeles on purpose: the pages must show Beijing time whatever the browser's zone."""
    context = browser.new_context(
        base_url=gateway.url,
        locale="zh-CN",
        timezone_id="America/Los_Angeles",
        viewport={"width": 1366, "height": 900},
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.js_errors = errors
    try:
        yield tab
    finally:
        context.close()
