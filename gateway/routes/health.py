"""GET /healthz — the state of the database, Rasa and the action server."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter, Request

from casework import health
from casework.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic)
async def healthz(request: Request) -> HealthPublic:
    settings = request.app.state.settings
    database = await asyncio.to_thread(health.database_state, settings.database_url)
    rasa = "ok" if await request.app.state.rasa.healthy() else "down"
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            answer = await client.get(f"{settings.action_server_url}/health")
        actions = "ok" if answer.status_code == 200 else f"down: HTTP {answer.status_code}"
    except httpx.HTTPError as error:
        actions = f"down: {type(error).__name__}"
    healthy = database == rasa == actions == "ok"
    return HealthPublic(
        status="ok" if healthy else "degraded", database=database, rasa=rasa, action_server=actions
    )
