"""The governance-platform loop (闭环): tickets are sent, the platform calls back with each
status, the resident is told, and rejected or overdue tickets come back to officers.

A ticket's life is an explicit state machine (`TRANSITIONS`, defined once here):

    pending ──► sent ──► accepted ──► in_progress ──► resolved
       │  │       └─────────┴─────────────┴────────► rejected
       │  └──► failed (refused, or undeliverable for 24 h: back to officers)
       └─────► linked (created as a duplicate of an open ticket; never sent)

The platform may skip states (a ticket resolved at once) and may call back before we
have marked the ticket sent (its answer raced ours), so `pending` moves on too. The same
status again is a no-op (the platform retried); anything else is going backwards or
leaving a final state, and is refused. How a pending ticket is sent — claimed by one
gateway worker, retried with backoff — is `casework.dispatch`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework import outbox
from casework.audit import record as audit
from casework.cases import OPEN_TICKET_STATES, CaseError, open_case
from casework.clock import aware
from casework.conversations import conversation_for
from casework.models import Ticket, utcnow
from casework.privacy import mask_pii

# Every state a ticket can be in, and where it may go from there.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"sent", "failed", "accepted", "in_progress", "resolved", "rejected"}),
    "sent": frozenset({"accepted", "in_progress", "resolved", "rejected"}),
    "accepted": frozenset({"in_progress", "resolved", "rejected"}),
    "in_progress": frozenset({"resolved", "rejected"}),
    "resolved": frozenset(),
    "rejected": frozenset(),
    "failed": frozenset(),
    "linked": frozenset(),
}
TICKET_STATES = tuple(TRANSITIONS)
STATUSES = ("accepted", "in_progress", "resolved", "rejected")  # what the platform reports
OPEN_STATES = OPEN_TICKET_STATES  # defined beside open_ticket, which links duplicates by it
FINAL_STATES = tuple(state for state, onward in TRANSITIONS.items() if not onward)
STATE_LABELS = {
    "pending": "待发送",
    "sent": "已发送",
    "accepted": "已受理",
    "in_progress": "处理中",
    "resolved": "已办结",
    "rejected": "已退回",
    "failed": "发送失败",
    "linked": "已合并",
}
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


class TicketStatusConflict(CaseError):
    """A status the ticket cannot take from where it is (going backwards, or after a
    final state)."""


@dataclass(frozen=True)
class StatusChange:
    """What a status callback did: `changed` is False for the same status again."""

    ticket: Ticket
    changed: bool


def can_move(current: str, new: str) -> bool:
    """True when `new` is a step forward from `current` (the same status is not)."""
    return new in TRANSITIONS.get(current, frozenset())


def is_overdue(ticket: Ticket, now: datetime | None = None) -> bool:
    due = aware(ticket.due_at)
    return bool(ticket.status in OPEN_STATES and due is not None and due < (now or utcnow()))


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


def apply_status(*, session: Session, ticket_id: int, status: str, note: str = "") -> StatusChange:
    """The platform's callback: record it, tell the resident (and the linked reporters).

    The same status again changes nothing and tells nobody (a retried callback); a step
    backwards or out of a final state raises `TicketStatusConflict`; a status the
    platform cannot send raises `CaseError`; an unknown ticket `LookupError`."""
    if status not in STATUSES:
        raise CaseError(f"unknown ticket status {status!r}; expected one of {STATUSES}")
    ticket = session.execute(
        select(Ticket).where(Ticket.id == ticket_id).with_for_update()
    ).scalar_one_or_none()
    if ticket is None:
        raise LookupError(ticket_id)
    if ticket.status == status:
        return StatusChange(ticket, changed=False)
    if not can_move(ticket.status, status):
        raise TicketStatusConflict(
            f"ticket {ticket.id} is {ticket.status!r}: it cannot become {status!r}"
        )
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
    return StatusChange(ticket, changed=True)


def mark_sent(*, session: Session, ticket_id: int) -> bool:
    """The ticket reached the platform. Only a pending ticket becomes `sent`: a callback
    that raced our answer (`accepted` already) must not be undone. False when it did not
    move."""
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return False
    ticket.sent_at, ticket.send_error = ticket.sent_at or utcnow(), None
    if not can_move(ticket.status, "sent"):
        return False
    ticket.status = "sent"
    return True


# The details the platform needs to act on a ticket. A list of what may leave rather than
# of what may not: a slot added to the intake later stays home until someone decides the
# platform needs it. The resident's own words (`first_message`) go only as the masked
# summary; their contact never goes (the police console holds it, and the platform calls
# back through us: the resident is told by the bot).
PLATFORM_DETAILS = (
    "noise_source",
    "noise_ongoing",
    "event_time",
    "event_time_iso",
    "dog_incident",
    "bitten",
    "injury",
    "note",
)


def _masked(value: object) -> object:
    return mask_pii(value) if isinstance(value, str) else value


def payload(ticket: Ticket) -> dict:
    """What the governance platform receives: where, what kind, a masked description and
    the facts it acts on; no raw phone, ID-card or bank-card number of the resident."""
    details = ticket.details or {}
    return {
        "ticket_id": ticket.id,
        "kind": ticket.kind,
        "kind_label": KIND_LABELS.get(ticket.kind),
        "summary": mask_pii(ticket.summary or ""),
        "location": _masked(ticket.location),
        "street": ticket.street,
        "community": ticket.community,
        "details": {
            key: _masked(details[key])
            for key in PLATFORM_DETAILS
            if details.get(key) not in (None, "", [])
        },
        "reported_at": (aware(ticket.created_at) or utcnow()).isoformat(),
        "due_at": (aware(ticket.due_at) or utcnow()).isoformat(),
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
