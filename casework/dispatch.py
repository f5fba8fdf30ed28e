"""The data side of the gateway's background dispatcher: route and record the
announcement of new cases, and keep the governance tickets' sending state.

Each new case is taken with a conditional UPDATE (notify_status NULL → pending), so
several gateway workers never announce the same case twice. The dispatcher itself only
talks to DingTalk and the governance platform between these calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from casework import routing, tickets
from casework.cases import RESPONSE_TARGETS
from casework.handling import officer_name
from casework.models import Case, Ticket, User

logger = logging.getLogger(__name__)
MAX_SEND_ATTEMPTS = 10
NO_NOTIFIER = "DINGTALK_WEBHOOK_URL 未配置"


@dataclass(frozen=True)
class RoutedCase:
    """A newly routed case: what its announcement says, and to whom."""

    id: int
    category: str
    priority: str
    street: str | None
    community: str | None
    location: str | None
    summary: str
    names: tuple[str, ...]  # the assignee and, where needed, the duty commander
    mobiles: tuple[str, ...]


def route_new_cases(*, session: Session, can_notify: bool) -> list[RoutedCase]:
    """Route every case nobody has announced yet (new, or transferred) and return those to
    announce. Without a notifier they are marked failed at once, visibly in the queue."""
    routed = []
    fresh = session.execute(
        select(Case.id).where(Case.notify_status.is_(None), Case.status != "closed")
    ).scalars()
    for case_id in list(fresh):
        taken = session.execute(
            update(Case)
            .where(Case.id == case_id, Case.notify_status.is_(None))
            .values(notify_status="pending")
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken != 1:
            continue  # another worker has it
        case = session.get(Case, case_id)
        assert case is not None
        session.refresh(case)
        commander = None
        if case.assigned_to_id is None:  # new, or transferred to a desk
            commander = routing.apply(session=session, case=case).commander
        elif case.due_at is None:
            case.due_at = case.created_at + RESPONSE_TARGETS[case.priority]
        assignee = session.get(User, case.assigned_to_id) if case.assigned_to_id else None
        people = [p for p in dict.fromkeys((assignee, commander)) if p is not None]
        names = tuple(officer_name(p) for p in people)
        logger.info("case %s → %s", case.id, ", ".join(names) or "nobody (no officers)")
        if not can_notify:
            case.notify_status, case.notify_error = "failed", NO_NOTIFIER
            continue
        routed.append(
            RoutedCase(
                id=case.id,
                category=case.category,
                priority=case.priority,
                street=case.street,
                community=case.community,
                location=case.location,
                summary=case.summary,
                names=names,
                mobiles=tuple(p.mobile for p in people if p.mobile),
            )
        )
    return routed


def record_announcement(*, session: Session, case_id: int, error: str | None) -> None:
    """What became of the case's DingTalk notification (shown in the queue)."""
    case = session.get(Case, case_id)
    if case is not None:
        case.notify_status = "failed" if error else "sent"
        case.notify_error = error


def tickets_to_send(*, session: Session) -> list[tuple[int, dict]]:
    """Pending tickets with the payload the governance platform gets."""
    return [(t.id, tickets.payload(t)) for t in tickets.due_for_sending(session=session)]


def record_ticket_sent(
    *, session: Session, ticket_id: int, error: str | None, permanent: bool
) -> None:
    """One sending attempt's outcome; a ticket that cannot be delivered comes back to
    officers as a case."""
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return
    ticket.send_attempts += 1
    if error is None:
        tickets.mark_sent(session=session, ticket_id=ticket_id)  # never backwards
        return
    ticket.send_error = error
    logger.error("ticket %s not sent (attempt %d): %s", ticket_id, ticket.send_attempts, error)
    if permanent or ticket.send_attempts >= MAX_SEND_ATTEMPTS:
        ticket.status = "failed"
        tickets.back_to_officers(session, ticket, "ticket_not_sent", "工单无法送达治理平台")


def return_overdue_tickets(*, session: Session) -> list[int]:
    """Overdue tickets come back to officers (once each)."""
    return tickets.return_overdue(session=session)
