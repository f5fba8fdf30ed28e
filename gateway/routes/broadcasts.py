"""/api/broadcasts — warnings (预警推送) composed in the console and their figures.

- `POST /api/broadcasts` `{"topic", "title", "text", "audience": {"district"?,
  "communities", "streets", "openids", "reported"?}, "send_at"?, "draft"?}` → the
  broadcast (its `id` first); officers only to their own community (403), bad input 422.
  With `"draft": true` it is kept as a draft (草稿): `PUT /api/broadcasts/{id}` rewrites
  it, `POST /api/broadcasts/{id}/send` `{"send_at"?}` sends it now or at a time (409 for
  anything that is no longer a draft); cancel discards it.
- `GET /api/broadcasts` (paginated), `GET /api/broadcasts/{id}` (figures: `targeted`,
  `sent`, `failed`, `opted_out` …), `POST /api/broadcasts/{id}/pause|resume|cancel`
  (409 from a state that does not allow it).
- `GET /api/broadcasts/preview?topic=&title=&text=`: how it looks in WeChat.

Each route calls one `casework.broadcasts` service for the signed-in user.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from casework import broadcasts
from casework.broadcast_schemas import (
    TEXT_MAX,
    TITLE_MAX,
    BroadcastDetail,
    BroadcastIn,
    BroadcastPage,
    BroadcastPublic,
    DraftIn,
    PreviewPublic,
    SendIn,
)
from gateway.deps import CurrentUser, SessionDep, domain_errors
from gateway.routes.webhooks import MAX_ID

router = APIRouter(prefix="/api/broadcasts", tags=["broadcasts"])
BroadcastId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _wake(request: Request) -> None:
    """Start a broadcast due now at once, not at the next poll (this worker's loop)."""
    loop = getattr(request.app.state, "broadcaster", None)
    if loop is not None:
        loop.wakeup.set()


@router.post("", response_model=BroadcastPublic)
def compose(
    body: BroadcastIn, user: CurrentUser, session: SessionDep, request: Request
) -> BroadcastPublic:
    with domain_errors():
        created = broadcasts.compose(
            session=session,
            user=user,
            topic=body.topic,
            title=body.title,
            text=body.text,
            audience=body.audience,
            send_at=body.send_at,
            draft=body.draft,
        )
    session.commit()
    _wake(request)
    return created


@router.get("", response_model=BroadcastPage)
def list_broadcasts(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> BroadcastPage:
    with domain_errors():
        return broadcasts.list_broadcasts(
            session=session, user=user, limit=limit, offset=offset, status=status
        )


@router.get("/preview", response_model=PreviewPublic)
def preview(
    user: CurrentUser,
    topic: Annotated[str, Query(min_length=1, max_length=16)],
    title: Annotated[str, Query(min_length=1, max_length=TITLE_MAX)],
    text: Annotated[str, Query(min_length=1, max_length=TEXT_MAX)],
) -> PreviewPublic:
    with domain_errors():
        return broadcasts.preview_for(user=user, topic=topic, title=title, text=text)


@router.get("/{broadcast_id}", response_model=BroadcastDetail)
def detail(broadcast_id: BroadcastId, user: CurrentUser, session: SessionDep) -> BroadcastDetail:
    with domain_errors():
        return broadcasts.detail(session=session, user=user, broadcast_id=broadcast_id)


@router.post("/{broadcast_id}/pause", response_model=BroadcastDetail)
def pause(broadcast_id: BroadcastId, user: CurrentUser, session: SessionDep) -> BroadcastDetail:
    with domain_errors():
        return broadcasts.pause(session=session, user=user, broadcast_id=broadcast_id)


@router.post("/{broadcast_id}/resume", response_model=BroadcastDetail)
def resume(
    broadcast_id: BroadcastId, user: CurrentUser, session: SessionDep, request: Request
) -> BroadcastDetail:
    with domain_errors():
        resumed = broadcasts.resume(session=session, user=user, broadcast_id=broadcast_id)
    session.commit()
    _wake(request)
    return resumed


@router.post("/{broadcast_id}/cancel", response_model=BroadcastDetail)
def cancel(broadcast_id: BroadcastId, user: CurrentUser, session: SessionDep) -> BroadcastDetail:
    with domain_errors():
        return broadcasts.cancel(session=session, user=user, broadcast_id=broadcast_id)


@router.put("/{broadcast_id}", response_model=BroadcastPublic)
def update_draft(
    broadcast_id: BroadcastId, body: DraftIn, user: CurrentUser, session: SessionDep
) -> BroadcastPublic:
    with domain_errors():
        return broadcasts.update_draft(
            session=session,
            user=user,
            broadcast_id=broadcast_id,
            topic=body.topic,
            title=body.title,
            text=body.text,
            audience=body.audience,
            send_at=body.send_at,
        )


@router.post("/{broadcast_id}/send", response_model=BroadcastDetail)
def send_draft(
    broadcast_id: BroadcastId,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    body: SendIn | None = None,
) -> BroadcastDetail:
    with domain_errors():
        sent = broadcasts.send_draft(
            session=session,
            user=user,
            broadcast_id=broadcast_id,
            send_at=body.send_at if body else None,
        )
    session.commit()
    _wake(request)
    return sent
