"""The officers' console API as services: every read and write it makes, for the acting
user, returning public schemas (`casework.schemas`).

Scoping is part of each query (`handling.scope_filter`, `ticket_scope`,
`conversation_scope`), so a route cannot forget it: a record out of the user's scope is
simply not found. Every read of a resident's words — a conversation's messages, a case's
transcript — is audited (`read_conversation` / `read_case`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework import audit, case_queue, conversations, handling, tickets
from casework.case_queue import CaseFilters
from casework.cases import CATEGORY_LABELS, CaseError, reaches_wechat
from casework.clock import aware, utcnow
from casework.handling import NotFound
from casework.models import AuditEntry, Case, CaseNote, Conversation, Message, Ticket, User
from casework.privacy import mask_pii
from casework.schemas import (
    CaseConversation,
    CaseDetail,
    CaseHistoryItem,
    CasePublic,
    ConversationDetail,
    ConversationPublic,
    DivertResult,
    ListPage,
    MePublic,
    MessagePublic,
    NotePublic,
    OfficerPublic,
    PersonRef,
    ReplyResult,
    TicketPublic,
)

# ------------------------------------------------------------------ building public schemas


def _person(session: Session, user_id: int | None) -> PersonRef | None:
    user = session.get(User, user_id) if user_id else None
    return PersonRef(id=user.id, name=handling.officer_name(user)) if user else None


def case_public(session: Session, case: Case, *, unread: int = 0) -> CasePublic:
    due = aware(case.due_at)
    waiting = case.first_reply_at is None and case.status != "closed"
    seconds_left = int((due - utcnow()).total_seconds()) if due and waiting else None
    return CasePublic(
        id=case.id,
        category=case.category,
        category_label=CATEGORY_LABELS.get(case.category, case.category),
        priority=case.priority,
        status=case.status,
        reason=case.reason,
        desk=case.desk,
        summary=case.summary,
        street=case.street,
        community=case.community,
        assigned_to=_person(session, case.assigned_to_id),
        claimed_by=_person(session, case.claimed_by_id),
        created_at=aware(case.created_at),
        due_at=due,
        first_reply_at=aware(case.first_reply_at),
        closed_at=aware(case.closed_at),
        seconds_left=seconds_left,
        overdue=seconds_left is not None and seconds_left < 0,
        notify_status=case.notify_status,
        notify_error=case.notify_error,
        rating=case.rating,
        resolution=case.resolution,
        unread=unread,
    )


def _case_for(session: Session, user: User, case: Case) -> CasePublic:
    """One case as `user` sees it in the queue (with their unread count)."""
    unread = case_queue.unread_counts(session=session, user=user, case_ids=[case.id])
    return case_public(session, case, unread=unread.get(case.id, 0))


def ticket_public(ticket: Ticket) -> TicketPublic:
    return TicketPublic(
        id=ticket.id,
        kind=ticket.kind,
        kind_label=tickets.KIND_LABELS.get(ticket.kind),
        status=ticket.status,
        summary=ticket.summary,
        street=ticket.street,
        community=ticket.community,
        location=ticket.location,
        case_id=ticket.case_id,
        linked_to_id=ticket.linked_to_id,
        sent_at=aware(ticket.sent_at),
        status_note=ticket.status_note,
        created_at=aware(ticket.created_at),
        due_at=aware(ticket.due_at),
        resolved_at=aware(ticket.resolved_at),
        overdue=tickets.is_overdue(ticket),
        send_error=ticket.send_error,
    )


def message_public(message: Message) -> MessagePublic:
    return MessagePublic(
        id=message.id,
        direction=message.direction,
        msg_type=message.msg_type,
        content=message.content,
        media=message.media or {},
        status=message.status,
        intent=message.intent,
        confidence=message.confidence,
        sender=message.sender,
        delivery=message.delivery,
        created_at=aware(message.created_at),
    )


def conversation_public(conversation: Conversation) -> ConversationPublic:
    return ConversationPublic(
        id=conversation.id,
        openid=conversation.openid,
        owner=conversation.owner,
        location_label=conversation.location_label,
        location_lat=conversation.location_lat,
        location_lng=conversation.location_lng,
        created_at=aware(conversation.created_at),
        updated_at=aware(conversation.updated_at),
    )


def note_public(session: Session, note: CaseNote) -> NotePublic:
    return NotePublic(
        id=note.id,
        author=handling.officer_name(session.get(User, note.author_id)),
        text=note.text,
        created_at=aware(note.created_at),
    )


def officer_public(user: User) -> OfficerPublic:
    return OfficerPublic(
        id=user.id,
        name=handling.officer_name(user),
        role=user.role,
        desk=user.desk,
        community=user.community,
    )


def me(*, user: User) -> MePublic:
    return MePublic(
        id=user.id,
        username=user.username,
        name=handling.officer_name(user),
        role=user.role,
        desk=user.desk,
        community=user.community,
    )


# ------------------------------------------------------------------ the signed-in user


def officers(*, session: Session, user: User) -> list[OfficerPublic]:
    """Whom a case can be transferred to (names and desks only, no contact details)."""
    handling.check_reader(user)
    people = session.execute(
        select(User)
        .where(User.active.is_(True), User.role.in_(("officer", "commander")))
        .order_by(User.id)
    ).scalars()
    return [officer_public(person) for person in people]


# ------------------------------------------------------------------ cases


def list_cases(
    *,
    session: Session,
    user: User,
    filters: CaseFilters | None = None,
    limit: int = case_queue.DEFAULT_LIMIT,
    offset: int = 0,
    client_ip: str | None = None,
) -> ListPage[CasePublic]:
    """One page of the queue (most urgent first, then the least time left) and the total,
    each case with the reader's unread count. A search over residents' words is audited
    (masked: what was looked for, and how many cases it found)."""
    filters = filters or CaseFilters()
    found, total = case_queue.find(
        session=session, user=user, filters=filters, limit=limit, offset=offset
    )
    if filters.q and filters.q.strip():
        _audit_search(session, user, mask_pii(" ".join(filters.q.split())), total, client_ip)
    unread = case_queue.unread_counts(session=session, user=user, case_ids=[c.id for c in found])
    return ListPage(
        items=[case_public(session, c, unread=unread.get(c.id, 0)) for c in found], total=total
    )


SEARCH_AUDIT_WINDOW = timedelta(minutes=10)


def _audit_search(session: Session, user: User, q: str, total: int, client_ip: str | None) -> None:
    """A search reads residents' words: audit it — once per user and words within a few
    minutes, as the open queue re-runs the same search on every live event."""
    recent = session.execute(
        select(AuditEntry.detail).where(
            AuditEntry.actor_id == user.id,
            AuditEntry.action == "search_cases",
            AuditEntry.created_at >= utcnow() - SEARCH_AUDIT_WINDOW,
        )
    ).scalars()
    if any((detail or {}).get("q") == q for detail in recent):
        return
    audit.record(session, user, "search_cases", "case", None, client_ip=client_ip, q=q, total=total)


def _case_detail(session: Session, user: User, case: Case, client_ip: str | None) -> CaseDetail:
    transcript: list[Message] = []
    conversation: Conversation | None = None
    if reaches_wechat(case.sender_id):  # else no conversation exists (and none is made)
        conversation = conversations.conversation_for(session=session, openid=case.sender_id)
        transcript = conversations.messages_of(session=session, conversation_id=conversation.id)
        # The officer is shown the whole conversation: it is read now (the queue's unread).
        case_queue.mark_read(
            session=session, user=user, case_id=case.id, conversation_id=conversation.id
        )
    notes = session.execute(
        select(CaseNote).where(CaseNote.case_id == case.id).order_by(CaseNote.id)
    ).scalars()
    history_query = (
        select(Case)
        .where(Case.sender_id == case.sender_id, Case.id != case.id)
        .order_by(Case.id.desc())
    )
    tickets_query = (
        select(Ticket)
        .where((Ticket.case_id == case.id) | (Ticket.sender_id == case.sender_id))
        .order_by(Ticket.id)
    )
    if not handling.sees_everything(user):
        # The resident's other records only as far as the reader may see them.
        history_query = history_query.where(handling.scope_filter(user))
        tickets_query = tickets_query.where(handling.ticket_scope(user))
    audit.record(
        session, user, "read_case", "case", case.id, client_ip=client_ip, messages=len(transcript)
    )
    return CaseDetail(
        **case_public(session, case).dict(),
        details=case.details or {},
        location=case.location,
        conversation=None
        if conversation is None
        else CaseConversation(
            id=conversation.id,
            openid=conversation.openid,
            owner=conversation.owner,
            location_label=conversation.location_label,
            location_lat=conversation.location_lat,
            location_lng=conversation.location_lng,
        ),
        transcript=[message_public(m) for m in transcript],
        notes=[note_public(session, n) for n in notes],
        history=[
            CaseHistoryItem(
                id=c.id,
                category_label=CATEGORY_LABELS.get(c.category, c.category),
                status=c.status,
                summary=c.summary,
                created_at=aware(c.created_at),
            )
            for c in session.execute(history_query).scalars()
        ],
        tickets=[ticket_public(t) for t in session.execute(tickets_query).scalars()],
    )


def case_detail(
    *, session: Session, user: User, case_id: int, client_ip: str | None = None
) -> CaseDetail:
    """A case with its transcript, notes and the resident's other records (audited)."""
    case = handling.get_case(session=session, user=user, case_id=case_id)
    if case is None:
        raise NotFound("案件不存在")
    return _case_detail(session, user, case, client_ip)


