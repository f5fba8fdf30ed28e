"""Pages of the officer console, their static files, and the security headers of every page.

Each page is a plain HTML document in `gateway/console/templates/` (the shared top bar is
pulled in by `<!--#include topbar.html -->`): a small shell whose data comes from the JSON
API (docs/console-api.md), fetched by the page's script. Selects of codes (categories,
ticket kinds and states, desks, NLU reasons) and every label are filled from
`GET /api/vocabulary`, so no label is copied into the markup. Nothing here reads the
database or needs a login — an anonymous visitor gets empty shells whose scripts send
them to the login page.

Static files come from `gateway/console/static/` through Starlette's `StaticFiles`
(`ConsoleStatic`: no directory listing, no traversal, only the types in `STATIC_TYPES`,
ETag revalidation; no build step, nothing from a CDN), mounted by `gateway/app.py` at
`/console/static`. `SecurityHeaders` is the one middleware that gives every response
under `/console` and `/simulator` its Content-Security-Policy (no inline script or
style, no foreign origin, no framing), nosniff, no-referrer and caching rules.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from fastapi import APIRouter, status
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

router = APIRouter(prefix="/console", include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/console/static"
# What may be served, by suffix, with its type pinned here rather than taken from the
# host's mime table (which maps .js differently from one system to the next).
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the event stream URL carries a ticket
    "X-Frame-Options": "DENY",
}
PAGE_PREFIXES = ("/console", "/simulator")
STATIC_PREFIXES = (STATIC_PREFIX + "/", "/simulator/static/")


class SecurityHeaders:
    """ASGI middleware: every response under `prefixes` gets `SECURITY_HEADERS`; static
    files `Cache-Control: no-cache` (revalidated by ETag), everything else `no-store`
    (pages, and the simulator's JSON)."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...] = PAGE_PREFIXES) -> None:
        self.app = app
        self.prefixes = prefixes

    def _covers(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._covers(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(STATIC_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["Cache-Control"] = "no-cache" if static else "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ConsoleStatic(StaticFiles):
    """`StaticFiles` serving only the suffixes of `STATIC_TYPES`, with those types.
    Directories are never listed (html mode is off: a directory is a 404)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        media_type = STATIC_TYPES.get(Path(full_path).suffix)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND)
        response = FileResponse(
            full_path, status_code=status_code, stat_result=stat_result, media_type=media_type
        )
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response


def static_files() -> list[str]:
    """The names `ConsoleStatic` serves from `STATIC_DIR`."""
    return sorted(p.name for p in STATIC_DIR.iterdir() if p.suffix in STATIC_TYPES)


TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
INCLUDE = re.compile(r"<!--#include ([a-z_]+\.html) -->\n?")


@cache
def render(name: str, active: str | None = None) -> str:
    """A page from `templates/`: `<!--#include x.html -->` lines are replaced by that
    file, and the nav link `data-nav="<active>"` is marked as the current page."""
    html = INCLUDE.sub(
        lambda found: (TEMPLATE_DIR / found[1]).read_text("utf-8"),
        (TEMPLATE_DIR / name).read_text("utf-8"),
    )
    if active is not None:
        marker = f'data-nav="{active}"'
        html = html.replace(marker, f'{marker} class="active" aria-current="page"')
    return html


def _page(name: str, *, active: str | None = None) -> HTMLResponse:
    return HTMLResponse(render(f"{name}.html", active))  # headers: SecurityHeaders


@router.get("/login", response_class=HTMLResponse)
async def login_page() -> HTMLResponse:
    return _page("login")


@router.get("", response_class=HTMLResponse)
async def queue_page() -> HTMLResponse:
    return _page("queue", active="queue")


@router.get("/", response_class=HTMLResponse)
async def queue_page_slash() -> RedirectResponse:
    return RedirectResponse("/console", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(case_id: int) -> HTMLResponse:  # noqa: ARG001 — case.js reads the id
    return _page("case", active="case")


@router.get("/tickets", response_class=HTMLResponse)
async def tickets_page() -> HTMLResponse:
    return _page("tickets", active="tickets")


@router.get("/dissuasion", response_class=HTMLResponse)
async def dissuasion_page() -> HTMLResponse:
    return _page("dissuasion", active="dissuasion")


@router.get("/broadcasts", response_class=HTMLResponse)
async def broadcasts_page() -> HTMLResponse:
    return _page("broadcasts", active="broadcasts")


@router.get("/metrics", response_class=HTMLResponse)
async def metrics_page() -> HTMLResponse:
    return _page("metrics", active="metrics")


@router.get("/nlu", response_class=HTMLResponse)
async def nlu_page() -> HTMLResponse:
    return _page("nlu", active="nlu")
