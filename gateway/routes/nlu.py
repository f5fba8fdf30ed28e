"""/api/nlu — the trainers' NLU inbox: list, annotate, discard, export; trainers and admins.

Texts and entity values are masked (phone, ID-card and bank-card numbers) before they leave
the domain layer; annotation offsets refer to the masked text the inbox shows.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, Field

from casework import nlu_export, nlu_inbox
from casework.models import User
from casework.schemas import AnnotationPublic, ExportPublic, InboxPage, IntentsPublic
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


@router.get("/inbox", response_model=InboxPage)
def list_inbox(
    user: TrainerUser,
    session: SessionDep,
    response: Response,
    intent: str | None = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    since: date | None = None,
    until: date | None = None,
    community: str | None = None,
    reason: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> InboxPage:
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
        page = nlu_inbox.inbox_page(
            session=session, user=user, filters=filters, limit=limit, offset=offset
        )
    except (nlu_inbox.NluError, nlu_inbox.NotAllowed) as error:
        raise _fail(error) from error
    response.headers["X-Total-Count"] = str(page.total)  # as every paged list carries it
    return page


@router.get("/intents", response_model=IntentsPublic)
def list_intents(user: TrainerUser) -> IntentsPublic:
    return nlu_inbox.intent_choices(user=user)


@router.post("/inbox/{message_id}/annotate", response_model=AnnotationPublic)
def annotate(
    message_id: int, body: AnnotateIn, user: TrainerUser, session: SessionDep
) -> AnnotationPublic:
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
    return nlu_inbox.decision_public(row)


@router.post("/inbox/{message_id}/discard", response_model=AnnotationPublic)
def discard(message_id: int, user: TrainerUser, session: SessionDep) -> AnnotationPublic:
    try:
        row = nlu_inbox.discard(session=session, user=user, message_id=message_id)
    except (LookupError, nlu_inbox.NluError, nlu_inbox.NotAllowed) as error:
        raise _fail(error) from error
    return nlu_inbox.decision_public(row)


@router.post("/export", response_model=ExportPublic)
def export(user: TrainerUser, session: SessionDep) -> ExportPublic:
    try:
        result = nlu_export.export(session=session, user=user)
    except nlu_inbox.NotAllowed as error:
        raise _fail(error) from error
    return ExportPublic.parse_obj(result.public())
