"""Signed webhooks from partner systems (no bearer token; the signature is the credential).

- `POST /api/tickets/{id}/status` — the governance platform's status callback.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from casework import tickets
from casework.cases import CaseError
from gateway.deps import SessionDep
from gateway.routes.tickets import ticket_public
from integrations import governance

router = APIRouter(prefix="/api", tags=["webhooks"])


@router.post("/tickets/{ticket_id}/status")
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
