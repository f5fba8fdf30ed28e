"""/api/cases — the officers' queue and everything they do with a case.

Each route calls one `casework.console` service for the signed-in user; scoping, auditing
and the public schemas live there. Out-of-scope cases answer 404 like missing ones.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from casework import case_queue, console, handling
from casework.case_queue import CaseFilters
from casework.schemas import (
    CaseDetail,
    CasePublic,
    CategoryIn,
    CloseIn,
    DivertIn,
    DivertResult,
    MePublic,
    NoteIn,
    NotePublic,
    OfficerPublic,
    ReplyIn,
    ReplyResult,
    TransferIn,
)
from gateway.deps import CurrentUser, OfficerUser, SessionDep, client_ip, domain_errors

router = APIRouter(prefix="/api", tags=["cases"])


Limit = Annotated[int, Query(ge=1, le=case_queue.MAX_LIMIT, description="page size (1–200)")]
Offset = Annotated[int, Query(ge=0, description="cases to skip")]


@router.get("/cases", response_model=list[CasePublic])
def list_cases(
    user: OfficerUser,
    session: SessionDep,
    request: Request,
    response: Response,
    status: Annotated[str, Query(description="active | open | claimed | closed")] = "active",
    mine: Annotated[bool, Query(description="claimed by me, or routed to me unclaimed")] = False,
    unclaimed: Annotated[bool, Query(description="not yet claimed (待认领)")] = False,
    urgent: Annotated[bool, Query(description="priority urgent only")] = False,
    category: Annotated[str | None, Query(description="a category code")] = None,
    community: Annotated[str | None, Query(max_length=case_queue.MAX_COMMUNITY_LENGTH)] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=case_queue.MAX_QUERY_LENGTH,
            description="words in the summary or in what the resident wrote",
        ),
    ] = None,
    limit: Limit = case_queue.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> list[CasePublic]:
    """The queue, most urgent first, one page at a time (the total in `X-Total-Count`)."""
    filters = CaseFilters(
        status=status,
        mine=mine,
        unclaimed=unclaimed,
        urgent=urgent,
        category=category,
        community=community,
        q=q,
    )
    with domain_errors():
        page = console.list_cases(
            session=session,
            user=user,
            filters=filters,
            limit=limit,
            offset=offset,
            client_ip=client_ip(request),
        )
    response.headers["X-Total-Count"] = str(page.total)
    return page.items


@router.get("/cases/{case_id}", response_model=CaseDetail)
def get_case(case_id: int, user: OfficerUser, session: SessionDep, request: Request) -> CaseDetail:
    """A case with its transcript (the read is audited)."""
    with domain_errors():
        return console.case_detail(
            session=session, user=user, case_id=case_id, client_ip=client_ip(request)
        )


@router.post("/cases/{case_id}/claim", response_model=CaseDetail)
def claim(case_id: int, user: OfficerUser, session: SessionDep, request: Request) -> CaseDetail:
    """Take the case (409 when someone else holds it)."""
    with domain_errors():
        return console.claim(
            session=session, user=user, case_id=case_id, client_ip=client_ip(request)
        )


@router.post("/cases/{case_id}/reply", response_model=ReplyResult)
def reply(
    case_id: int, body: ReplyIn, user: OfficerUser, session: SessionDep, request: Request
) -> ReplyResult:
    """Send the resident a message (claims the case); delivered through the outbox."""
    with domain_errors():
        sent = console.reply(session=session, user=user, case_id=case_id, text=body.text)
    session.commit()
    wake_outbox(request)
    return sent


@router.post("/cases/{case_id}/notes", response_model=NotePublic)
def add_note(case_id: int, body: NoteIn, user: OfficerUser, session: SessionDep) -> NotePublic:
    """A private note for colleagues (the resident never sees it)."""
    with domain_errors():
        return console.add_note(session=session, user=user, case_id=case_id, text=body.text)


@router.post("/cases/{case_id}/transfer", response_model=CasePublic)
def transfer(case_id: int, body: TransferIn, user: OfficerUser, session: SessionDep) -> CasePublic:
    """Hand the case to a desk or to one officer (exactly one of the two)."""
    with domain_errors():
        return console.transfer(
            session=session, user=user, case_id=case_id, desk=body.desk, officer_id=body.officer_id
        )


@router.post("/cases/{case_id}/divert", response_model=DivertResult)
def divert(
    case_id: int, body: DivertIn, user: OfficerUser, session: SessionDep, request: Request
) -> DivertResult:
    """A non-police matter: a ticket for the governance platform; the case closes."""
    with domain_errors():
        result = console.divert(
            session=session, user=user, case_id=case_id, kind=body.kind, note=body.note
        )
    session.commit()
    wake_outbox(request)
    return result


@router.post("/cases/{case_id}/close", response_model=CasePublic)
async def close(
    case_id: int, body: CloseIn, user: OfficerUser, session: SessionDep, request: Request
) -> CasePublic:
    """Close the case; the bot owns the conversation again and asks for a rating."""
    with domain_errors():
        closed = console.close(
            session=session, user=user, case_id=case_id, resolution=body.resolution
        )
    session.commit()
    # The bot owns the conversation again: un-pause it in Rasa (ConversationResumed).
    await request.app.state.rasa.resume(closed.openid)
    wake_outbox(request)
    return closed.case


@router.post("/cases/{case_id}/category", response_model=CasePublic)
def correct_category(
    case_id: int, body: CategoryIn, user: OfficerUser, session: SessionDep
) -> CasePublic:
    """Correct the triage category (the original feeds the trainers' inbox)."""
    with domain_errors():
        return console.correct_category(
            session=session, user=user, case_id=case_id, category=body.category
        )


@router.get("/me", tags=["auth"], response_model=MePublic)
def me(user: CurrentUser) -> MePublic:
    return console.me(user=user)


@router.get("/canned-replies", response_model=list[str])
def canned_replies(user: OfficerUser) -> list[str]:
    return handling.CANNED_REPLIES


@router.get("/officers", response_model=list[OfficerPublic])
def officers(user: OfficerUser, session: SessionDep) -> list[OfficerPublic]:
    """Whom a case can be transferred to."""
    return console.officers(session=session, user=user)


def wake_outbox(request: Request) -> None:
    worker = getattr(request.app.state, "outbox", None)
    if worker is not None:
        worker.wakeup.set()
