"""GET /healthz (liveness) and GET /readyz (readiness): the state of the database, Rasa
and the action server.

/healthz answers 200 whenever this process can answer — a process that is up but whose
dependencies are down must not be restarted for it — and reports each dependency in the
body. /readyz answers the same body with 503 when one of them is unusable, so a load
balancer sends WeChat's callbacks elsewhere. The three checks run concurrently, each
bounded by `CHECK_TIMEOUT`, so neither probe takes longer than that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from casework import health
from casework.schemas import HealthPublic

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 2.0  # seconds, per dependency (the checks run side by side)


async def _bounded(check: Awaitable[str]) -> str:
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT)
    except asyncio.TimeoutError:
        return f"down: no answer within {CHECK_TIMEOUT:g} s"


async def _rasa(request: Request) -> str:
    return "ok" if await request.app.state.rasa.healthy() else "down"


def _http(app: FastAPI) -> httpx.AsyncClient:
    """One client per app for the probes: making one costs ~80 ms (its TLS context), more
    than the checks themselves. Closed by `close` when the app stops."""
    client = getattr(app.state, "health_http", None)
    if client is None:
        client = app.state.health_http = httpx.AsyncClient(timeout=CHECK_TIMEOUT)
    return client


async def close(app: FastAPI) -> None:
    client = getattr(app.state, "health_http", None)
    if client is not None:
        app.state.health_http = None
        await client.aclose()


async def _action_server(request: Request, url: str) -> str:
    try:
        answer = await _http(request.app).get(f"{url}/health", timeout=CHECK_TIMEOUT)
    except httpx.HTTPError as error:
        return f"down: {type(error).__name__}"
    return "ok" if answer.status_code == 200 else f"down: HTTP {answer.status_code}"


def _database(request: Request, url: str) -> Awaitable[str]:
    """The database check runs in a thread, which a timeout cannot stop: while one is still
    stuck (a black-holed database host), later probes wait on it instead of starting
    another — probes every few seconds must not fill the thread pool the message path
    needs (`asyncio.to_thread`)."""
    pending = getattr(request.app.state, "health_database", None)
    if pending is None or pending.done():
        pending = asyncio.ensure_future(asyncio.to_thread(health.database_state, url))
        request.app.state.health_database = pending
    return asyncio.shield(pending)


async def check(request: Request) -> HealthPublic:
    settings = request.app.state.settings
    database, rasa, actions = await asyncio.gather(
        _bounded(_database(request, settings.database_url)),
        _bounded(_rasa(request)),
        _bounded(_action_server(request, settings.action_server_url)),
    )
    healthy = database == rasa == actions == "ok"
    return HealthPublic(
        status="ok" if healthy else "degraded", database=database, rasa=rasa, action_server=actions
    )


@router.get("/healthz", response_model=HealthPublic)
async def healthz(request: Request) -> HealthPublic:
    """Liveness: 200 while this process answers; the body says what is degraded."""
    return await check(request)


@router.get(
    "/readyz",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "a dependency is unusable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 503 while the database, Rasa or the action server is unusable."""
    state = await check(request)
    return JSONResponse(state.dict(), status_code=200 if state.status == "ok" else 503)
