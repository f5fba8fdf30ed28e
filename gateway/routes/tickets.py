"""/api/tickets — diversions to the governance platform, as officers see them (scoped)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from casework import console
from casework.models import Ticket
from casework.schemas import TicketPublic
from gateway.deps import OfficerUser, SessionDep, domain_errors

router = APIRouter(prefix="/api/tickets", tags=["tickets"])


def ticket_public(ticket: Ticket) -> dict[str, Any]:
    """Kept for the status-callback route (gateway/routes/webhooks.py)."""
    return console.ticket_public(ticket).dict()


@router.get("", response_model=list[TicketPublic])
def list_tickets(
    user: OfficerUser, session: SessionDep, status: str | None = None
) -> list[TicketPublic]:
    with domain_errors():
        return console.list_tickets(session=session, user=user, status=status)
