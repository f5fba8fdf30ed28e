"""GET /api/events — server-sent events for the console's live queue.

Each connection polls the database once a second for cases that changed and resident
messages that arrived. Polling the shared database (instead of an in-process bus) keeps
it right with several gateway workers and with cases created by the action server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from casework import accounts, db, handling
from casework.models import Case, Conversation, Message, User

router = APIRouter(prefix="/api", tags=["events"])
POLL_SECONDS = 1.0
PING_EVERY = 15


def _user_for(token: str, database_url: str, configured_secret: str | None) -> int:
    with db.session_scope(database_url) as session:
        secret = accounts.signing_secret(session=session, configured=configured_secret)
        try:
            claims = accounts.read_token(token, secret=secret)
        except accounts.AuthError as error:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(error)) from error
        user = session.get(User, claims.user_id)
        if user is None or not user.active or user.role not in ("officer", "commander", "admin"):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "无权查看案件")
        return user.id


def _changes(
    database_url: str, user_id: int, since: datetime | None, last_message: int
) -> tuple[list[dict], list[dict], datetime | None, int]:
    with db.session_scope(database_url) as session:
        user = session.get(User, user_id)
        assert user is not None
        cases_query = select(Case)
        if since is not None:
            cases_query = cases_query.where(Case.updated_at > since)
        if not handling.sees_everything(user):
            cases_query = cases_query.where(handling.scope_filter(user))
        changed = list(session.execute(cases_query).scalars())
        newest = session.execute(select(func.max(Case.updated_at))).scalar_one_or_none()
        messages = session.execute(
            select(Message, Conversation.openid)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.id > last_message, Message.direction == "in")
            .order_by(Message.id)
        ).all()
        latest_message = max([last_message, *(m.id for m, _ in messages)])
        message_events = []
        for message, openid in messages:
            case = session.execute(
                select(Case)
                .where(Case.sender_id == openid, Case.status != "closed")
                .order_by(Case.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if case is not None and handling.can_see(user, case):
                message_events.append(
                    {"case_id": case.id, "conversation_id": message.conversation_id}
                )
        case_events = [{"id": c.id, "status": c.status, "priority": c.priority} for c in changed]
        return case_events, message_events, newest or since, latest_message


@router.get("/events")
async def events(request: Request, access_token: str = "") -> StreamingResponse:
    settings = request.app.state.settings
    user_id = await asyncio.to_thread(
        _user_for, access_token, settings.database_url, settings.secret_key
    )

    async def stream() -> AsyncIterator[str]:
        # Start from "now": the console loads the current queue itself.
        _, _, since, last_message = await asyncio.to_thread(
            _changes, settings.database_url, user_id, None, 0
        )
        yield "retry: 2000\n\n"
        quiet = 0
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_SECONDS)
            cases, messages, since, last_message = await asyncio.to_thread(
                _changes, settings.database_url, user_id, since, last_message
            )
            for case in cases:
                yield f"event: case\ndata: {json.dumps(case)}\n\n"
            for message in messages:
                yield f"event: message\ndata: {json.dumps(message)}\n\n"
            quiet = 0 if cases or messages else quiet + 1
            if quiet and quiet % PING_EVERY == 0:
                yield ": ping\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
