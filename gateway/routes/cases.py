"""/api/cases — the officers' queue and everything they do with a case."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel
from sqlalchemy import select

from casework import conversations, handling
from casework.cases import CATEGORY_LABELS, PRIORITIES, CaseError
from casework.models import Case, CaseNote, Ticket, User
from gateway.deps import CurrentUser, OfficerUser, SessionDep
from gateway.routes.tickets import ticket_public

router = APIRouter(prefix="/api", tags=["cases"])


class ReplyIn(BaseModel):
    text: str


class NoteIn(BaseModel):
    text: str


class TransferIn(BaseModel):
    desk: str | None = None
    officer_id: int | None = None


class DivertIn(BaseModel):
    kind: str
    note: str = ""


class CloseIn(BaseModel):
    resolution: str


class CategoryIn(BaseModel):
    category: str


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _person(session: Any, user_id: int | None) -> dict | None:
    user = session.get(User, user_id) if user_id else None
    return {"id": user.id, "name": handling.officer_name(user)} if user else None


def case_summary(session: Any, case: Case) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    due = _aware(case.due_at)
    waiting = case.first_reply_at is None and case.status != "closed"
    seconds_left = int((due - now).total_seconds()) if due and waiting else None
    return {
        "id": case.id,
        "category": case.category,
        "category_label": CATEGORY_LABELS.get(case.category, case.category),
        "priority": case.priority,
        "status": case.status,
        "reason": case.reason,
        "desk": case.desk,
        "summary": case.summary,
        "street": case.street,
        "community": case.community,
        "assigned_to": _person(session, case.assigned_to_id),
        "claimed_by": _person(session, case.claimed_by_id),
        "created_at": _aware(case.created_at),
        "due_at": due,
        "first_reply_at": _aware(case.first_reply_at),
        "closed_at": _aware(case.closed_at),
        "seconds_left": seconds_left,
        "overdue": seconds_left is not None and seconds_left < 0,
        "notify_status": case.notify_status,
        "notify_error": case.notify_error,
        "rating": case.rating,
        "resolution": case.resolution,
    }


def _queue_order(summary: dict[str, Any]) -> tuple:
    left = summary["seconds_left"]
    return (
        PRIORITIES.index(summary["priority"]),
        left if left is not None else 10**9,
        summary["id"],
    )


def case_detail(session: Any, case: Case) -> dict[str, Any]:
    conversation = conversations.conversation_for(session=session, openid=case.sender_id)
    transcript = conversations.messages_of(session=session, conversation_id=conversation.id)
    notes = session.execute(
        select(CaseNote).where(CaseNote.case_id == case.id).order_by(CaseNote.id)
    ).scalars()
    history = session.execute(
        select(Case)
        .where(Case.sender_id == case.sender_id, Case.id != case.id)
        .order_by(Case.id.desc())
    ).scalars()
    tickets = session.execute(
        select(Ticket).where((Ticket.case_id == case.id) | (Ticket.sender_id == case.sender_id))
    ).scalars()
    return {
        **case_summary(session, case),
        "details": case.details or {},
        "location": case.location,
        "conversation": {
            "id": conversation.id,
            "openid": conversation.openid,
            "owner": conversation.owner,
            "location_label": conversation.location_label,
            "location_lat": conversation.location_lat,
            "location_lng": conversation.location_lng,
        },
        "transcript": [
            {
                "id": m.id,
                "direction": m.direction,
                "msg_type": m.msg_type,
                "content": m.content,
                "sender": m.sender,
                "delivery": m.delivery,
                "status": m.status,
                "intent": m.intent,
                "confidence": m.confidence,
                "created_at": _aware(m.created_at),
            }
            for m in transcript
        ],
        "notes": [
            {
                "id": n.id,
                "author": handling.officer_name(session.get(User, n.author_id)),
                "text": n.text,
                "created_at": _aware(n.created_at),
            }
            for n in notes
        ],
        "history": [
            {
                "id": c.id,
                "category_label": CATEGORY_LABELS.get(c.category, c.category),
                "status": c.status,
                "summary": c.summary,
                "created_at": _aware(c.created_at),
            }
            for c in history
        ],
        "tickets": [ticket_public(t) for t in tickets],
    }


def _fail(error: Exception) -> HTTPException:
    if isinstance(error, handling.Conflict):
        return HTTPException(status.HTTP_409_CONFLICT, str(error))
    if isinstance(error, handling.NotAllowed):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(error))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error))


def _case(session: Any, user: User, case_id: int) -> Case:
    try:
        case = handling.get_case(session=session, user=user, case_id=case_id)
    except handling.NotAllowed as error:
        raise _fail(error) from error
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "案件不存在")
    return case


@router.get("/cases")
def list_cases(user: OfficerUser, session: SessionDep, status: str = "active") -> list[dict]:
    try:
        found = handling.visible_cases(session=session, user=user, status=status)
    except (CaseError, handling.NotAllowed) as error:
        raise _fail(error) from error
    return sorted((case_summary(session, c) for c in found), key=_queue_order)


@router.get("/cases/{case_id}")
def get_case(case_id: int, user: OfficerUser, session: SessionDep) -> dict:
    return case_detail(session, _case(session, user, case_id))


@router.post("/cases/{case_id}/claim")
def claim(case_id: int, user: OfficerUser, session: SessionDep) -> dict:
    _case(session, user, case_id)
    try:
        case = handling.claim(session=session, user=user, case_id=case_id)
    except (handling.Conflict, CaseError) as error:
        raise _fail(error) from error
    return case_detail(session, case)


@router.post("/cases/{case_id}/reply")
def reply(
    case_id: int, body: ReplyIn, user: OfficerUser, session: SessionDep, request: Request
) -> dict:
    _case(session, user, case_id)
    try:
        sent = handling.reply(session=session, user=user, case_id=case_id, text=body.text)
    except (handling.Conflict, CaseError) as error:
        raise _fail(error) from error
    session.commit()
    wake_outbox(request)
    return {"message_id": sent.message_id, "outbox_id": sent.outbox_id}


@router.post("/cases/{case_id}/notes")
def add_note(case_id: int, body: NoteIn, user: OfficerUser, session: SessionDep) -> dict:
    _case(session, user, case_id)
    try:
        note = handling.add_note(session=session, user=user, case_id=case_id, text=body.text)
    except CaseError as error:
        raise _fail(error) from error
    return {
        "id": note.id,
        "author": handling.officer_name(user),
        "text": note.text,
        "created_at": _aware(note.created_at),
    }


@router.post("/cases/{case_id}/transfer")
def transfer(case_id: int, body: TransferIn, user: OfficerUser, session: SessionDep) -> dict:
    _case(session, user, case_id)
    try:
        case = handling.transfer(
            session=session, user=user, case_id=case_id, desk=body.desk, officer_id=body.officer_id
        )
    except (handling.Conflict, CaseError) as error:
        raise _fail(error) from error
    return case_summary(session, case)


@router.post("/cases/{case_id}/divert")
def divert(
    case_id: int, body: DivertIn, user: OfficerUser, session: SessionDep, request: Request
) -> dict:
    _case(session, user, case_id)
    try:
        ticket_id = handling.divert(
            session=session, user=user, case_id=case_id, kind=body.kind, note=body.note
        )
    except (handling.Conflict, CaseError) as error:
        raise _fail(error) from error
    session.commit()
    wake_outbox(request)
    return {"ticket_id": ticket_id}


@router.post("/cases/{case_id}/close")
async def close(
    case_id: int, body: CloseIn, user: OfficerUser, session: SessionDep, request: Request
) -> dict:
    _case(session, user, case_id)
    try:
        case = handling.close(
            session=session, user=user, case_id=case_id, resolution=body.resolution
        )
    except (handling.Conflict, CaseError) as error:
        raise _fail(error) from error
    session.commit()
    # The bot owns the conversation again: un-pause it in Rasa (ConversationResumed).
    await request.app.state.rasa.resume(case.sender_id)
    wake_outbox(request)
    return case_summary(session, case)


@router.post("/cases/{case_id}/category")
def correct_category(
    case_id: int, body: CategoryIn, user: OfficerUser, session: SessionDep
) -> dict:
    _case(session, user, case_id)
    try:
        case = handling.correct_category(
            session=session, user=user, case_id=case_id, category=body.category
        )
    except CaseError as error:
        raise _fail(error) from error
    return case_summary(session, case)


@router.get("/me", tags=["auth"])
def me(user: CurrentUser) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "name": handling.officer_name(user),
        "role": user.role,
        "desk": user.desk,
        "community": user.community,
    }


@router.get("/canned-replies")
def canned_replies(user: OfficerUser) -> list[str]:
    return handling.CANNED_REPLIES


@router.get("/officers")
def officers(user: OfficerUser, session: SessionDep) -> list[dict]:
    people = session.execute(
        select(User)
        .where(User.active.is_(True), User.role.in_(("officer", "commander")))
        .order_by(User.id)
    ).scalars()
    return [
        {
            "id": u.id,
            "name": handling.officer_name(u),
            "role": u.role,
            "desk": u.desk,
            "community": u.community,
        }
        for u in people
    ]


def wake_outbox(request: Request) -> None:
    worker = getattr(request.app.state, "outbox", None)
    if worker is not None:
        worker.wakeup.set()
