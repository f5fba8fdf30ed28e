"""GET /healthz — the state of the database, Rasa and the action server."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request
from sqlalchemy import text

from casework import db

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request) -> dict:
    settings = request.app.state.settings
    try:
        with db.session_scope(settings.database_url) as session:
            session.execute(text("select 1"))
        database = "ok"
    except Exception as error:  # noqa: BLE001 — report, never raise
        database = f"down: {type(error).__name__}"
    rasa = "ok" if await request.app.state.rasa.healthy() else "down"
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            answer = await client.get(f"{settings.action_server_url}/health")
        actions = "ok" if answer.status_code == 200 else f"down: HTTP {answer.status_code}"
    except httpx.HTTPError as error:
        actions = f"down: {type(error).__name__}"
    healthy = database == rasa == actions == "ok"
    return {
        "status": "ok" if healthy else "degraded",
        "database": database,
        "rasa": rasa,
        "action_server": actions,
    }
