"""/api/tickets — diversions to the governance platform and its signed status callback."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select

from casework import tickets
from casework.cases import CaseError
from casework.models import Ticket
from gateway.deps import OfficerUser, SessionDep
from integrations import governance

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


@router.post("/{ticket_id}/status")
async def platform_callback(ticket_id: int, request: Request, session: SessionDep) -> dict:
    """Called by the governance platform, signed with GOVERNANCE_SECRET (no bearer token)."""
    secret = request.app.state.settings.governance_secret
    body = await request.body()
    signed = governance.verify(
        body,
        request.headers.get("X-JMT-Timestamp"),
        request.headers.get("X-JMT-Signature"),
        secret or "",
    )
    if not secret or not signed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad signature")
    try:
        data = await request.json()
        new_status, note = str(data["status"]), str(data.get("note") or "")
    except (ValueError, KeyError, TypeError) as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, "body must be {status, note}"
        ) from error
    try:
        ticket = tickets.apply_status(
            session=session, ticket_id=ticket_id, status=new_status, note=note
        )
    except LookupError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown ticket") from error
    except CaseError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from error
    session.commit()
    worker = getattr(request.app.state, "outbox", None)
    if worker is not None:
        worker.wakeup.set()
    return ticket_public(ticket)
