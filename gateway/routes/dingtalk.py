"""`POST /api/dingtalk/callback` — an enterprise-internal DingTalk robot's outgoing message.

DingTalk signs each callback with headers `timestamp` (milliseconds) and `sign` = base64
HMAC-SHA256 keyed with the robot's AppSecret (`DINGTALK_APP_SECRET`) over
`"{timestamp}\\n{secret}"`. Both are checked, in constant time and within an hour of our
clock, before the body is read: a missing or wrong signature is a 401. The signature
covers the timestamp only, not the body (DingTalk's design), so the msgId is remembered
(`casework/dingtalk_replies.py`) and a reply can only act as an officer bound to the
sender's DingTalk id, inside that officer's scope.

The body is the robot's message (msgId, msgtype, text.content, senderStaffId, senderNick,
conversationType, isInAtList …; a reply to the robot's card adds text.isReplyMsg and
text.repliedMsg, the quoted message, whose `案件 #N` names the case); a signed but
malformed one is a 422. The answer is a
DingTalk text message that the robot shows the officer. Without `DINGTALK_APP_SECRET`
(production may leave it unset) the route answers 503.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field, ValidationError, validator

from casework import dingtalk_replies
from gateway.deps import SessionDep, SettingsDep
from gateway.routes.webhooks import MAX_BODY

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/dingtalk", tags=["dingtalk"])
WINDOW_MS = 3600 * 1000  # DingTalk: the timestamp may be at most an hour off


# ------------------------------------------------------------------ the signature


def dingtalk_sign(timestamp: str, secret: str) -> str:
    """DingTalk's signature of a timestamp (what the `sign` header carries)."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_problem(
    timestamp: str | None, sign: str | None, secret: str, *, now_ms: int | None = None
) -> str | None:
    """Why these headers are refused, or None when they are DingTalk's."""
    if not timestamp or not sign:
        return "timestamp or sign header missing"
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 15:
        return "timestamp is not milliseconds"
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now_ms - int(timestamp)) > WINDOW_MS:
        return "timestamp more than an hour off"
    expected = dingtalk_sign(timestamp, secret).encode("ascii")
    if not hmac.compare_digest(expected, sign.encode("latin-1")):
        return "wrong sign"
    return None


# ------------------------------------------------------------------ what DingTalk sends


def _storable(value: str | None) -> str | None:
    """Text the databases can keep: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if value is None:
        return value
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("must be valid Unicode") from error
    return value


class MessageText(BaseModel):
    content: str = Field(..., max_length=8000)
    # A reply to (quote of) an earlier message: DingTalk sends `isReplyMsg` and the quoted
    # message as `repliedMsg` {msgId, msgType, senderId, content: {text} | {richText: [...]}
    # | "..."}. Neither is in DingTalk's reference, so both are read leniently: whatever
    # shape they come in, only the quoted text's `案件 #N` marker is used.
    isReplyMsg: Any = None  # noqa: N815 (DingTalk's names)
    repliedMsg: Any = None  # noqa: N815

    _check = validator("content", allow_reuse=True)(_storable)

    class Config:
        extra = "ignore"

    @property
    def quoted(self) -> bool:
        return self.isReplyMsg is True or isinstance(self.repliedMsg, dict)

    def quoted_text(self) -> str:
        """The quoted message's text, whatever its shape ('' when there is none)."""
        replied = self.repliedMsg if isinstance(self.repliedMsg, dict) else {}
        content = replied.get("content")
        parts: list[Any] = []
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, dict):
            parts += [content.get(key) for key in ("title", "text", "markdown", "content")]
            rich = content.get("richText")
            if isinstance(rich, list):
                parts += [seg.get("text") for seg in rich if isinstance(seg, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))[:20000]


class RobotMessage(BaseModel):
    """The fields of an outgoing robot message this route uses; the rest is ignored."""

    msgId: str = Field(..., min_length=1, max_length=64)  # noqa: N815 (DingTalk's names)
    msgtype: str = Field(..., min_length=1, max_length=32)
    text: MessageText | None = None
    senderStaffId: str | None = Field(None, max_length=64)  # noqa: N815
    senderNick: str | None = Field(None, max_length=128)  # noqa: N815
    conversationType: str | None = Field(None, max_length=8)  # noqa: N815 ("1" single, "2" group)
    isInAtList: bool | None = None  # noqa: N815

    _check = validator(
        "msgId", "msgtype", "senderStaffId", "senderNick", "conversationType", allow_reuse=True
    )(_storable)

    class Config:
        extra = "ignore"


class TextContent(BaseModel):
    content: str


class RobotAnswer(BaseModel):
    """A DingTalk text message: the robot shows it to the officer who wrote."""

    msgtype: Literal["text"] = "text"
    text: TextContent


async def verified_body(request: Request, settings: SettingsDep) -> bytes:
    """The raw body of a callback DingTalk signed; nothing is parsed before the check."""
    secret = settings.dingtalk_app_secret
    if not secret:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "DingTalk replies are off: DINGTALK_APP_SECRET is not set",
        )
    headers = request.headers
    problem = signature_problem(headers.get("timestamp"), headers.get("sign"), secret)
    if problem is not None:
        logger.warning("DingTalk callback refused: %s", problem)  # the caller learns nothing
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad signature")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large")
    return body


def robot_message(body: bytes) -> RobotMessage:
    """The message, or a 422 naming what a robot message must be."""
    try:
        message = RobotMessage.parse_raw(body, content_type="application/json")
    except (ValidationError, ValueError, RecursionError) as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            "body must be a DingTalk robot message {msgId, msgtype, text: {content}, ...}",
        ) from error
    if message.msgtype == "text" and message.text is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "text message without text")
    return message


@router.post("/callback", response_model=RobotAnswer)
def callback(
    body: Annotated[bytes, Depends(verified_body)], request: Request, session: SessionDep
) -> RobotAnswer:
    """An officer wrote to the robot: `#<case id> <reply>` answers that resident."""
    message = robot_message(body)
    try:
        answer = dingtalk_replies.handle_message(
            session=session,
            msg_id=message.msgId,
            sender_staff_id=message.senderStaffId,
            msgtype=message.msgtype,
            content=message.text.content if message.text else None,
            quoted=bool(message.text and message.text.quoted),
            quoted_case_id=(
                dingtalk_replies.case_marker(message.text.quoted_text()) if message.text else None
            ),
        )
    except dingtalk_replies.ReplayRefused as refused:
        logger.warning("DingTalk callback refused: %s", refused)
        raise HTTPException(status.HTTP_409_CONFLICT, "msgId already used") from refused
    session.commit()
    logger.info(
        "DingTalk message %s: %s case=%s repeated=%s",
        message.msgId,
        answer.outcome,
        answer.case_id,
        answer.repeated,
    )
    worker = getattr(request.app.state, "outbox", None)
    if answer.outbox_id is not None and not answer.repeated and worker is not None:
        worker.wakeup.set()
    return RobotAnswer(text=TextContent(content=answer.text))
