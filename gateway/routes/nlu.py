"""/api/nlu — the trainers' NLU inbox: list, annotate, discard, export; trainers and admins.

Texts and entity values are masked (phone, ID-card and bank-card numbers) before they leave
the domain layer; annotation offsets refer to the masked text the inbox shows.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from casework import nlu_export, nlu_inbox
from casework.models import User
from gateway.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/nlu", tags=["nlu"])


def trainer(user: CurrentUser) -> User:
    """Trainers and admins curate the training data; officers and commanders do not."""
    if user.role not in nlu_inbox.TRAINER_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "仅训练师和管理员可使用语料标注")
    return user


TrainerUser = Annotated[User, Depends(trainer)]


class EntityIn(BaseModel):
    entity: str
    start: int
    end: int


class AnnotateIn(BaseModel):
    intent: str
    entities: list[EntityIn] = Field(default_factory=list)


def _fail(error: Exception) -> HTTPException:
    if isinstance(error, LookupError):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(error).strip("'\""))
    if isinstance(error, nlu_inbox.NotAllowed):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(error))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error))


def _decision(row: nlu_inbox.NluAnnotation) -> dict[str, Any]:
    return {
        "message_id": row.message_id,
        "status": row.status,
        "intent": row.intent,
        "text": row.text,
        "entities": row.entities or [],
    }


@router.get("/inbox")
def list_inbox(
    user: TrainerUser,
    session: SessionDep,
    intent: str | None = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    since: date | None = None,
    until: date | None = None,
    community: str | None = None,
    reason: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    filters = nlu_inbox.Filters(
        intent=intent,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
        since=since,
        until=until,
        community=community,
        reason=reason,
    )
    try:
        items, total = nlu_inbox.inbox(
            session=session, user=user, filters=filters, limit=limit, offset=offset
        )
    except (nlu_inbox.NluError, nlu_inbox.NotAllowed) as error:
        raise _fail(error) from error
    return {"items": [item.public() for item in items], "total": total}


@router.get("/intents")
def list_intents(user: TrainerUser) -> dict[str, Any]:
    return {"intents": nlu_inbox.intents(), "entities": list(nlu_inbox.ENTITY_NAMES)}


@router.post("/inbox/{message_id}/annotate")
def annotate(
    message_id: int, body: AnnotateIn, user: TrainerUser, session: SessionDep
) -> dict[str, Any]:
    try:
        row = nlu_inbox.annotate(
            session=session,
            user=user,
            message_id=message_id,
            intent=body.intent,
            entities=[e.dict() for e in body.entities],
        )
    except (LookupError, nlu_inbox.NluError, nlu_inbox.NotAllowed) as error:
        raise _fail(error) from error
    return _decision(row)


@router.post("/inbox/{message_id}/discard")
def discard(message_id: int, user: TrainerUser, session: SessionDep) -> dict[str, Any]:
    try:
        row = nlu_inbox.discard(session=session, user=user, message_id=message_id)
    except (LookupError, nlu_inbox.NluError, nlu_inbox.NotAllowed) as error:
        raise _fail(error) from error
    return _decision(row)


@router.post("/export")
def export(user: TrainerUser, session: SessionDep) -> dict[str, Any]:
    try:
        result = nlu_export.export(session=session, user=user)
    except nlu_inbox.NotAllowed as error:
        raise _fail(error) from error
    return result.public()
