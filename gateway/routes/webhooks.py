"""Signed webhooks from partner systems (no bearer token; the signature is the credential).

- `POST /api/tickets/{id}/status` — the governance platform's status callback, signed
  with `GOVERNANCE_CALLBACK_SECRET` (scope `governance`).

`signed_webhook(setting, scope)` is the dependency every signed webhook uses (the
dissuasion leads too): it answers 401 for a wrong signature, a timestamp more than 300 s
off or a nonce seen before, and hands the route the verified raw body. What the body
says is validated after that: a signed but malformed body is a 422, never a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, Field, ValidationError

from casework import tickets
from casework.cases import CaseError
from gateway.deps import SessionDep
from integrations import signed_webhooks

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["webhooks"])
MAX_BODY = 64 * 1024  # no partner sends more; refuse before hashing megabytes
MAX_ID = 2**31 - 1  # the databases' INTEGER: a larger id is a 422, not a driver error


def signed_webhook(setting: str, scope: str) -> Callable[..., Awaitable[bytes]]:
    """A dependency that returns the raw body of a request signed with the secret in
    `settings.<setting>`, remembering its nonce under `scope`."""

    async def verified_body(request: Request, session: SessionDep) -> bytes:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large")
        try:
            signed_webhooks.verify(
                session=session,
                scope=scope,
                headers=request.headers,
                method=request.method,
                path=request.url.path,
                body=body,
                secret=getattr(request.app.state.settings, setting, None),
            )
        except signed_webhooks.SignatureRefused as refused:
            # The reason goes to our log only: a caller probing learns nothing.
            logger.warning("%s webhook %s refused: %s", scope, request.url.path, refused)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad signature") from refused
        # The nonce is spent even when the request fails later (unknown ticket, conflict):
        # nothing signed can be tried a second time.
        session.commit()
        return body

    return verified_body


Model = TypeVar("Model", bound=BaseModel)


def parse_signed_json(model: type[Model], body: bytes) -> Model:
    """A signed body as `model`, or ValidationError / ValueError for anything that is not a
    JSON object of that shape. pydantic 1.10's `parse_raw` turns a JSON list of pairs such
    as `[[null, null]]` into keyword arguments and raises TypeError (a 500): an object is
    checked for first."""
    data = json.loads(body)  # ValueError (JSONDecodeError, UnicodeDecodeError) when not JSON
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return model.parse_obj(data)


GovernanceBody = Annotated[
    bytes, Depends(signed_webhook("governance_callback_secret", "governance"))
]


class StatusCallback(BaseModel):
    """What the platform reports about a ticket."""

    status: str = Field(..., max_length=32)
    note: str | None = Field(None, max_length=2000)

    class Config:
        extra = "ignore"


class StatusCallbackAnswer(BaseModel):
    """Our answer: the ticket's status now, and whether this callback changed it."""

    ticket_id: int
    status: str
    changed: bool


@router.post("/tickets/{ticket_id}/status", response_model=StatusCallbackAnswer)
def platform_callback(
    ticket_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: GovernanceBody,
    request: Request,
    session: SessionDep,
) -> StatusCallbackAnswer:
    """Called by the governance platform when a ticket's status changes (no bearer token)."""
    try:
        callback = parse_signed_json(StatusCallback, body)
    except (ValidationError, ValueError) as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, "body must be {status, note}"
        ) from error
    try:
        change = tickets.apply_status(
            session=session, ticket_id=ticket_id, status=callback.status, note=callback.note or ""
        )
    except LookupError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown ticket") from error
    except tickets.TicketStatusConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
    except CaseError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from error
    session.commit()
    worker = getattr(request.app.state, "outbox", None)
    if change.changed and worker is not None:
        worker.wakeup.set()
    return StatusCallbackAnswer(
        ticket_id=change.ticket.id, status=change.ticket.status, changed=change.changed
    )
