"""Pages of the officer console and their static files.

Every page is a small HTML shell: the data comes from the JSON API (docs/console-api.md),
fetched by the page's script with the bearer token from `sessionStorage`. Selects of codes
(categories, ticket kinds and states, desks, NLU reasons) are filled from
`GET /api/vocabulary`, so no label is copied into these pages. Nothing here
reads the database or needs a login — an anonymous visitor gets empty shells whose
scripts send them to the login page.

Static files come from `gateway/console/static/`, served from a fixed allow-list (no
directory traversal, no build step, nothing from a CDN). Pages forbid inline scripts and
foreign origins through a Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

router = APIRouter(prefix="/console", include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "login.js": "text/javascript; charset=utf-8",
    "queue.js": "text/javascript; charset=utf-8",
    "case.js": "text/javascript; charset=utf-8",
    "tickets.js": "text/javascript; charset=utf-8",
    "metrics.js": "text/javascript; charset=utf-8",
    "nlu.js": "text/javascript; charset=utf-8",
    "dissuasion.js": "text/javascript; charset=utf-8",
    "broadcasts.js": "text/javascript; charset=utf-8",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the event stream URL carries the token
    "X-Frame-Options": "DENY",
}

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
    return HTMLResponse(
        render(f"{name}.html", active), headers={**SECURITY_HEADERS, "Cache-Control": "no-store"}
    )


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


# ---------------------------------------------------------------------- static files


@router.get("/static/{name}")
async def static_file(name: str, request: Request) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    content = (STATIC_DIR / name).read_bytes()
    etag = '"' + hashlib.sha256(content).hexdigest()[:16] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content, media_type=media_type, headers=headers)
