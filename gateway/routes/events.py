"""GET /api/events — server-sent events for the console's live queue.

The console first trades its bearer token for a stream ticket (POST /api/events/ticket),
then opens the stream with `?ticket=`: the JWT never appears in a URL, and a ticket that
leaks into a log is already used or expired. Each connection polls the shared database
once a second (`casework.live`), which keeps it right with several gateway workers and
with cases created by the action server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from casework import db, live
from gateway.deps import OfficerUser, SessionDep

router = APIRouter(prefix="/api", tags=["events"])
POLL_SECONDS = 1.0
PING_EVERY = 15


@router.post("/events/ticket", response_model=live.StreamTicket)
def stream_ticket(user: OfficerUser, session: SessionDep) -> live.StreamTicket:
    try:
        ticket = live.issue_ticket(session=session, user=user)
    except live.StreamRefused as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from error
    # Commit before answering: the browser opens the stream at once, maybe on another worker.
    session.commit()
    return ticket


def _redeem(database_url: str, ticket: str) -> int | None:
    with db.session_scope(database_url) as session:
        return live.redeem_ticket(session=session, ticket=ticket)


def _changes(
    database_url: str, user_id: int, since: datetime | None, last_message: int
) -> live.LiveChanges:
    with db.session_scope(database_url) as session:
        return live.changes(
            session=session, user_id=user_id, since=since, last_message=last_message
        )


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 401: {"description": "票据无效"}},
)
async def events(request: Request, ticket: str = "") -> StreamingResponse:
    """The stream; `ticket` from POST /api/events/ticket, good for one connection."""
    database_url = request.app.state.settings.database_url
    user_id = await asyncio.to_thread(_redeem, database_url, ticket)
    if user_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "实时推送票据无效或已过期，请重新连接")
    try:  # start from "now": the console loads the current queue itself
        first = await asyncio.to_thread(_changes, database_url, user_id, None, 0)
    except live.StreamRefused as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from error

    async def stream() -> AsyncIterator[str]:
        since, last_message = first.since, first.last_message
        yield "retry: 2000\n\n"
        quiet = 0
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_SECONDS)
            try:
                news = await asyncio.to_thread(_changes, database_url, user_id, since, last_message)
            except live.StreamRefused:
                return  # disabled meanwhile: end the stream; reconnecting needs a new ticket
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