def claim(
    *, session: Session, user: User, case_id: int, client_ip: str | None = None
) -> CaseDetail:
    case = handling.claim(session=session, user=user, case_id=case_id)
    return _case_detail(session, user, case, client_ip)


def reply(*, session: Session, user: User, case_id: int, text: str) -> ReplyResult:
    sent = handling.reply(session=session, user=user, case_id=case_id, text=text)
    conversation_id = session.execute(
        select(Message.conversation_id).where(Message.id == sent.message_id)
    ).scalar_one()
    case_queue.mark_read(
        session=session, user=user, case_id=case_id, conversation_id=conversation_id
    )
    return ReplyResult(message_id=sent.message_id, outbox_id=sent.outbox_id)


def add_note(*, session: Session, user: User, case_id: int, text: str) -> NotePublic:
    return note_public(
        session, handling.add_note(session=session, user=user, case_id=case_id, text=text)
    )


def transfer(
    *,
    session: Session,
    user: User,
    case_id: int,
    desk: str | None = None,
    officer_id: int | None = None,
) -> CasePublic:
    case = handling.transfer(
        session=session, user=user, case_id=case_id, desk=desk, officer_id=officer_id
    )
    return _case_for(session, user, case)


def divert(
    *, session: Session, user: User, case_id: int, kind: str, note: str = ""
) -> DivertResult:
    ticket_id = handling.divert(session=session, user=user, case_id=case_id, kind=kind, note=note)
    return DivertResult(ticket_id=ticket_id)


