"""The WeChat intake's storage: an inbound message from "signed" to "stored", and what
the gateway later records about it (its answer, its status, the bot's parse).

Storing is one transaction: the replay check (`casework.replay`) and the message commit
or roll back together, so a refused replay leaves nothing behind and a request that
failed to store is still new when WeChat retries it. It is the only database work
before a passive reply, so it is kept to few statements (issue 10: on PostgreSQL each is
a round trip): for a resident's next message, the nonce, the conversation and the
message — three statements, where it took twelve (`bench/store_inbound.py` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from casework import cases, claims, conversations, outbox, replay, residents
from casework.clock import utcnow
from casework.models import Conversation, Message

SCOPE = "wechat"


class Replayed(Exception):
    """An accepted (timestamp, nonce, signature) came back with another body."""


@dataclass(frozen=True)
class SignedCallback:
    """What replay memory needs of a callback: its signature's identity, the exact body
    it came with, and how long its timestamp stays acceptable."""

    nonce_key: str
    body: bytes
    window: timedelta


class StoredInbound(BaseModel):
    message_id: int
    conversation_id: int
    new: bool  # False: a retry of a message already stored
    reply: str | None  # the passive reply it already got (repeated on retries)
    owner: str  # who owns the conversation: bot | officer
    awaiting_rating: bool = False  # the resident was asked to rate a closed case

    class Config:
        frozen = True


def store_inbound(
    *,
    session: Session,
    signed: SignedCallback | None,
    openid: str,
    dedupe_key: str,
    msg_type: str,
    content: str,
    media: dict[str, Any],
    event: str | None = None,
    turn_owner: str | None = None,
    now: datetime | None = None,
) -> StoredInbound:
    """Store an inbound message once (a retry finds the stored one). Raises `Replayed`,
    storing nothing, when the signed request was seen with another body.

    `turn_owner` (host:pid): the message goes to the bot and this worker owns the turn,
    until `claims.TURN_CLAIM_TTL` from now. Stored and claimed in one transaction, so a
    worker that dies at any point after this leaves a turn the sweep will find."""
    if signed is not None:
        sighting = replay.remember(
            session=session,
            scope=SCOPE,
            nonce_key=signed.nonce_key,
            body=signed.body,
            window=signed.window,
        )
        if sighting is replay.Sighting.REPLAY:
            raise Replayed(dedupe_key)
    # The raw XML is not kept (issue 8): `content` and `media` hold what is needed.
    stored = conversations.store_inbound_message(
        session=session,
        openid=openid,
        dedupe_key=dedupe_key,
        msg_type=msg_type,
        content=content,
        media=media,
        claimed_by=turn_owner,
        claim_expires_at=(
            None if turn_owner is None else (now or utcnow()) + claims.TURN_CLAIM_TTL
        ),
    )
    conversation = stored.conversation
    if stored.new and event in ("subscribe", "unsubscribe"):
        conversations.set_subscribed(
            session=session,
            openid=openid,
            subscribed=event == "subscribe",
            conversation=conversation,
        )
    if stored.new and event == "unsubscribe":
        # Unfollowing the account ends what the number was left for (warnings through it):
        # it is deleted and the withdrawal recorded, as if the resident had said 撤回手机号.
        # 退订 alone keeps it — the number's consent is withdrawn by its own words.
        residents.withdraw_mobile(session=session, openid=openid, source="unfollow")
    location = media.get("location")
    if stored.new and location:
        conversations.set_location(
            session=session,
            openid=openid,
            label=location["label"],
            lat=location["lat"],
            lng=location["lng"],
            conversation=conversation,
        )
        residents.adopt_community(
            session=session, resident_id=conversation.resident_id, text=location["label"]
        )
    if stored.new and msg_type == "image":
        case = conversations.open_case_of(session=session, openid=openid)
        if case is not None:  # the photo belongs with the case officers are handling
            images = [*(case.details or {}).get("images", []), media]
            case.details = {**(case.details or {}), "images": images}
    return StoredInbound(
        message_id=stored.message_id,
        conversation_id=conversation.id,
        new=stored.new,
        reply=stored.reply,
        owner=conversation.owner,
        awaiting_rating=conversation.awaiting_rating_case_id is not None,
    )


def answer_passively(
    *,
    session: Session,
    message_id: int,
    conversation_id: int,
    text: str,
    sender: str,
    answered_at: datetime | None = None,
) -> None:
    """The passive reply in the transcript, and on the message for WeChat's retries."""
    conversations.record_outbound(
        session=session,
        conversation_id=conversation_id,
        text=text,
        sender=sender,
        delivery="passive",
        created_at=answered_at,
    )
    message = session.get(Message, message_id)
    if message is not None:
        message.reply, message.status = text, "answered"


