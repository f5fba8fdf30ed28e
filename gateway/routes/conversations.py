"""GET /api/conversations — residents' conversations and every message in them.

Scoped: an officer sees a resident's conversation when they see one of that resident's
cases or tickets; any other id answers 404. Reading the messages is audited.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from casework import console
from casework.schemas import ConversationDetail, ConversationPublic
from gateway.deps import OfficerUser, SessionDep, client_ip, domain_errors

router = APIRouter(prefix="/api/conversations", tags=["conversations"])


@router.get("", response_model=list[ConversationPublic])
def list_conversations(
    user: OfficerUser, session: SessionDep, openid: str | None = None
) -> list[ConversationPublic]:
    with domain_errors():
        return console.list_conversations(session=session, user=user, openid=openid)


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