@dataclass(frozen=True)
class Closed:
    case: CasePublic
    openid: str  # whose conversation goes back to the bot (Rasa is told by the caller)


def close(*, session: Session, user: User, case_id: int, resolution: str) -> Closed:
    case = handling.close(session=session, user=user, case_id=case_id, resolution=resolution)
    return Closed(case=_case_for(session, user, case), openid=case.sender_id)


def correct_category(*, session: Session, user: User, case_id: int, category: str) -> CasePublic:
    case = handling.correct_category(session=session, user=user, case_id=case_id, category=category)
    return _case_for(session, user, case)


# ------------------------------------------------------------------ conversations


def list_conversations(
    *,
    session: Session,
    user: User,
    openid: str | None = None,
    limit: int = case_queue.DEFAULT_LIMIT,
    offset: int = 0,
) -> ListPage[ConversationPublic]:
    """One page of the conversations the user may see, newest first, and the total; an
    out-of-scope openid finds none."""
    handling.check_reader(user)
    case_queue.check_page(limit, offset)
    conditions = []
    if openid:
        conditions.append(Conversation.openid == openid)
    if not handling.sees_everything(user):
        conditions.append(handling.conversation_scope(user))
    total = session.execute(select(func.count(Conversation.id)).where(*conditions)).scalar_one()
    page = session.execute(
        select(Conversation)
        .where(*conditions)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(limit)
        .offset(offset)
    ).scalars()
    return ListPage(items=[conversation_public(c) for c in page], total=int(total))


def conversation_detail(
    *, session: Session, user: User, conversation_id: int, client_ip: str | None = None
) -> ConversationDetail:
    """Every message of one conversation, both directions (audited)."""
    handling.check_reader(user)
    query = select(Conversation).where(Conversation.id == conversation_id)
    if not handling.sees_everything(user):
        query = query.where(handling.conversation_scope(user))
    conversation = session.execute(query).scalar_one_or_none()
    if conversation is None:
        raise NotFound("会话不存在")
    messages = conversations.messages_of(session=session, conversation_id=conversation.id)
    audit.record(
        session,
        user,
        "read_conversation",
        "conversation",
        conversation.id,
        client_ip=client_ip,
        messages=len(messages),
    )
    return ConversationDetail(
        **conversation_public(conversation).dict(),
        messages=[message_public(m) for m in messages],
    )


# ------------------------------------------------------------------ tickets


def list_tickets(
    *,
    session: Session,
    user: User,
    status: str | None = None,
    limit: int = case_queue.DEFAULT_LIMIT,
    offset: int = 0,
) -> ListPage[TicketPublic]:
    """One page of the diversion tickets the user may see, newest first, and the total."""
    handling.check_reader(user)
    case_queue.check_page(limit, offset)
    conditions = []
    if status:
        if status not in tickets.TICKET_STATES:
            raise CaseError(f"未知的工单状态 {status!r}")
        conditions.append(Ticket.status == status)
    if not handling.sees_everything(user):
        conditions.append(handling.ticket_scope(user))
    total = session.execute(select(func.count(Ticket.id)).where(*conditions)).scalar_one()
    page = session.execute(
        select(Ticket).where(*conditions).order_by(Ticket.id.desc()).limit(limit).offset(offset)
    ).scalars()
    return ListPage(items=[ticket_public(t) for t in page], total=int(total))