def answer_aside(*, session: Session, message_id: int, conversation_id: int, text: str) -> None:
    """A system answer to a message that still waits for its officer (退订 during a
    hand-off): in the transcript and repeated on WeChat's retries, status unchanged."""
    conversations.record_outbound(
        session=session,
        conversation_id=conversation_id,
        text=text,
        sender="system",
        delivery="passive",
    )
    message = session.get(Message, message_id)
    if message is not None:
        message.reply = text


def answer_later(
    *,
    session: Session,
    message_id: int,
    conversation_id: int,
    openid: str,
    texts: list[str],
    sender: str,
    owner: str | None = None,
) -> bool:
    """Answers for the customer-service API (the outbox). With `owner`, only while the
    bot turn is still claimed by `owner`: False (nothing queued) when the turn was taken
    over by the stalled-turn sweep, which has already answered it."""
    if owner is not None:
        taken_over = session.execute(
            select(Message.id).where(Message.id == message_id, Message.claimed_by != owner)
        ).first()
        if taken_over is not None:
            return False
    for text in texts:
        outbox.enqueue(
            session=session,
            conversation_id=conversation_id,
            openid=openid,
            text=text,
            sender=sender,
        )
    message = session.get(Message, message_id)
    if message is not None and message.status == "received":
        message.status = "answered"
    return True


def set_status(*, session: Session, message_id: int, status: str) -> None:
    message = session.get(Message, message_id)
    if message is not None:
        message.status = status


def record_parse(
    *,
    session: Session,
    message_id: int,
    intent: str | None,
    confidence: float | None,
    ranking: list[dict[str, Any]],
    entities: list[dict[str, Any]],
    topic: str | None = None,
) -> None:
    """What the bot understood; kept for trainers (masked before any trainer view) and
    for the weekly hot topics (`topic`: the FAQ answer chosen, "faq/<topic>")."""
    message = session.get(Message, message_id)
    if message is not None:
        message.intent, message.confidence = intent, confidence
        parse: dict[str, Any] = {"ranking": ranking, "entities": entities}
        if topic is not None:
            parse["topic"] = topic
        message.media = {**(message.media or {}), "parse": parse}


def open_bot_down_case(*, session: Session, openid: str, content: str, error: str) -> None:
    """The bot could not answer: officers get an open case with the first message."""
    cases.open_case(
        session=session,
        sender_id=openid,
        category="other",
        priority="high",
        reason="bot_unavailable",
        summary=f"【智能助手故障】{content[:120]}",
        details={"first_message": content, "error": error[:300]},
    )


class RecoveredTurn(BaseModel):
    message_id: int
    openid: str
    answered: bool  # False: an officer owns the conversation now, nothing was sent

    class Config:
        frozen = True


def recover_stalled_turns(
    *, session: Session, owner: str, now: datetime, fallback: str, limit: int = claims.BATCH
) -> list[RecoveredTurn]:
    """Bot turns whose worker died (or wedged) mid-turn: still 'received', claim expired.

    WeChat's retries of such a message were answered `success` as duplicates, so without
    this the resident would never hear back. Each one is claimed (only expired claims are
    taken, so two sweeping workers never take the same turn), answered with `fallback`
    through the outbox and recorded as an officer case — never asked of the bot a second
    time: the dead worker may already have sent it to Rasa."""
    stalled = (
        (Message.direction == "in")
        & (Message.status == "received")
        & (Message.claim_expires_at.is_not(None))
        & (Message.claim_expires_at <= now)
    )
    taken: list[Message] = claims.claim_rows(
        session,
        id_column=Message.id,
        claimable=stalled,
        order_by=[Message.claim_expires_at, Message.id],
        values={"claimed_by": owner, "claim_expires_at": now + claims.TURN_CLAIM_TTL},
        limit=limit,
    )
    recovered = []
    for message in taken:
        message_id = message.id
        conversation = session.get(Conversation, message.conversation_id)
        openid = conversation.openid
        if conversation.owner == "officer":
            message.status = "for_officer"  # an officer took it over meanwhile: they answer
            recovered.append(RecoveredTurn(message_id=message_id, openid=openid, answered=False))
            continue
        open_bot_down_case(
            session=session,
            openid=openid,
            content=message.content,
            error="the gateway worker handling this message stopped mid-turn",
        )
        outbox.enqueue(
            session=session,
            conversation_id=conversation.id,
            openid=openid,
            text=fallback,
            sender="system",
        )
        message.status = "answered"
        recovered.append(RecoveredTurn(message_id=message_id, openid=openid, answered=True))
    return recovered
