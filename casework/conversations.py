"""Residents, their conversation with the account, and every message in it.

Storing an inbound message is idempotent: WeChat retries a message it got no answer to
with the same MsgId, and the unique `dedupe_key` turns the retry into a lookup of the
message already stored (and of the reply it already got).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from casework.clock import aware, utcnow
from casework.models import Case, Conversation, Message, Resident
from casework.upsert import insert_for

# `residents.last_seen_at` is kept to this precision: a resident's burst of messages
# writes it once, not once per message (nothing reads it more precisely).
LAST_SEEN_STEP = timedelta(minutes=1)


def conversation_for(*, session: Session, openid: str) -> Conversation:
    """The resident's conversation, created (with the resident) on first contact."""
    conversation = session.execute(
        select(Conversation).where(Conversation.openid == openid)
    ).scalar_one_or_none()
    return conversation if conversation is not None else _first_contact(session, openid)


def _first_contact(session: Session, openid: str) -> Conversation:
    """Create the resident and their conversation (or find the ones another worker
    created a moment ago)."""
    try:
        with session.begin_nested():
            resident = Resident(openid=openid, subscribed=True)
            session.add(resident)
            session.flush()
            conversation = Conversation(resident_id=resident.id, openid=openid, owner="bot")
            session.add(conversation)
            session.flush()
        return conversation
    except IntegrityError:  # another worker created it a moment ago
        return session.execute(
            select(Conversation).where(Conversation.openid == openid)
        ).scalar_one()


@dataclass(frozen=True)
class StoredMessage:
    """An inbound message as stored: its id, whether this call stored it, the passive
    reply it already got (a retry repeats it) and the resident's conversation."""

    message_id: int
    new: bool
    reply: str | None
    conversation: Conversation


def store_inbound_message(
    *,
    session: Session,
    openid: str,
    dedupe_key: str,
    msg_type: str,
    content: str,
    media: dict[str, Any] | None = None,
    raw: str | None = None,
    claimed_by: str | None = None,
    claim_expires_at: datetime | None = None,
) -> StoredMessage:
    """Store an inbound message once; a retry with the same key finds the stored one.

    On the gateway's path before every passive reply, so it is written in as few
    statements as it can be (issue 10): one lookup of the conversation (with when the
    resident was last seen), one `INSERT … ON CONFLICT (dedupe_key) DO NOTHING` — two
    concurrent retries cannot both store it: on PostgreSQL the second waits for the
    first to commit, then finds its row — and, at most once a `LAST_SEEN_STEP`, the
    resident's `last_seen_at`. `claimed_by` / `claim_expires_at`: the bot turn's claim,
    for a message the bot will be asked about."""
    now = utcnow()
    found = session.execute(
        select(Conversation, Resident.last_seen_at)
        .join(Resident, Resident.id == Conversation.resident_id)
        .where(Conversation.openid == openid)
    ).first()
    if found is None:
        conversation, last_seen = _first_contact(session, openid), None  # seen just now
    else:
        conversation, last_seen = found
    values = {
        "conversation_id": conversation.id,
        "direction": "in",
        "msg_type": msg_type,
        "dedupe_key": dedupe_key,
        "content": content,
        "media": media or {},
        "raw": raw,
        "status": "received",
        "claimed_by": claimed_by,
        "claim_expires_at": claim_expires_at,
        "created_at": now,
    }
    table = Message.__table__
    insert = insert_for(session, table).values(**values)
    insert = insert.on_conflict_do_nothing(index_elements=[table.c.dedupe_key])
    message_id: int | None
    if session.get_bind().dialect.name == "postgresql":
        message_id = session.execute(insert.returning(table.c.id)).scalar_one_or_none()
    else:  # SQLAlchemy 1.4 has no RETURNING for SQLite: the row count and rowid say it
        result = session.execute(insert)
        message_id = result.inserted_primary_key[0] if result.rowcount == 1 else None
    if message_id is None:  # a retry, or a concurrent retry stored it first
        stored = session.execute(
            select(Message.id, Message.reply).where(Message.dedupe_key == dedupe_key)
        ).one()
        return StoredMessage(
            message_id=stored.id, new=False, reply=stored.reply, conversation=conversation
        )
    if last_seen is not None and now - aware(last_seen) >= LAST_SEEN_STEP:
        session.execute(
            update(Resident)
            .where(Resident.id == conversation.resident_id)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    return StoredMessage(message_id=message_id, new=True, reply=None, conversation=conversation)


def record_inbound(
    *,
    session: Session,
    openid: str,
    dedupe_key: str,
    msg_type: str,
    content: str,
    media: dict[str, Any] | None = None,
    raw: str | None = None,
    claimed_by: str | None = None,
    claim_expires_at: datetime | None = None,
) -> tuple[Message, bool]:
    """`store_inbound_message`, returning (the stored message, whether this call stored
    it) — for tools and tests that want the row itself (one more SELECT)."""
    stored = store_inbound_message(
        session=session,
        openid=openid,
        dedupe_key=dedupe_key,
        msg_type=msg_type,
        content=content,
        media=media,
        raw=raw,
        claimed_by=claimed_by,
        claim_expires_at=claim_expires_at,
    )
    message = session.get(Message, stored.message_id)
    assert message is not None  # stored in this transaction, or committed before it
    return message, stored.new


def record_outbound(
    *,
    session: Session,
    conversation_id: int,
    text: str,
    sender: str,
    delivery: str,
    msg_type: str = "text",
    created_at: datetime | None = None,
) -> Message:
    """An answer in the transcript. `created_at`: when it was given, for a record written
    a moment later (the gateway records a passive reply after sending it)."""
    message = Message(
        conversation_id=conversation_id,
        direction="out",
        msg_type=msg_type,
        content=text,
        media={},
        status="sent" if delivery == "passive" else "queued",
        sender=sender,
        delivery=delivery,
        created_at=created_at or utcnow(),
    )
    session.add(message)
    session.flush()
    return message


def set_subscribed(
    *,
    session: Session,
    openid: str,
    subscribed: bool,
    conversation: Conversation | None = None,
) -> None:
    """`conversation`: the resident's, when the caller has it already (no lookup)."""
    conversation = conversation or conversation_for(session=session, openid=openid)
    resident = session.get(Resident, conversation.resident_id)
    if resident is not None:
        resident.subscribed = subscribed


def set_location(
    *,
    session: Session,
    openid: str,
    label: str | None,
    lat: float | None,
    lng: float | None,
    conversation: Conversation | None = None,
) -> None:
    """`conversation`: the resident's, when the caller has it already (no lookup)."""
    conversation = conversation or conversation_for(session=session, openid=openid)
    conversation.location_label, conversation.location_lat, conversation.location_lng = (
        label,
        lat,
        lng,
    )


def messages_of(*, session: Session, conversation_id: int) -> list[Message]:
    return list(
        session.execute(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.created_at, Message.id)
        ).scalars()
    )


def hand_to_officers(*, session: Session, openid: str) -> Conversation:
    """From now on the resident's messages go to officers, not to the bot."""
    conversation = conversation_for(session=session, openid=openid)
    conversation.owner = "officer"
    return conversation


def open_case_of(*, session: Session, openid: str) -> Case | None:
    """The resident's most recent case that is not closed."""
    return session.execute(
        select(Case)
        .where(Case.sender_id == openid, Case.status != "closed")
        .order_by(Case.id.desc())
        .limit(1)
    ).scalar_one_or_none()
