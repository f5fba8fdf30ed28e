"""The persistent outbox: customer-service messages waiting for the WeChat API.

A message is enqueued in the same transaction that records it as outbound, so nothing
the bot or an officer says can be lost between "decided" and "sent". Workers claim due
items with a conditional UPDATE (safe with several gateway workers on PostgreSQL),
retry transient failures with exponential backoff and give up on permanent ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from casework.conversations import record_outbound
from casework.models import Message, OutboxItem, utcnow

MAX_ATTEMPTS = 8
BASE_BACKOFF = timedelta(seconds=2)
MAX_BACKOFF = timedelta(minutes=10)
STALE_CLAIM = timedelta(minutes=5)  # a worker that claimed and died: retry after this


@dataclass(frozen=True)
class Claimed:
    id: int
    openid: str
    text: str
    attempts: int


def enqueue(
    *, session: Session, conversation_id: int, openid: str, text: str, sender: str
) -> OutboxItem:
    """Record an outbound message and queue it for delivery."""
    message = record_outbound(
        session=session,
        conversation_id=conversation_id,
        text=text,
        sender=sender,
        delivery="outbox",
    )
    item = OutboxItem(
        message_id=message.id,
        openid=openid,
        text=text,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(item)
    session.flush()
    return item


def claim_due(*, session: Session, now: datetime | None = None, limit: int = 20) -> list[Claimed]:
    """Claim up to `limit` items that are due; each is claimed by exactly one worker."""
    now = now or utcnow()
    candidates = session.execute(
        select(OutboxItem.id)
        .where(
            ((OutboxItem.status == "pending") & (OutboxItem.next_attempt_at <= now))
            | ((OutboxItem.status == "sending") & (OutboxItem.next_attempt_at <= now - STALE_CLAIM))
        )
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
    ).scalars()
    claimed = []
    for item_id in list(candidates):
        result = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id, OutboxItem.status.in_(("pending", "sending")))
            .where(OutboxItem.next_attempt_at <= now)
            .values(status="sending", attempts=OutboxItem.attempts + 1, next_attempt_at=now)
        )
        if result.rowcount == 1:
            item = session.get(OutboxItem, item_id)
            assert item is not None
            session.refresh(item)
            claimed.append(
                Claimed(id=item.id, openid=item.openid, text=item.text, attempts=item.attempts)
            )
    return claimed


def _message_status(session: Session, item: OutboxItem, status: str) -> None:
    message = session.get(Message, item.message_id)
    if message is not None:
        message.status = status


def mark_sent(*, session: Session, item_id: int) -> None:
    item = session.get(OutboxItem, item_id)
    if item is None:
        return
    item.status, item.sent_at, item.last_error = "sent", utcnow(), None
    _message_status(session, item, "sent")


def mark_failed(*, session: Session, item_id: int, error: str, permanent: bool) -> str:
    """Record a failed attempt: retry later with backoff, or give up. Returns the status."""
    item = session.get(OutboxItem, item_id)
    if item is None:
        return "missing"
    item.last_error = error[:1000]
    if permanent or item.attempts >= MAX_ATTEMPTS:
        item.status = "failed"
        _message_status(session, item, "failed")
        return "failed"
    delay = min(BASE_BACKOFF * (2 ** max(item.attempts - 1, 0)), MAX_BACKOFF)
    item.status, item.next_attempt_at = "pending", utcnow() + delay
    return "pending"


def failed_items(*, session: Session) -> list[OutboxItem]:
    return list(session.execute(select(OutboxItem).where(OutboxItem.status == "failed")).scalars())
