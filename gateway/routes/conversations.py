"""GET /api/conversations — residents' conversations and every message in them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from casework import conversations
from casework.models import Conversation
from gateway.deps import OfficerUser, SessionDep

router = APIRouter(prefix="/api/conversations", tags=["conversations"])


class MessagePublic(BaseModel):
    id: int
    direction: str
    msg_type: str
    content: str
    media: dict[str, Any]
    status: str
    intent: str | None
    confidence: float | None
    sender: str | None
    delivery: str | None
    created_at: datetime

    class Config:
        orm_mode = True


class ConversationPublic(BaseModel):
    id: int
    openid: str
    owner: str
    location_label: str | None
    location_lat: float | None
    location_lng: float | None
    created_at: datetime
    updated_at: datetime

    class Config:
        orm_mode = True


class ConversationDetail(ConversationPublic):
    messages: list[MessagePublic]


@router.get("", response_model=list[ConversationPublic])
def list_conversations(
    user: OfficerUser, session: SessionDep, openid: str | None = None
) -> list[Conversation]:
    return conversations.list_conversations(session=session, openid=openid)


@router.get("/{conversation_id}", response_model=ConversationDetail)
def get_conversation(conversation_id: int, user: OfficerUser, session: SessionDep) -> dict:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "会话不存在")
    messages = conversations.messages_of(session=session, conversation_id=conversation_id)
    public = ConversationPublic.from_orm(conversation).dict()
    return {**public, "messages": [MessagePublic.from_orm(m) for m in messages]}
