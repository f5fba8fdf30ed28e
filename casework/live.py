"""What the console's live stream needs: stream tickets and the changes since last poll.

A browser's EventSource cannot send an Authorization header, and a token in the URL ends
up in access logs and browser history. So the console trades its bearer token for a
stream ticket: random, valid for 30 seconds, good for one connection. Tickets live in
`shared_values` (only their hash, under the prefix `sse:`), so any gateway worker can
redeem one, and redeeming is one conditional DELETE, so only one connection ever wins.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from casework import handling
from casework.clock import utcnow
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


def _key(ticket: str) -> str:
    # Only the hash is stored: a read of the table does not hand out live tickets.
    return TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


def issue_ticket(*, session: Session, user: User) -> StreamTicket:
    """A single-use ticket for `user`'s next stream connection."""
    if user.role not in STREAM_ROLES or not user.active:
        raise StreamRefused("无权查看案件")
    now = utcnow()
    session.execute(  # tickets nobody redeemed
        delete(SharedValue)
        .where(SharedValue.key.startswith(TICKET_PREFIX), SharedValue.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    ticket = secrets.token_urlsafe(32)
    session.add(SharedValue(key=_key(ticket), value=str(user.id), expires_at=now + TICKET_LIFETIME))
    session.flush()
    return StreamTicket(ticket=ticket, expires_in=int(TICKET_LIFETIME.total_seconds()))


def redeem_ticket(*, session: Session, ticket: str) -> int | None:
    """The id of the user the ticket was issued to, once; None when it is unknown, used,
    expired, or its user may no longer watch the queue."""
    if not ticket or len(ticket) > MAX_TICKET_LENGTH:
        return None
    key, now = _key(ticket), utcnow()
    owner = session.execute(select(SharedValue.value).where(SharedValue.key == key)).scalar()
    taken = session.execute(
        delete(SharedValue)
        .where(SharedValue.key == key, SharedValue.expires_at > now)
        .execution_options(synchronize_session=False)
    )
    if owner is None or taken.rowcount != 1:  # another connection won it, or it ran out
        return None
    user = session.get(User, int(owner))
    if user is None or not user.active or user.role not in STREAM_ROLES:
        return None
    return user.id


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
