"""Bureau-wide listings for the operator at the server (`jmt cases`, `jmt tickets`).

Unscoped on purpose: whoever runs the CLI on the server already holds the database.
Officers' views go through `casework.handling`, which scopes every query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.models import Case, Ticket


class CaseLine(BaseModel):
    id: int
    priority: str
    category: str
    status: str
    desk: str | None
    created_at: datetime
    summary: str
    details: dict[str, Any]


class TicketLine(BaseModel):
    id: int
    kind: str
    status: str
    location: str | None
    summary: str


def all_cases(*, session: Session, status: str | None = None) -> list[CaseLine]:
    query = select(Case).order_by(Case.id)
    if status:
        query = query.where(Case.status == status)
    return [
        CaseLine(
            id=case.id,
            priority=case.priority,
            category=case.category,
            status=case.status,
            desk=case.desk,
            created_at=case.created_at,
            summary=case.summary,
            details=case.details or {},
        )
        for case in session.execute(query).scalars()
    ]


def all_tickets(*, session: Session) -> list[TicketLine]:
    return [
        TicketLine(
            id=ticket.id,
            kind=ticket.kind,
            status=ticket.status,
            location=ticket.location,
            summary=ticket.summary,
        )
        for ticket in session.execute(select(Ticket).order_by(Ticket.id)).scalars()
    ]
