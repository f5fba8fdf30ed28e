"""The governance-platform loop (闭环): tickets are sent, the platform calls back with each
status, the resident is told, and rejected or overdue tickets come back to officers."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework import outbox
from casework.cases import CaseError, open_case
from casework.conversations import conversation_for
from casework.handling import audit
from casework.models import Ticket, utcnow

STATUSES = ("accepted", "in_progress", "resolved", "rejected")
KIND_LABELS = {"noise": "噪音", "dog": "犬只", "dispute": "邻里纠纷"}
KIND_CATEGORY = {"noise": "noise_complaint", "dog": "dog_complaint", "dispute": "other"}
RESIDENT_NOTICES = {
    "accepted": "您反映的{kind}问题（工单号 {id}）已被属地综合治理中心受理。",
    "in_progress": "您反映的{kind}问题（工单号 {id}）正在处理中。{note}",
    "resolved": "您反映的{kind}问题（工单号 {id}）已办结。{note}感谢您的反映！",
    "rejected": (
        "您反映的{kind}问题（工单号 {id}）治理中心暂未受理，已转回社区民警跟进，民警会联系您。"
    ),
}


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def is_overdue(ticket: Ticket, now: datetime | None = None) -> bool:
    due = _aware(ticket.due_at)
    open_ = ticket.status in ("pending", "sent", "accepted", "in_progress")
    return bool(open_ and due is not None and due < (now or utcnow()))


def back_to_officers(session: Session, ticket: Ticket, reason: str, remark: str) -> int:
    """A ticket the platform will not or did not handle becomes a case for officers."""
    case = open_case(
        session=session,
        sender_id=ticket.sender_id,
        category=KIND_CATEGORY.get(ticket.kind, "other"),
        priority="normal",
        reason=reason,
        summary=f"【工单退回】{remark}：{ticket.summary}"[:500],
        details={**(ticket.details or {}), "ticket_id": ticket.id},
        location=ticket.location,
    )
    case.street, case.community = ticket.street, ticket.community
    return int(case.id)


def apply_status(*, session: Session, ticket_id: int, status: str, note: str = "") -> Ticket:
    """The platform's callback: record it, tell the resident (and the linked reporters)."""
    if status not in STATUSES:
        raise CaseError(f"unknown ticket status {status!r}")
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise LookupError(ticket_id)
    ticket.status, ticket.status_note = status, note or None
    if status == "resolved":
        ticket.resolved_at = utcnow()
    if status == "rejected":
        back_to_officers(session, ticket, "ticket_rejected", f"治理平台退回（{note or '无说明'}）")
    linked = session.execute(select(Ticket).where(Ticket.linked_to_id == ticket.id)).scalars()
    for reporter in [ticket, *linked]:
        if reporter is not ticket:
            reporter.status_note = f"随工单 {ticket.id}：{status}"
        text = RESIDENT_NOTICES[status].format(
            kind=KIND_LABELS.get(ticket.kind, ""), id=ticket.id, note=f"{note}。" if note else ""
        )
        conversation = conversation_for(session=session, openid=reporter.sender_id)
        outbox.enqueue(
            session=session,
            conversation_id=conversation.id,
            openid=reporter.sender_id,
            text=text,
            sender="system",
        )
    audit(session, None, f"ticket_{status}", "ticket", ticket.id, note=note)
    return ticket


def due_for_sending(*, session: Session, limit: int = 20) -> list[Ticket]:
    return list(
        session.execute(
            select(Ticket)
            .where(Ticket.status == "pending", Ticket.send_attempts < 10)
            .order_by(Ticket.id)
            .limit(limit)
        ).scalars()
    )


def payload(ticket: Ticket) -> dict:
    return {
        "ticket_id": ticket.id,
        "kind": ticket.kind,
        "kind_label": KIND_LABELS.get(ticket.kind),
        "summary": ticket.summary,
        "location": ticket.location,
        "street": ticket.street,
        "community": ticket.community,
        "details": ticket.details or {},
        "reported_at": (_aware(ticket.created_at) or utcnow()).isoformat(),
        "due_at": (_aware(ticket.due_at) or utcnow()).isoformat(),
    }


def return_overdue(*, session: Session) -> list[int]:
    """Overdue tickets come back to an officer once (a case that says so)."""
    returned = []
    for ticket in session.execute(
        select(Ticket).where(Ticket.status.in_(("sent", "accepted", "in_progress")))
    ).scalars():
        if is_overdue(ticket) and not (ticket.details or {}).get("returned_as_case"):
            case_id = back_to_officers(session, ticket, "ticket_overdue", "治理平台超期未办结")
            ticket.details = {**(ticket.details or {}), "returned_as_case": case_id}
            returned.append(ticket.id)
    return returned
