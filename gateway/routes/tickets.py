"""/api/tickets — diversions to the governance platform, as officers see them (scoped)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from casework import case_queue, console
from casework.schemas import TicketPublic
from gateway.deps import OfficerUser, SessionDep, domain_errors

router = APIRouter(prefix="/api/tickets", tags=["tickets"])


@router.get("", response_model=list[TicketPublic])
def list_tickets(
    user: OfficerUser,
    session: SessionDep,
    response: Response,
    status: Annotated[str | None, Query(description="a ticket state code")] = None,
    limit: Annotated[int, Query(ge=1, le=case_queue.MAX_LIMIT)] = case_queue.DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[TicketPublic]:
    """Tickets in scope, newest first, one page at a time (the total in `X-Total-Count`)."""
    with domain_errors():
        page = console.list_tickets(
            session=session, user=user, status=status, limit=limit, offset=offset
        )
    response.headers["X-Total-Count"] = str(page.total)
    return page.items
