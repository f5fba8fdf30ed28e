"""The persistent outbox: customer-service messages waiting for the WeChat API.

A message is enqueued in the same transaction that records it as outbound, so nothing
the bot or an officer says can be lost between "decided" and "sent". Several gateway
workers share the outbox through claims with an owner and an expiry (`casework.claims`).

State machine of an item (`status`, with `claimed_by` / `claim_expires_at`):

    pending ──claim (due: next_attempt_at <= now)──► sending (claimed_by=me, expires)
    sending ──finish by the owner──► sent
                                 ├─► pending (transient failure: next_attempt_at = backoff,
                                 │            claim cleared)
                                 └─► failed  (permanent, or MAX_ATTEMPTS reached)
    sending ──claim expired (the owner died)──► sending (taken over by another worker)

Only the current owner finishes: a worker whose claim was taken over writes nothing.
Transient failures back off 2 s doubling to 10 min, at most MAX_ATTEMPTS attempts
(WeChat only accepts customer-service messages for 48 h after the resident wrote).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from casework import claims
from casework.conversations import record_outbound
from casework.models import Message, OutboxItem, utcnow

MAX_ATTEMPTS = 8
BASE_BACKOFF = timedelta(seconds=2)
MAX_BACKOFF = timedelta(minutes=10)
CLAIM_TTL = claims.CLAIM_TTL  # a worker that claimed and died: taken over after this


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


def _claimable(now: datetime) -> ColumnElement[bool]:
    return ((OutboxItem.status == "pending") & (OutboxItem.next_attempt_at <= now)) | (
        (OutboxItem.status == "sending") & (OutboxItem.claim_expires_at <= now)
    )


def claim_due(
    *,
    session: Session,
    owner: str | None = None,
    now: datetime | None = None,
    limit: int = claims.BATCH,
    ttl: timedelta = CLAIM_TTL,
) -> list[Claimed]:
    """Claim up to `limit` due items for `owner` (default: this process); each item is
    claimed by exactly one worker, and a claim is taken over only once it has expired."""
    now = now or utcnow()
    owner = owner or claims.worker_id()
    items = claims.claim_rows(
        session,
        id_column=OutboxItem.id,
        claimable=_claimable(now),
        order_by=(OutboxItem.next_attempt_at, OutboxItem.id),
        values={
            "status": "sending",
            "claimed_by": owner,
            "claim_expires_at": now + ttl,
            "attempts": OutboxItem.attempts + 1,
        },
        limit=limit,
    )
    return [Claimed(id=i.id, openid=i.openid, text=i.text, attempts=i.attempts) for i in items]


def _message_status(session: Session, item: OutboxItem, status: str) -> None:
    message = session.get(Message, item.message_id)
    if message is not None:
        message.status = status


def _release(session: Session, item_id: int, owner: str, **values: object) -> OutboxItem | None:
    """Finish our claim (None when it was taken over: write nothing)."""
    item: OutboxItem | None = claims.release_row(
        session,
        id_column=OutboxItem.id,
        item_id=item_id,
        owner_column=OutboxItem.claimed_by,
        owner=owner,
        values={"claimed_by": None, "claim_expires_at": None, **values},
        also=OutboxItem.status == "sending",
    )
    return item


def mark_sent(*, session: Session, item_id: int, owner: str | None = None) -> bool:
    """The owner delivered the item. False when the claim was no longer ours."""
    owner = owner or claims.worker_id()
    item = _release(session, item_id, owner, status="sent", sent_at=utcnow(), last_error=None)
    if item is None:
        return False
    _message_status(session, item, "sent")
    return True


def mark_failed(
    *,
    session: Session,
    item_id: int,
    error: str,
    permanent: bool,
    owner: str | None = None,
    now: datetime | None = None,
) -> str:
    """Record a failed attempt: retry later with backoff, or give up. Returns the status
    ("lost" when the claim was taken over and nothing was written)."""
    owner = owner or claims.worker_id()
    now = now or utcnow()
    current = session.execute(
        select(OutboxItem.attempts).where(OutboxItem.id == item_id, OutboxItem.claimed_by == owner)
    ).scalar_one_or_none()
    if current is None:
        return "lost"
    if permanent or current >= MAX_ATTEMPTS:
        item = _release(session, item_id, owner, status="failed", last_error=error[:1000])
        if item is None:
            return "lost"
        _message_status(session, item, "failed")
        return "failed"
    delay = min(BASE_BACKOFF * (2 ** max(current - 1, 0)), MAX_BACKOFF)
    item = _release(
        session,
        item_id,
        owner,
        status="pending",
        next_attempt_at=now + delay,
        last_error=error[:1000],
    )
    return "lost" if item is None else "pending"


def failed_items(*, session: Session) -> list[OutboxItem]:
    return list(session.execute(select(OutboxItem).where(OutboxItem.status == "failed")).scalars())
