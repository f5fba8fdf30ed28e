"""GET /api/conversations — residents' conversations and every message in them.

Scoped: an officer sees a resident's conversation when they see one of that resident's
cases or tickets; any other id answers 404. Reading the messages is audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from casework import case_queue, console
from casework.schemas import ConversationDetail, ConversationPublic
from gateway.deps import OfficerUser, SessionDep, client_ip, domain_errors

router = APIRouter(prefix="/api/conversations", tags=["conversations"])


@router.get("", response_model=list[ConversationPublic])
def list_conversations(
    user: OfficerUser,
    session: SessionDep,
    response: Response,
    openid: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=case_queue.MAX_LIMIT)] = case_queue.DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ConversationPublic]:
    """Conversations in scope, newest first, one page at a time (the total in
    `X-Total-Count`)."""
    with domain_errors():
        page = console.list_conversations(
            session=session, user=user, openid=openid, limit=limit, offset=offset
        )
    response.headers["X-Total-Count"] = str(page.total)
    return page.items


@router.get("/{conversation_id}", response_model=ConversationDetail)
def get_conversation(
    conversation_id: int, user: OfficerUser, session: SessionDep, request: Request
) -> ConversationDetail:
    with domain_errors():
        return console.conversation_detail(
            session=session,
            user=user,
            conversation_id=conversation_id,
            client_ip=client_ip(request),
        )
