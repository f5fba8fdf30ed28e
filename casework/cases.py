"""Hand-offs to officers (cases) and diversions to the governance platform (tickets).

Keyword-only service functions; callers pass the session so one unit of work can span
several calls and tests can run them inside a transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.models import Case, Ticket

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
    case whose details are merged and whose priority only ever rises.
    """
    _check(category, priority)
    existing = session.execute(
        select(Case)
        .where(Case.sender_id == sender_id, Case.category == category, Case.status != "closed")
        .order_by(Case.id.desc())
    ).scalar_one_or_none()
    if existing is not None:
        existing.details = {**(existing.details or {}), **_clean(details or {})}
        existing.priority = _more_urgent(existing.priority, priority)
        existing.summary = summary
        existing.reason = reason
        existing.location = location or existing.location
        session.flush()
        return existing
    case = Case(
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
    session.add(case)
    session.flush()
    return case


def open_ticket(
    *,
    session: Session,
    sender_id: str,
    kind: str,
    summary: str,
    details: dict[str, Any] | None = None,
    location: str | None = None,
) -> Ticket:
    """Record a diversion ticket for the governance platform (sent by the gateway later)."""
    if kind not in ("noise", "dog", "dispute"):
        raise CaseError(f"unknown ticket kind {kind!r}")
    ticket = Ticket(
        sender_id=sender_id,
        kind=kind,
        status="pending",
        summary=summary,
        details=_clean(details or {}),
        location=location,
    )
    session.add(ticket)
    session.flush()
    return ticket


def cases_of(*, session: Session, sender_id: str) -> list[Case]:
    return list(session.execute(select(Case).where(Case.sender_id == sender_id)).scalars())


def tickets_of(*, session: Session, sender_id: str) -> list[Ticket]:
    return list(session.execute(select(Ticket).where(Ticket.sender_id == sender_id)).scalars())
