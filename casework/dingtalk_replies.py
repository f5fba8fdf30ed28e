"""Officers answer residents from DingTalk: `#<case id> <reply>` sent to the robot, or a
reply to (a quote of) the robot's case notification, which names its case (`案件 #N`).

The enterprise-internal robot's outgoing callback (`POST /api/dingtalk/callback`, verified
in `gateway/routes/dingtalk.py`) hands over who wrote (`senderStaffId`), the message id
and the text. Here that becomes exactly what a console reply is — `handling.reply`: the
text goes to the resident through the outbox, the case is claimed when unclaimed, the
first-reply time is set and the reply audited — plus an audit entry
`reply_via_dingtalk` saying where it came from. Whatever is not a reply the officer may
make gets a short answer back in DingTalk and changes nothing.

DingTalk may deliver one message again. A message that is about to act is remembered
(`replay.remember`, scope `dingtalk`, key = msgId) in the same transaction as the reply,
with its answer (`shared_values`): the same message again gets that answer and sends
nothing; the same msgId with other content is refused. What is hashed is the sender,
the message type and the text — not the raw body, whose session-webhook fields DingTalk
may renew between deliveries.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from casework import handling, replay, shared
from casework.audit import record as audit
from casework.cases import CaseError
from casework.clock import utcnow
from casework.models import User

SCOPE = "dingtalk"
# DingTalk's signature allows an hour either way; a message is remembered past that.
REMEMBERED = timedelta(hours=3)
MAX_CASE_ID = 2**31 - 1  # the databases' INTEGER
MAX_REPLY = 2000  # characters: a customer-service text message, with room to spare

USAGE = (
    "回复格式：#案件号 回复内容，例如 #12 您好，我是民警，已收到您反映的情况。"
    "也可以直接引用机器人发的案件通知进行回复。"
)
QUOTE_UNKNOWN = "未能从您引用的消息中识别案件号。" + USAGE
NOT_BOUND = (
    "您的钉钉账号尚未绑定警民通账号，暂不能在钉钉中答复群众。"
    "请联系管理员绑定（jmt user set-dingtalk 用户名 钉钉用户ID）。"
)
NOT_TEXT = "目前只能在钉钉中用文字答复群众。" + USAGE
TOO_LONG = f"回复内容过长（最多 {MAX_REPLY} 字），请精简后重发，或在民警工作台中回复。"


def reply_hint(case_id: int, *, quote: bool = True) -> str:
    """The last line of every DingTalk notification about a case: how to answer it from
    DingTalk. `quote`: the message itself can be quoted (the group robot's; a personal
    work notification comes from the app, which does not take replies)."""
    hint = f"回复方式：在群里 @机器人 发送“#{case_id} 回复内容”"
    return hint + ("，或直接引用本条消息回复。" if quote else "。")


Outcome = Literal[
    "replied", "not_bound", "usage", "not_found", "conflict", "not_allowed", "too_long"
]

# Leading @mentions (the robot's name in a group chat), then ＃ or #, the case number
# (ASCII or full-width digits), an optional separator, the reply.
_MENTIONS = re.compile(r"^(?:\s*@\S+)+")
_COMMAND = re.compile(r"^[#＃]\s*([0-9０-９]{1,12})(?![0-9０-９])[\s:：,，、.。]*(.*)$", re.DOTALL)
# The marker every case notification carries ("涉诈案件 #12"): a reply to the card, or a
# text that quotes it, names its case this way.
_MARKER = re.compile(r"案件\s*[#＃]\s*([0-9０-９]{1,12})(?![0-9０-９])")
_MARKED = re.compile(
    r"^案件\s*[#＃]\s*([0-9０-９]{1,12})(?![0-9０-９])[\s:：,，、.。]*(.*)$", re.DOTALL
)
# DingTalk clients that quote into the text: 「张警官：…」 and/or a line of dashes, then the reply.
_QUOTED = re.compile(r"^「(.*?)」\s*(.*)$", re.DOTALL)
_SEPARATOR = re.compile(r"^\s*(?:[-—─=_－]\s*){3,}$", re.MULTILINE)


class DingTalkAnswer(BaseModel):
    """What one DingTalk message did, and the text to show the officer in DingTalk."""

    outcome: Outcome
    text: str
    case_id: int | None = None
    outbox_id: int | None = None
    repeated: bool = False  # a redelivery of a message already handled: nothing was sent


class Command(BaseModel):
    case_id: int
    text: str


class ReplayRefused(Exception):
    """The msgId was seen with other content: not a redelivery, refuse it."""


def parse(content: str) -> Command | None:
    """`#12 您好…` → Command(12, "您好…"); leading @mentions stripped, text trimmed.
    None when the message is not of that form (the text may still be empty)."""
    stripped = _MENTIONS.sub("", content.strip()).strip()
    match = _COMMAND.match(stripped)
    if match is None:
        return None
    return Command(case_id=int(match.group(1)), text=match.group(2).strip())


def case_marker(text: str | None) -> int | None:
    """The case a quoted notification is about (its `案件 #N` marker), or None when it
    names none or several."""
    found = {int(number) for number in _MARKER.findall(text or "")}
    return found.pop() if len(found) == 1 else None


def parse_reply_to_card(content: str, quoted_case_id: int | None) -> Command | None:
    """A reply that names its case by quoting the notification, not by `#N`:
    DingTalk's reply-to-message (the quoted card's case: `quoted_case_id`, the reply is
    the whole text), a text carrying the quote itself (「…案件 #12…」 or a quote above a
    line of dashes, the reply below it), or a text that starts with the card's marker
    (`案件 #12 您好…`). None otherwise."""
    stripped = _MENTIONS.sub("", content.strip()).strip()
    if quoted_case_id is not None:
        return Command(case_id=quoted_case_id, text=stripped)
    quote: str | None = None
    rest = ""
    bracketed = _QUOTED.match(stripped)
    if bracketed is not None:
        quote, rest = bracketed.group(1), bracketed.group(2)
    else:
        parts = _SEPARATOR.split(stripped, maxsplit=1)
        if len(parts) == 2:
            quote, rest = parts
    if quote is not None:
        case_id = case_marker(quote)
        if case_id is None:
            return None
        rest = _SEPARATOR.sub("", rest).strip()
        return Command(case_id=case_id, text=_MENTIONS.sub("", rest).strip())
    marked = _MARKED.match(stripped)
    if marked is None:
        return None
    return Command(case_id=int(marked.group(1)), text=marked.group(2).strip())


def officer_for(*, session: Session, staff_id: str | None) -> User | None:
    """The active account bound to this DingTalk user id, if any."""
    if not staff_id:
        return None
    return session.execute(
        select(User).where(User.dingtalk_id == staff_id, User.active.is_(True))
    ).scalar_one_or_none()


def handle_message(
    *,
    session: Session,
    msg_id: str,
    sender_staff_id: str | None,
    msgtype: str,
    content: str | None,
    quoted: bool = False,
    quoted_case_id: int | None = None,
) -> DingTalkAnswer:
    """Act on one message from the robot's callback; commits nothing (the caller does).
    `quoted`: the officer replied to (quoted) a message, whose `案件 #N` marker named
    `quoted_case_id` (None: none found); an explicit `#N` in the text wins."""
    officer = officer_for(session=session, staff_id=sender_staff_id)
    if officer is None:
        return DingTalkAnswer(outcome="not_bound", text=NOT_BOUND)
    if msgtype != "text" or content is None:
        return DingTalkAnswer(outcome="usage", text=NOT_TEXT)
    command = parse(content)
    if command is None:
        command = parse_reply_to_card(content, quoted_case_id)
    if command is None or not command.text:
        hint = QUOTE_UNKNOWN if quoted and quoted_case_id is None and command is None else USAGE
        return DingTalkAnswer(outcome="usage", text=hint)
    if len(command.text) > MAX_REPLY:
        return DingTalkAnswer(outcome="too_long", text=TOO_LONG, case_id=command.case_id)
    fingerprint = json.dumps(
        [sender_staff_id, msgtype, content, quoted_case_id], ensure_ascii=False
    ).encode()
    sighting = replay.remember(
        session=session, scope=SCOPE, nonce_key=msg_id, body=fingerprint, window=REMEMBERED
    )
    if sighting is replay.Sighting.REPLAY:
        raise ReplayRefused(f"msgId {msg_id!r} was seen with other content")
    if sighting is replay.Sighting.RETRY:
        return _stored(session, msg_id, command.case_id)
    answer = _reply(session, officer, command, msg_id)
    shared.write(
        session=session,
        key=_answer_key(msg_id),
        value=answer.json(),
        expires_at=utcnow() + REMEMBERED,
    )
    return answer


def _reply(session: Session, officer: User, command: Command, msg_id: str) -> DingTalkAnswer:
    not_found = f"案件 #{command.case_id} 不存在或不在您的处理范围内"
    if command.case_id > MAX_CASE_ID or command.case_id < 1:
        return DingTalkAnswer(outcome="not_found", text=not_found, case_id=command.case_id)
    try:
        with session.begin_nested():  # a refusal leaves nothing half done
            case = handling.get_case(session=session, user=officer, case_id=command.case_id)
            if case is None:
                raise handling.NotFound(not_found)
            claimed_before = case.claimed_by_id == officer.id
            sent = handling.reply(
                session=session, user=officer, case_id=command.case_id, text=command.text
            )
    except handling.NotFound:
        return DingTalkAnswer(outcome="not_found", text=not_found, case_id=command.case_id)
    except handling.NotAllowed as error:
        return DingTalkAnswer(outcome="not_allowed", text=str(error), case_id=command.case_id)
    except handling.Conflict as error:
        return DingTalkAnswer(outcome="conflict", text=str(error), case_id=command.case_id)
    except CaseError as error:
        return DingTalkAnswer(outcome="usage", text=f"{error}。{USAGE}", case_id=command.case_id)
    audit(
        session,
        officer,
        "reply_via_dingtalk",
        "case",
        command.case_id,
        via="dingtalk",
        msg_id=msg_id,
        outbox_id=sent.outbox_id,
    )
    claimed = "" if claimed_before else "，该案件已由您认领"
    return DingTalkAnswer(
        outcome="replied",
        text=f"已答复案件 #{command.case_id}{claimed}。回复将通过公众号发送给群众。",
        case_id=command.case_id,
        outbox_id=sent.outbox_id,
    )


def _answer_key(msg_id: str) -> str:
    return f"dingtalk-answer:{msg_id}"


def _stored(session: Session, msg_id: str, case_id: int) -> DingTalkAnswer:
    """The answer given the first time; sends nothing again."""
    stored = shared.read(session=session, key=_answer_key(msg_id))
    if stored is None:  # remembered, but its answer expired with it: say so plainly
        return DingTalkAnswer(
            outcome="replied", text=f"该消息已处理过（案件 #{case_id}）。", repeated=True
        )
    return DingTalkAnswer.parse_raw(stored).copy(update={"repeated": True})
