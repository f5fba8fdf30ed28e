"""Residents, their conversation with the account, and every message in it.

Storing an inbound message is idempotent: WeChat retries a message it got no answer to
with the same MsgId, and the unique `dedupe_key` turns the retry into a lookup of the
message already stored (and of the reply it already got).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from casework.models import Case, Conversation, Message, Resident, utcnow


def conversation_for(*, session: Session, openid: str) -> Conversation:
    """The resident's conversation, created (with the resident) on first contact."""
    conversation = session.execute(
        select(Conversation).where(Conversation.openid == openid)
    ).scalar_one_or_none()
    if conversation is not None:
        return conversation
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
    """Store an inbound message once. Returns (message, True) the first time and
    (the stored message, False) for a retry with the same key. `claimed_by` /
    `claim_expires_at`: the bot turn's claim, for a message the bot will be asked about."""
    existing = session.execute(
        select(Message).where(Message.dedupe_key == dedupe_key)
    ).scalar_one_or_none()
    if existing is not None:
        return existing, False
    conversation = conversation_for(session=session, openid=openid)
    message = Message(
        conversation_id=conversation.id,
        direction="in",
        msg_type=msg_type,
        dedupe_key=dedupe_key,
        content=content,
        media=media or {},
        raw=raw,
        status="received",
        claimed_by=claimed_by,
        claim_expires_at=claim_expires_at,
    )
    try:
        with session.begin_nested():
            session.add(message)
            session.flush()
    except IntegrityError:  # a concurrent retry stored it first
        stored = session.execute(
            select(Message).where(Message.dedupe_key == dedupe_key)
        ).scalar_one()
        return stored, False
    resident = session.get(Resident, conversation.resident_id)
    if resident is not None:
        resident.last_seen_at = utcnow()
    return message, True


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


def set_subscribed(*, session: Session, openid: str, subscribed: bool) -> None:
    conversation = conversation_for(session=session, openid=openid)
    resident = session.get(Resident, conversation.resident_id)
    if resident is not None:
        resident.subscribed = subscribed


def set_location(
    *, session: Session, openid: str, label: str | None, lat: float | None, lng: float | None
) -> None:
    conversation = conversation_for(session=session, openid=openid)
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


def list_conversations(*, session: Session, openid: str | None = None) -> list[Conversation]:
    query = select(Conversation).order_by(Conversation.updated_at.desc())
    if openid:
        query = query.where(Conversation.openid == openid)
    return list(session.execute(query).scalars())


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
