"""Hand-offs to officers (cases) and diversions to the governance platform (tickets).

Keyword-only service functions; callers pass the session so one unit of work can span
several calls and tests can run them inside a transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from casework.models import Case, Ticket, utcnow

CATEGORIES = (
    "legal_help",
    "fraud_suspicion",
    "noise_complaint",
    "dog_complaint",
    "emergency",
    "faq",
    "other",
)
PRIORITIES = ("urgent", "high", "normal", "low")  # most urgent first
# Time to the first officer reply that counts as timely (答复及时), per priority.
RESPONSE_TARGETS = {
    "urgent": timedelta(minutes=5),
    "high": timedelta(minutes=30),
    "normal": timedelta(hours=2),
    "low": timedelta(hours=24),
}
CATEGORY_LABELS = {
    "fraud_suspicion": "涉诈",
    "emergency": "紧急警情",
    "legal_help": "法律求助",
    "noise_complaint": "噪音投诉",
    "dog_complaint": "犬只投诉",
    "faq": "办事咨询",
    "other": "其他",
}

# The desk a category needs; None means the community officer (社区民警) of the place.
DESK_BY_CATEGORY: dict[str, str | None] = {
    "fraud_suspicion": "反诈",
    "legal_help": "法制",
    "emergency": None,  # the duty commander is alerted as well (issue 4)
    "noise_complaint": None,
    "dog_complaint": None,
    "faq": None,
    "other": None,
}


# The predicate of the partial unique index `uq_cases_open_sender_category` (revision
# 0006), spelled as the index spells it so both databases match the ON CONFLICT target.
OPEN_CASE = text("status <> 'closed'")


class CaseError(ValueError):
    """A case or ticket request the domain refuses (unknown category, priority, ...)."""


def _check(category: str, priority: str) -> None:
    if category not in CATEGORIES:
        raise CaseError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    if priority not in PRIORITIES:
        raise CaseError(f"unknown priority {priority!r}; expected one of {PRIORITIES}")


def _more_urgent(a: str, b: str) -> str:
    return a if PRIORITIES.index(a) <= PRIORITIES.index(b) else b


def _clean(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if value not in (None, "", [])}


# A case about someone who is not a WeChat resident (a defrauded person a dissuasion lead
# named, whose mobile matched nobody): no conversation, nothing can be sent to them.
OFFLINE_SENDER_PREFIX = "dissuasion:"


def reaches_wechat(sender_id: str) -> bool:
    """Can the case's person be answered in WeChat (is `sender_id` a real openid)?"""
    return not sender_id.startswith(OFFLINE_SENDER_PREFIX)


def open_case(
    *,
    session: Session,
    sender_id: str,
    category: str,
    priority: str,
    reason: str,
    summary: str,
    details: dict[str, Any] | None = None,
    location: str | None = None,
    desk: str | None = None,
) -> Case:
    """Open a case for officers, or update the resident's open case of the same category.

    A resident who triggers the same hand-off twice (a retry, a repeated request) gets one
    case whose details are merged and whose priority only ever rises — also when two
    workers do so at the same moment: a partial unique index allows one open case per
    resident and category, the insert does nothing on conflict, and the loser of the
    race merges into the winner's case.
    """
    _check(category, priority)
    existing = _open_case_of(session, sender_id, category)
    if existing is None:
        case_id = _insert_unless_open(
            session,
            sender_id=sender_id,
            category=category,
            priority=priority,
            status="open",
            reason=reason,
            desk=desk if desk is not None else DESK_BY_CATEGORY[category],
            summary=summary,
            details=_clean(details or {}),
            location=location,
        )
        if case_id is not None:
            case = session.get(Case, case_id)
            assert case is not None
            return case
        # Another worker opened it between our look and our insert (the partial unique
        # index allows one open case per resident and category): merge into theirs.
        existing = _open_case_of(session, sender_id, category)
        if existing is None:
            raise CaseError("the resident's open case vanished while opening another")
    existing.details = {**(existing.details or {}), **_clean(details or {})}
    existing.priority = _more_urgent(existing.priority, priority)
    existing.summary = summary
    existing.reason = reason
    existing.location = location or existing.location
    session.flush()
    return existing


def _insert_unless_open(session: Session, **values: Any) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING on the partial unique index: the new case's id, or
    None when the resident already has an open case of the category (on PostgreSQL a
    concurrent insert is waited for, then counts as the conflict). No SAVEPOINT needed,
    so nothing else in the caller's transaction is touched by losing the race."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    result = session.execute(
        dialect.insert(Case)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["sender_id", "category"], index_where=OPEN_CASE)
    )
    if result.rowcount != 1:
        return None
    return int(result.inserted_primary_key[0])


def _open_case_of(session: Session, sender_id: str, category: str) -> Case | None:
    """The resident's open case of the category, locked so that two hand-offs merging
    into it at once do not lose each other's details (PostgreSQL; SQLite has one writer)."""
    return session.execute(
        select(Case)
        .where(Case.sender_id == sender_id, Case.category == category, Case.status != "closed")
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


DUPLICATE_WINDOW = timedelta(hours=24)
TICKET_TARGET = timedelta(hours=72)  # the platform should resolve within this
OPEN_TICKET_STATES = ("pending", "sent", "accepted", "in_progress")


def open_ticket(
    *,
    session: Session,
    sender_id: str,
    kind: str,
    summary: str,
    details: dict[str, Any] | None = None,
    location: str | None = None,
    street: str | None = None,
    community: str | None = None,
) -> Ticket:
    """Record a diversion ticket for the governance platform (sent by the ticket worker).

    A report of the same kind at the same place within 24 hours is linked to the open
    ticket instead of sent again (status 'linked'): the platform gets one job, and the
    resident is told it is already being handled.
    """
    if kind not in ("noise", "dog", "dispute"):
        raise CaseError(f"unknown ticket kind {kind!r}")
    now = utcnow()
    ticket = Ticket(
        sender_id=sender_id,
        kind=kind,
        status="pending",
        summary=summary,
        details=_clean(details or {}),
        location=location,
        street=street,
        community=community,
        due_at=now + TICKET_TARGET,
        send_attempts=0,
    )
    same_place = []
    if community:
        same_place.append(Ticket.community == community)
    if location:
        same_place.append(Ticket.location == location)
    if same_place:
        original = session.execute(
            select(Ticket)
            .where(Ticket.kind == kind, Ticket.status.in_(OPEN_TICKET_STATES))
            .where(Ticket.created_at >= now - DUPLICATE_WINDOW, or_(*same_place))
            .order_by(Ticket.id)
            .limit(1)
        ).scalar_one_or_none()
        if original is not None:
            ticket.status, ticket.linked_to_id = "linked", original.id
    session.add(ticket)
    session.flush()
    return ticket


def cases_of(*, session: Session, sender_id: str) -> list[Case]:
    return list(session.execute(select(Case).where(Case.sender_id == sender_id)).scalars())


def tickets_of(*, session: Session, sender_id: str) -> list[Ticket]:
    return list(session.execute(select(Ticket).where(Ticket.sender_id == sender_id)).scalars())
