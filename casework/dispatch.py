"""The data side of the gateway's background dispatcher: route and record the
announcement of new cases, and keep the governance tickets' sending state.

Both are claimed with an owner and an expiry (`casework.claims`), so several gateway
workers never announce a case or send a ticket twice, and work a dead worker had
claimed is taken over once its claim expires. Failures are retried patiently (5 s
doubling to 30 min, for 24 h from the first attempt); the dispatcher only talks to
DingTalk and the governance platform between these calls, and never sleeps in a pass.

A case's announcement (`notify_status`, with `notify_claimed_by` / `_claim_expires_at`):

    NULL (new, or transferred) ──claim: route──► pending (claimed by a worker)
    pending (claimed) ──owner: delivered──► sent
                      ├─owner: transient failure──► pending (unclaimed, next attempt
                      │                              after the backoff)
                      ├─owner: permanent, or 24 h of failures──► failed (in the queue)
                      └─claim expired (owner died)──► pending (taken over, re-sent)
    no notifier configured ──► failed at once ("DINGTALK_WEBHOOK_URL 未配置")

A ticket's sending (`status` pending, with `claimed_by` / `claim_expires_at`,
`next_attempt_at`, `first_attempt_at`; the rest of its life is in `casework.tickets`):

    pending (unclaimed, due) ──claim──► pending (claimed; send_attempts + 1)
    pending (claimed) ──owner: delivered──► sent (or further, if the platform called first)
                      ├─owner: transient failure──► pending (unclaimed, backoff)
                      ├─owner: permanent, or 24 h of failures──► failed: back to officers
                      └─claim expired (owner died)──► taken over by another worker
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case as when
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from casework import case_notices, claims, routing, tickets
from casework.cases import RESPONSE_TARGETS
from casework.clock import utcnow
from casework.handling import officer_name
from casework.models import Case, Ticket, User

logger = logging.getLogger(__name__)
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


def _announcement_claimable(now: datetime) -> ColumnElement[bool]:
    pending = Case.notify_status == "pending"
    retry_due = (
        pending
        & Case.notify_claimed_by.is_(None)
        & or_(Case.notify_next_attempt_at.is_(None), Case.notify_next_attempt_at <= now)
    )
    stale = pending & (Case.notify_claim_expires_at <= now)
    return (Case.status != "closed") & (Case.notify_status.is_(None) | retry_due | stale)


def route_new_cases(
    *,
    session: Session,
    can_notify: bool,
    personal: bool = False,
    owner: str | None = None,
    now: datetime | None = None,
    limit: int = claims.BATCH,
    ttl: timedelta = claims.CLAIM_TTL,
) -> list[RoutedCase]:
    """Claim every case whose announcement is due — new or transferred (routed now), a
    retry after a failure, or one a dead worker had claimed — and return those to
    announce. Without a notifier they are marked failed at once, visibly in the queue.

    An urgent case's announcement also @-mentions the commanders (`routing.
    alert_commanders`). With `personal` (work notifications configured), a newly routed
    case also gets one personal notice per officer routing considered for it
    (`casework.case_notices`), whatever becomes of the group message."""
    now = now or utcnow()
    owner = owner or claims.worker_id()
    fresh = Case.notify_status.is_(None)
    taken: list[Case] = claims.claim_rows(
        session,
        id_column=Case.id,
        claimable=_announcement_claimable(now),
        order_by=(Case.id,),
        values={
            "notify_status": "pending",
            "notify_claimed_by": owner,
            "notify_claim_expires_at": now + ttl,
            # a transferred case is announced afresh: its retries start again
            "notify_attempts": when((fresh, 1), else_=Case.notify_attempts + 1),
            "notify_first_attempt_at": when(
                (fresh, now), else_=func.coalesce(Case.notify_first_attempt_at, now)
            ),
            "notify_next_attempt_at": None,
        },
        limit=limit,
    )
    routed = []
    for case in taken:
        commander = None
        if case.assigned_to_id is None:  # new, or transferred to a desk
            commander = routing.apply(session=session, case=case).commander
        else:
            if case.due_at is None:
                case.due_at = case.created_at + RESPONSE_TARGETS[case.priority]
            if case.category == "emergency":  # the duty commander is told as well
                commander = routing.duty_commander(session)
        assignee = session.get(User, case.assigned_to_id) if case.assigned_to_id else None
        people = [p for p in dict.fromkeys((assignee, commander)) if p is not None]
        names = tuple(officer_name(p) for p in people)
        logger.info("case %s → %s", case.id, ", ".join(names) or "nobody (no officers)")
        if personal and case.notify_attempts == 1:  # routed now: new, or transferred
            recipients = case_notices.personal_recipients(session, case, [assignee, commander])
            case_notices.add_personal_announcements(session=session, case=case, people=recipients)
        rung = list(people)
        if case.priority == "urgent":  # the commanders are @-mentioned as well
            rung += [c for c in routing.alert_commanders(session) if c not in rung]
        if not can_notify:
            case.notify_status, case.notify_error = "failed", NO_NOTIFIER
            case.notify_claimed_by = case.notify_claim_expires_at = None
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
                mobiles=tuple(dict.fromkeys(p.mobile for p in rung if p.mobile)),
            )
        )
    return routed


def record_announcement(
    *,
    session: Session,
    case_id: int,
    error: str | None,
    permanent: bool = False,
    owner: str | None = None,
    now: datetime | None = None,
) -> str:
    """What became of the case's DingTalk notification (shown in the queue): "sent",
    "pending" (retried later), "failed", or "lost" when our claim was taken over (or the
    case transferred meanwhile) and nothing was written."""
    now = now or utcnow()
    owner = owner or claims.worker_id()
    mine = (Case.notify_claimed_by == owner) & (Case.notify_status == "pending")
    row = session.execute(
        select(Case.notify_attempts, Case.notify_first_attempt_at).where(Case.id == case_id, mine)
    ).one_or_none()
    if row is None:
        return "lost"
    attempts, first_attempt_at = row
    outcome, next_attempt = claims.attempt_outcome(
        error=error,
        permanent=permanent,
        attempts=attempts,
        first_attempt_at=first_attempt_at,
        now=now,
    )
    values: dict[str, object] = {"notify_error": error[:1000] if error else None}
    if outcome == "pending":
        values["notify_next_attempt_at"] = next_attempt
    else:
        values["notify_status"] = outcome
    released = claims.release(
        session,
        id_column=Case.id,
        item_id=case_id,
        owner_column=Case.notify_claimed_by,
        owner=owner,
        values={"notify_claimed_by": None, "notify_claim_expires_at": None, **values},
        also=Case.notify_status == "pending",
    )
    return outcome if released else "lost"


def _ticket_claimable(now: datetime) -> ColumnElement[bool]:
    due = or_(Ticket.next_attempt_at.is_(None), Ticket.next_attempt_at <= now)
    unclaimed = or_(Ticket.claimed_by.is_(None), Ticket.claim_expires_at <= now)
    return (Ticket.status == "pending") & due & unclaimed


def tickets_to_send(
    *,
    session: Session,
    owner: str | None = None,
    now: datetime | None = None,
    limit: int = claims.BATCH,
    ttl: timedelta = claims.CLAIM_TTL,
) -> list[tuple[int, dict]]:
    """Claim the pending tickets that are due; returns each with the payload the
    governance platform gets."""
    now = now or utcnow()
    owner = owner or claims.worker_id()
    claimed = claims.claim_rows(
        session,
        id_column=Ticket.id,
        claimable=_ticket_claimable(now),
        order_by=(Ticket.id,),
        values=claims.attempt_values(
            owner=owner,
            now=now,
            ttl=ttl,
            attempts=Ticket.send_attempts,
            first_attempt_at=Ticket.first_attempt_at,
        ),
        limit=limit,
    )
    return [(t.id, tickets.payload(t)) for t in claimed]


def record_ticket_sent(
    *,
    session: Session,
    ticket_id: int,
    error: str | None,
    permanent: bool,
    owner: str | None = None,
    now: datetime | None = None,
) -> str:
    """One sending attempt's outcome, by the worker that claimed it: "sent", "pending"
    (retried after the backoff), "failed" (the ticket comes back to officers as a case),
    or "lost" when the claim was taken over and nothing was written."""
    now = now or utcnow()
    owner = owner or claims.worker_id()
    ticket: Ticket | None = claims.release_row(
        session,
        id_column=Ticket.id,
        item_id=ticket_id,
        owner_column=Ticket.claimed_by,
        owner=owner,
        values={"claimed_by": None, "claim_expires_at": None},
    )
    if ticket is None:
        return "lost"
    if error is None:
        tickets.mark_sent(session=session, ticket_id=ticket_id)  # never backwards
        return "sent"
    ticket.send_error = error[:1000]
    if ticket.status != "pending":
        return str(ticket.status)  # the platform called back meanwhile: it has the ticket
    if permanent or claims.retries_exhausted(ticket.first_attempt_at, now):
        logger.error(
            "ticket %s not sent (attempt %d), giving up: %s", ticket_id, ticket.send_attempts, error
        )
        ticket.status = "failed"
        tickets.back_to_officers(session, ticket, "ticket_not_sent", "工单无法送达治理平台")
        return "failed"
    ticket.next_attempt_at = now + claims.retry_delay(ticket.send_attempts)
    logger.warning(
        "ticket %s not sent (attempt %d), next attempt at %s: %s",
        ticket_id,
        ticket.send_attempts,
        ticket.next_attempt_at.isoformat(timespec="seconds"),
        error,
    )
    return "pending"


def return_overdue_tickets(*, session: Session) -> list[int]:
    """Overdue tickets come back to officers (once each)."""
    return tickets.return_overdue(session=session)
