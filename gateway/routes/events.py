"""GET /api/events — server-sent events for the console's live queue.

The console first trades its session cookie (with the CSRF header) — or an API client
its bearer token — for a stream ticket (POST /api/events/ticket), then opens the stream
with `?ticket=`: no credential appears in a URL, and a ticket that leaks into a log is
already used or expired. Each connection polls the shared database once a second
(`casework.live`), which keeps it right with several gateway workers and with cases
created by the action server; each poll also checks that the session (or the bearer
token's standing) the ticket was asked with still holds, so logging out ends the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from casework import db, live, sessions
from gateway.deps import AuthDep, OfficerUser, SessionDep, session_policy

router = APIRouter(prefix="/api", tags=["events"])
POLL_SECONDS = 1.0
PING_EVERY = 15


@router.post("/events/ticket", response_model=live.StreamTicket)
def stream_ticket(user: OfficerUser, auth: AuthDep, session: SessionDep) -> live.StreamTicket:
    console_session = auth.console_session.id if auth.console_session else None
    try:
        ticket = live.issue_ticket(session=session, user=user, console_session_id=console_session)
    except live.StreamRefused as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from error
    # Commit before answering: the browser opens the stream at once, maybe on another worker.
    session.commit()
    return ticket


def _redeem(database_url: str, ticket: str) -> live.StreamGrant | None:
    with db.session_scope(database_url) as session:
        return live.redeem(session=session, ticket=ticket)


def _changes(
    database_url: str,
    grant: live.StreamGrant,
    policy: sessions.Policy,
    since: datetime | None,
    last_message: int,
) -> live.LiveChanges:
    with db.session_scope(database_url) as session:
        if not live.grant_holds(session=session, grant=grant, policy=policy):
            raise live.StreamRefused("登录已失效，请重新登录")
        return live.changes(
            session=session, user_id=grant.user_id, since=since, last_message=last_message
        )


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 401: {"description": "票据无效"}},
)
async def events(request: Request, ticket: str = "") -> StreamingResponse:
    """The stream; `ticket` from POST /api/events/ticket, good for one connection."""
    settings = request.app.state.settings
    database_url, policy = settings.database_url, session_policy(settings)
    grant = await asyncio.to_thread(_redeem, database_url, ticket)
    if grant is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "实时推送票据无效或已过期，请重新连接")
    try:  # start from "now": the console loads the current queue itself
        first = await asyncio.to_thread(_changes, database_url, grant, policy, None, 0)
    except live.StreamRefused as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from error

    async def stream() -> AsyncIterator[str]:
        since, last_message = first.since, first.last_message
        yield "retry: 2000\n\n"
        quiet = 0
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_SECONDS)
            try:
                news = await asyncio.to_thread(
                    _changes, database_url, grant, policy, since, last_message
                )
            except live.StreamRefused:
                return  # signed out or disabled meanwhile: end; reconnecting needs a ticket
            since, last_message = news.since, news.last_message
            for case in news.cases:
                yield f"event: case\ndata: {case.json()}\n\n"
            for message in news.messages:
                yield f"event: message\ndata: {message.json()}\n\n"
            quiet = 0 if news.cases or news.messages else quiet + 1
            if quiet and quiet % PING_EVERY == 0:
                yield ": ping\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
