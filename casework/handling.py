"""What officers do with cases: see (scoped), claim, reply, note, transfer, divert, close —
and the resident's rating afterwards. Every action is audited.

Claiming is one conditional UPDATE, so when two officers claim at once exactly one wins
and the other learns who has it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from casework import outbox
from casework.accounts import DESKS
from casework.audit import record as audit
from casework.cases import CATEGORIES, CaseError, open_ticket, reaches_wechat
from casework.conversations import conversation_for
from casework.models import Case, CaseNote, Conversation, Ticket, User, utcnow

RATING_QUESTION = (
    "您好，您反映的事情已办结。请您对本次服务打分：回复数字 1–5（5 为非常满意，1 为非常不满意）。"
    "您的评价会帮助我们改进工作。"
)
RATING_THANKS = "感谢您的评价！如还有需要，随时给我们留言。"
CANNED_REPLIES = [
    "您好，我是社区民警，已收到您反映的情况，正在为您处理。",
    "请您提供一下具体地址（小区、楼号）和联系电话，方便我们尽快处理。",
    "请保留好聊天记录、转账凭证等证据，不要删除。",
    "我们已安排民警前往现场，请注意安全、保持电话畅通。",
    "您反映的问题已转交相关部门处理，有进展会及时告诉您。",
    "如情况紧急，请直接拨打110。",
]


class Conflict(Exception):
    """Someone else holds the case; the message names them."""


class NotAllowed(Exception):
    """The user's role may not use this at all (a trainer in the officers' console)."""


class NotFound(LookupError):
    """No such record — or none the user may see: out of scope looks exactly like missing,
    so record ids do not leak."""


def officer_name(user: User | None) -> str:
    if user is None:
        return "系统"
    return user.display_name or user.username


# ------------------------------------------------------------------ who sees what


READER_ROLES = ("officer", "commander", "admin")  # who reads residents' words


def sees_everything(user: User) -> bool:
    return user.role in ("commander", "admin")


def check_reader(user: User) -> None:
    """Trainers (and any other role) see no cases, conversations or tickets."""
    if user.role not in READER_ROLES:
        raise NotAllowed("无权查看群众案件和会话")


def scope_filter(user: User) -> Any:
    """Officers see their community's and desk's cases and those routed to or held by them."""
    conditions = [Case.assigned_to_id == user.id, Case.claimed_by_id == user.id]
    if user.community:
        conditions.append(Case.community == user.community)
    if user.desk:
        conditions.append(Case.desk == user.desk)
    return or_(*conditions)


def ticket_scope(user: User) -> Any:
    """Officers see the tickets of their community and those of cases they see."""
    seen_cases = select(Case.id).where(scope_filter(user))
    conditions = [Ticket.case_id.in_(seen_cases)]
    if user.community:
        conditions.append(Ticket.community == user.community)
    return or_(*conditions)


def conversation_scope(user: User) -> Any:
    """Officers see a resident's conversation when they see one of the resident's cases (any
    status) or tickets: the conversation is the context of work they may do."""
    case_of_resident = select(Case.id).where(
        Case.sender_id == Conversation.openid, scope_filter(user)
    )
    ticket_of_resident = select(Ticket.id).where(
        Ticket.sender_id == Conversation.openid, ticket_scope(user)
    )
    return or_(case_of_resident.exists(), ticket_of_resident.exists())


def can_see(user: User, case: Case) -> bool:
    if sees_everything(user):
        return True
    if user.role != "officer":
        return False
    return bool(
        case.assigned_to_id == user.id
        or case.claimed_by_id == user.id
        or (user.community and case.community == user.community)
        or (user.desk and case.desk == user.desk)
    )


def get_case(*, session: Session, user: User, case_id: int) -> Case | None:
    """The case, or None when it does not exist or the user may not see it (the same
    answer, so ids do not leak). NotAllowed for roles that see no cases at all."""
    check_reader(user)
    query = select(Case).where(Case.id == case_id)
    if not sees_everything(user):
        query = query.where(scope_filter(user))
    return session.execute(query).scalar_one_or_none()


def _case(session: Session, user: User, case_id: int) -> Case:
    case = get_case(session=session, user=user, case_id=case_id)
    if case is None:
        raise NotFound("案件不存在")
    return case


# ------------------------------------------------------------------ actions


def claim(*, session: Session, user: User, case_id: int) -> Case:
    case = _case(session, user, case_id)
    if case.status == "closed":
        raise Conflict("该案件已办结")
    won = session.execute(
        update(Case)
        .where(Case.id == case_id, Case.status != "closed")
        .where(or_(Case.claimed_by_id.is_(None), Case.claimed_by_id == user.id))
        .values(claimed_by_id=user.id, claimed_at=utcnow(), status="claimed")
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(case)
    if won != 1:
        holder = session.get(User, case.claimed_by_id) if case.claimed_by_id else None
        raise Conflict(f"该案件已由 {officer_name(holder)} 处理")
    if reaches_wechat(case.sender_id):  # else there is no conversation to take over
        conversation_for(session=session, openid=case.sender_id).owner = "officer"
    audit(session, user, "claim", "case", case.id)
    return case


@dataclass(frozen=True)
class Sent:
    message_id: int
    outbox_id: int


def reply(*, session: Session, user: User, case_id: int, text: str) -> Sent:
    text = text.strip()
    if not text:
        raise CaseError("回复内容不能为空")
    if not reaches_wechat(_case(session, user, case_id).sender_id):
        raise Conflict("当事人不是微信用户，无法在微信中回复，请按案件中的电话联系。")
    case = claim(session=session, user=user, case_id=case_id)  # replying means handling it
    conversation = conversation_for(session=session, openid=case.sender_id)
    item = outbox.enqueue(
        session=session,
        conversation_id=conversation.id,
        openid=case.sender_id,
        text=text,
        sender=f"officer:{officer_name(user)}",
    )
    if case.first_reply_at is None:
        case.first_reply_at = utcnow()
    audit(session, user, "reply", "case", case.id, length=len(text))
    return Sent(message_id=item.message_id, outbox_id=item.id)


def add_note(*, session: Session, user: User, case_id: int, text: str) -> CaseNote:
    case = _case(session, user, case_id)
    if not text.strip():
        raise CaseError("备注内容不能为空")
    note = CaseNote(case_id=case.id, author_id=user.id, text=text.strip())
    session.add(note)
    session.flush()
    audit(session, user, "note", "case", case.id)
    return note


def transfer(
    *,
    session: Session,
    user: User,
    case_id: int,
    desk: str | None = None,
    officer_id: int | None = None,
) -> Case:
    case = _case(session, user, case_id)
    if case.status == "closed":
        raise Conflict("该案件已办结")
    if (desk is None) == (officer_id is None):
        raise CaseError("请选择转办的部门或民警（二选一）")
    if case.claimed_by_id not in (None, user.id) and not sees_everything(user):
        holder = session.get(User, case.claimed_by_id)
        raise Conflict(f"该案件已由 {officer_name(holder)} 处理")
    if desk is not None:
        if desk not in DESKS:
            raise CaseError(f"未知部门：{desk}")
        case.desk, case.assigned_to_id = desk, None
    else:
        target = session.get(User, officer_id)
        if target is None or not target.active or target.role not in ("officer", "commander"):
            raise CaseError("目标民警不存在")
        case.assigned_to_id = target.id
    case.claimed_by_id, case.claimed_at, case.status = None, None, "open"
    case.notify_status = None  # the new assignee is notified by the case watcher
    audit(session, user, "transfer", "case", case.id, desk=desk, officer_id=officer_id)
    return case


def close(*, session: Session, user: User, case_id: int, resolution: str) -> Case:
    """Close the case, give the conversation back to the bot and ask for a rating."""
    case = _case(session, user, case_id)
    if case.status == "closed":
        raise Conflict("该案件已办结")
    if case.claimed_by_id not in (None, user.id) and not sees_everything(user):
        holder = session.get(User, case.claimed_by_id)
        raise Conflict(f"该案件已由 {officer_name(holder)} 处理")
    if not resolution.strip():
        raise CaseError("请填写办结情况")
    now = utcnow()
    case.status, case.closed_at, case.resolution = "closed", now, resolution.strip()
    case.claimed_by_id = case.claimed_by_id or user.id
    if not reaches_wechat(case.sender_id):  # no conversation: nobody to hand back or ask
        audit(session, user, "close", "case", case.id, resolution=case.resolution)
        return case
    conversation = conversation_for(session=session, openid=case.sender_id)
    conversation.owner, conversation.officer_id = "bot", None
    conversation.awaiting_rating_case_id = case.id
    case.rating_requested_at = now
    outbox.enqueue(
        session=session,
        conversation_id=conversation.id,
        openid=case.sender_id,
        text=RATING_QUESTION,
        sender="system",
    )
    audit(session, user, "close", "case", case.id, resolution=case.resolution)
    return case


def divert(*, session: Session, user: User, case_id: int, kind: str, note: str = "") -> int:
    """Hand a non-police matter to the governance platform; the case closes as diverted."""
    case = _case(session, user, case_id)
    ticket = open_ticket(
        session=session,
        sender_id=case.sender_id,
        kind=kind,
        summary=case.summary,
        details={**(case.details or {}), "note": note},
        location=case.location,
    )
    ticket.case_id, ticket.street, ticket.community = case.id, case.street, case.community
    audit(session, user, "divert", "case", case.id, ticket_id=ticket.id, kind=kind)
    close(
        session=session,
        user=user,
        case_id=case.id,
        resolution=f"已转治理平台处理（工单 {ticket.id}）{note}".strip(),
    )
    return int(ticket.id)


def correct_category(*, session: Session, user: User, case_id: int, category: str) -> Case:
    case = _case(session, user, case_id)
    if category not in CATEGORIES:
        raise CaseError(f"未知类别：{category}")
    other = session.execute(
        select(Case.id).where(
            Case.sender_id == case.sender_id,
            Case.category == category,
            Case.status != "closed",
            Case.id != case.id,
        )
    ).scalar_one_or_none()
    if other is not None and case.status != "closed":  # one open case per category (0006)
        raise Conflict(f"该居民已有同类未办结案件 #{other}，请在该案件中继续处理")
    if case.original_category is None:
        case.original_category = case.category
    case.category = category
    try:
        session.flush()
    except IntegrityError as error:  # opened by the bot meanwhile; the request rolls back
        raise Conflict("该居民已有同类未办结案件，请刷新后在该案件中继续处理") from error
    audit(session, user, "recategorise", "case", case.id, category=category)
    return case


# ------------------------------------------------------------------ the resident's rating

_WORDS = {
    "非常满意": 5,
    "很满意": 5,
    "满意": 4,
    "一般": 3,
    "不满意": 2,
    "非常不满意": 1,
    "很不满意": 1,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
}


def parse_rating(text: str) -> int | None:
    text = text.strip().rstrip("分星。.!！")
    if re.fullmatch(r"[1-5]", text):
        return int(text)
    for word in sorted(_WORDS, key=len, reverse=True):
        if text == word or text == f"{word}分":
            return _WORDS[word]
    return None


def take_rating(*, session: Session, openid: str, text: str) -> int | None:
    """If the resident was asked for a rating and this is one, record it. A message that
    is not a rating ends the wait (the resident has moved on) and goes to the bot."""
    conversation = session.execute(
        select(Conversation).where(Conversation.openid == openid)
    ).scalar_one_or_none()
    if conversation is None or conversation.awaiting_rating_case_id is None:
        return None
    rating = parse_rating(text)
    case = session.get(Case, conversation.awaiting_rating_case_id)
    conversation.awaiting_rating_case_id = None
    if rating is None or case is None:
        return None
    case.rating = rating
    audit(session, None, "rating", "case", case.id, rating=rating)
    return rating
