"""GET /metrics — Prometheus text exposition (gateway/observability.py says what is in it).

No personal data is exposed (counts by route template, status, priority), but the
numbers are not for the internet: with METRICS_TOKEN set (production refuses to start
without it) the scraper sends `Authorization: Bearer <METRICS_TOKEN>`; development
without a token serves it openly on its loopback gateway.
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response

from gateway import observability

router = APIRouter(tags=["operations"])


def _authorized(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    settings = request.app.state.settings
    if not _authorized(request, settings.metrics_token):
        return Response(
            "metrics need the bearer token (METRICS_TOKEN)\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": "Bearer"},
        )
    body, content_type = await asyncio.to_thread(observability.render, settings.database_url)
    return Response(body, media_type=content_type)
