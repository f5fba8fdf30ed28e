"""What the console's live stream needs: stream tickets and the changes since last poll.

A browser's EventSource cannot send an Authorization header, and a token in the URL ends
up in access logs and browser history. So the console trades its bearer token for a
stream ticket: random, valid for 30 seconds, good for one connection. Tickets live in
`shared_values` (only their hash, under the prefix `sse:`), so any gateway worker can
redeem one, and redeeming is one conditional DELETE, so only one connection ever wins.

A ticket remembers how it was asked for: with a console session (cookie), the stream
ends once that session does (logout, idle or absolute expiry); with a bearer token, once
the user logs out everywhere after the ticket was issued (`grant_holds`, every poll).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from casework import handling, sessions
from casework.clock import aware, utcnow
from casework.models import Case, Conversation, Message, SharedValue, User

TICKET_LIFETIME = timedelta(seconds=30)
TICKET_PREFIX = "sse:"
MAX_TICKET_LENGTH = 100
STREAM_ROLES = ("officer", "commander", "admin")


class StreamRefused(Exception):
    """This user may not watch the queue (a trainer, or a disabled account)."""


class StreamTicket(BaseModel):
    ticket: str
    expires_in: int  # seconds


class CaseChange(BaseModel):
    id: int
    status: str
    priority: str


class MessageArrival(BaseModel):
    case_id: int
    conversation_id: int


class LiveChanges(BaseModel):
    cases: list[CaseChange]
    messages: list[MessageArrival]
    since: datetime | None  # pass back on the next poll
    last_message: int


@dataclass(frozen=True)
class StreamGrant:
    """Whose stream a redeemed ticket opens, and on what authority."""

    user_id: int
    console_session_id: str | None  # None: asked for with a bearer token
    issued_at: datetime


def _key(ticket: str) -> str:
    # Only the hash is stored: a read of the table does not hand out live tickets.
    return TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


def issue_ticket(
    *, session: Session, user: User, console_session_id: str | None = None
) -> StreamTicket:
    """A single-use ticket for `user`'s next stream connection; `console_session_id` when
    asked for with the console's session cookie, so the stream ends with the session."""
    if user.role not in STREAM_ROLES or not user.active:
        raise StreamRefused("无权查看案件")
    now = utcnow()
    session.execute(  # tickets nobody redeemed
        delete(SharedValue)
        .where(SharedValue.key.startswith(TICKET_PREFIX), SharedValue.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    ticket = secrets.token_urlsafe(32)
    owner = f"{user.id}:{console_session_id}" if console_session_id else str(user.id)
    session.add(SharedValue(key=_key(ticket), value=owner, expires_at=now + TICKET_LIFETIME))
    session.flush()
    return StreamTicket(ticket=ticket, expires_in=int(TICKET_LIFETIME.total_seconds()))


def redeem_ticket(*, session: Session, ticket: str) -> int | None:
    """The id of the user the ticket was issued to, once; None when it is unknown, used,
    expired, or its user may no longer watch the queue."""
    grant = redeem(session=session, ticket=ticket)
    return grant.user_id if grant is not None else None


def redeem(*, session: Session, ticket: str) -> StreamGrant | None:
    """`redeem_ticket`, with how the ticket was asked for."""
    if not ticket or len(ticket) > MAX_TICKET_LENGTH:
        return None
    key, now = _key(ticket), utcnow()
    stored = session.execute(
        select(SharedValue.value, SharedValue.expires_at).where(SharedValue.key == key)
    ).first()
    taken = session.execute(
        delete(SharedValue)
        .where(SharedValue.key == key, SharedValue.expires_at > now)
        .execution_options(synchronize_session=False)
    )
    if stored is None or taken.rowcount != 1:  # another connection won it, or it ran out
        return None
    owner, _, console_session_id = stored.value.partition(":")
    user = session.get(User, int(owner))
    if user is None or not user.active or user.role not in STREAM_ROLES:
        return None
    return StreamGrant(
        user_id=user.id,
        console_session_id=console_session_id or None,
        issued_at=aware(stored.expires_at) - TICKET_LIFETIME,
    )


def grant_holds(*, session: Session, grant: StreamGrant, policy: sessions.Policy) -> bool:
    """The authority the stream was opened with still stands: its console session is
    live, or (bearer) the user has not logged out everywhere since the ticket."""
    if grant.console_session_id is not None:
        return sessions.still_live(
            session=session, session_id=grant.console_session_id, policy=policy
        )
    user = session.get(User, grant.user_id)
    return user is not None and sessions.bearer_still_valid(
        user, issued_us=sessions.issued_microseconds(grant.issued_at)
    )


def changes(
    *, session: Session, user_id: int, since: datetime | None, last_message: int
) -> LiveChanges:
    """Cases changed after `since` and resident messages after `last_message` that the
    user may see (the same scoping as the queue, `casework.handling`)."""
    user = session.get(User, user_id)
    if user is None or not user.active or user.role not in STREAM_ROLES:
        raise StreamRefused("无权查看案件")
    cases_query = select(Case)
    if since is not None:
        cases_query = cases_query.where(Case.updated_at > since)
    if not handling.sees_everything(user):
        cases_query = cases_query.where(handling.scope_filter(user))
    changed = list(session.execute(cases_query).scalars())
    newest = session.execute(select(func.max(Case.updated_at))).scalar_one_or_none()
    arrivals = session.execute(
        select(Message.id, Message.conversation_id, Conversation.openid)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id > last_message, Message.direction == "in")
        .order_by(Message.id)
    ).all()
    messages = []
    for message_id, conversation_id, openid in arrivals:
        last_message = max(last_message, message_id)
        case = session.execute(
            select(Case)
            .where(Case.sender_id == openid, Case.status != "closed")
            .order_by(Case.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if case is not None and handling.can_see(user, case):
            messages.append(MessageArrival(case_id=case.id, conversation_id=conversation_id))
    return LiveChanges(
        cases=[CaseChange(id=c.id, status=c.status, priority=c.priority) for c in changed],
        messages=messages,
        since=newest or since,
        last_message=last_message,
    )
