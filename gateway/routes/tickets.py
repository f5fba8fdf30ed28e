"""/api/tickets — diversions to the governance platform, as officers see them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from casework import tickets
from casework.models import Ticket
from gateway.deps import OfficerUser, SessionDep

router = APIRouter(prefix="/api/tickets", tags=["tickets"])


def ticket_public(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "kind": ticket.kind,
        "kind_label": tickets.KIND_LABELS.get(ticket.kind),
        "status": ticket.status,
        "summary": ticket.summary,
        "street": ticket.street,
        "community": ticket.community,
        "location": ticket.location,
        "case_id": ticket.case_id,
        "linked_to_id": ticket.linked_to_id,
        "sent_at": tickets._aware(ticket.sent_at),
        "status_note": ticket.status_note,
        "created_at": tickets._aware(ticket.created_at),
        "due_at": tickets._aware(ticket.due_at),
        "resolved_at": tickets._aware(ticket.resolved_at),
        "overdue": tickets.is_overdue(ticket),
        "send_error": ticket.send_error,
    }


@router.get("")
def list_tickets(user: OfficerUser, session: SessionDep, status: str | None = None) -> list[dict]:
    query = select(Ticket).order_by(Ticket.id.desc())
    if status:
        query = query.where(Ticket.status == status)
    return [ticket_public(t) for t in session.execute(query).scalars()]
