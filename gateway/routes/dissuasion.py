"""/api/dissuasion — precision dissuasion (精准劝阻) — and 紧急止付 on cases.

- `POST /api/dissuasion/leads`: the municipal warning platform's signed webhook
  (`DISSUASION_SECRET`, scope `dissuasion`; no bearer token) → 202 with the task ids.
  A signed body that is not `{"leads": [...]}` of valid leads is a 422 naming the field.
- `POST /api/dissuasion/leads/upload`: the platform's CSV export (commanders, admins and
  the 反诈 desk); bad rows are reported by line, good rows kept.
- Tasks: list (paginated: `limit` 1–200, default 50, `offset`; the total in
  `X-Total-Count`), detail (the read is audited), attempts, outcome (409 for
  `unreachable` without a visit attempt, and for a task already closed).
- `/api/cases/{id}/stop-payments`: stop-payment requests on a fraud case and their results.

Each route calls one `casework` service for the signed-in user; scoping is in there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    APIRouter,
    Depends,
    File,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi import status as http
from pydantic import ValidationError

from casework import dissuasion, dissuasion_csv, stop_payments
from casework.dissuasion_schemas import (
    AttemptIn,
    AttemptPublic,
    CaseStopPayments,
    LeadsAccepted,
    LeadsIn,
    OutcomeIn,
    StopPaymentIn,
    StopPaymentPublic,
    StopPaymentResultIn,
    TaskDetail,
    TaskPublic,
    UploadResult,
)
from gateway.deps import OfficerUser, SessionDep, client_ip, domain_errors
from gateway.routes.webhooks import MAX_ID, parse_signed_json, signed_webhook

router = APIRouter(prefix="/api/dissuasion", tags=["dissuasion"])
stop_payment_router = APIRouter(prefix="/api/cases", tags=["stop payments"])

LeadsBody = Annotated[bytes, Depends(signed_webhook("dissuasion_secret", "dissuasion"))]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]
CaseId = Annotated[int, Path(ge=1, le=MAX_ID)]
# The list endpoints' pagination convention: limit 1–200 (50), offset ≥ 0, the total in a
# header so the body stays a JSON list.
DEFAULT_PAGE, MAX_PAGE = 50, 200
TOTAL_HEADER = "X-Total-Count"


def _validation_message(error: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
        for item in error.errors()[:20]
    )
    shape = "{leads: [{external_id, phone, risk_type, risk_level, warned_at, source, ...}]}"
    return f"body must be {shape} — {problems}"


@router.post("/leads", status_code=http.HTTP_202_ACCEPTED, response_model=LeadsAccepted)
def receive_leads(body: LeadsBody, session: SessionDep, request: Request) -> LeadsAccepted:
    """The warning platform's leads; the same external_id again names the same task."""
    try:
        leads = parse_signed_json(LeadsIn, body)
    except ValidationError as error:
        raise HTTPException(
            http.HTTP_422_UNPROCESSABLE_ENTITY, _validation_message(error)
        ) from error
    except ValueError as error:  # not JSON, or not an object
        raise HTTPException(
            http.HTTP_422_UNPROCESSABLE_ENTITY,
            f"body must be a JSON object {{leads: [...]}} — {error}",
        ) from error
    with domain_errors():
        accepted = dissuasion.ingest_leads(session=session, leads=leads.leads, actor=None)
    session.commit()
    wake_dispatcher(request)
    return accepted


def wake_dispatcher(request: Request) -> None:
    """Announce the new tasks now, not at the next poll (this worker's dispatcher)."""
    dispatcher = getattr(request.app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.wakeup.set()


@router.post("/leads/upload", response_model=UploadResult)
def upload_leads(
    user: OfficerUser,
    session: SessionDep,
    request: Request,
    file: Annotated[UploadFile, File()],
) -> UploadResult:
    """A CSV export of leads (UTF-8 or GBK); rows with errors are reported by line."""
    data = file.file.read(dissuasion_csv.MAX_BYTES + 1)
    with domain_errors():
        result = dissuasion_csv.upload(session=session, user=user, data=data)
    session.commit()
    wake_dispatcher(request)
    return result


@router.get("/tasks", response_model=list[TaskPublic])
def list_tasks(
    user: OfficerUser,
    session: SessionDep,
    response: Response,
    status: str = "all",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> list[TaskPublic]:
    """One page of the tasks in scope (`status`: all | open | closed): open ones by
    deadline first, then closed ones, latest first (id breaks ties). The total is in the
    `X-Total-Count` header."""
    with domain_errors():
        page = dissuasion.task_page(
            session=session, user=user, status=status, limit=limit, offset=offset
        )
    response.headers[TOTAL_HEADER] = str(page.total)
    return page.items


@router.get("/tasks/{task_id}", response_model=TaskDetail)
def get_task(
    task_id: TaskId, user: OfficerUser, session: SessionDep, request: Request
) -> TaskDetail:
    """A task with the number to call and its attempts (the read is audited)."""
    with domain_errors():
        return dissuasion.task_detail(
            session=session, user=user, task_id=task_id, client_ip=client_ip(request)
        )


@router.post("/tasks/{task_id}/attempts", response_model=AttemptPublic)
def record_attempt(
    task_id: TaskId, body: AttemptIn, user: OfficerUser, session: SessionDep
) -> AttemptPublic:
    with domain_errors():
        return dissuasion.record_attempt(
            session=session,
            user=user,
            task_id=task_id,
            channel=body.channel,
            reached=body.reached,
            note=body.note,
        )


@router.post("/tasks/{task_id}/outcome", response_model=TaskPublic)
def set_outcome(
    task_id: TaskId, body: OutcomeIn, user: OfficerUser, session: SessionDep
) -> TaskPublic:
    """Close the task: dissuaded | defrauded (opens an urgent fraud case) | unreachable
    (409 without a visit attempt)."""
    with domain_errors():
        return dissuasion.set_outcome(
            session=session,
            user=user,
            task_id=task_id,
            outcome=body.outcome,
            amount_protected=body.amount_protected,
        )


# ------------------------------------------------------------------ 紧急止付 on a case


@stop_payment_router.get("/{case_id}/stop-payments", response_model=CaseStopPayments)
def case_stop_payments(case_id: CaseId, user: OfficerUser, session: SessionDep) -> CaseStopPayments:
    with domain_errors():
        return stop_payments.of_case(session=session, user=user, case_id=case_id)


@stop_payment_router.post("/{case_id}/stop-payments", response_model=StopPaymentPublic)
def request_stop_payment(
    case_id: CaseId, body: StopPaymentIn, user: OfficerUser, session: SessionDep
) -> StopPaymentPublic:
    with domain_errors():
        return stop_payments.request(
            session=session,
            user=user,
            case_id=case_id,
            bank=body.bank,
            account=body.account,
            amount=body.amount,
            requested_at=body.requested_at,
        )


@stop_payment_router.post(
    "/{case_id}/stop-payments/{stop_payment_id}/result", response_model=StopPaymentPublic
)
def stop_payment_result(
    case_id: CaseId,
    stop_payment_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: StopPaymentResultIn,
    user: OfficerUser,
    session: SessionDep,
) -> StopPaymentPublic:
    with domain_errors():
        return stop_payments.record_result(
            session=session,
            user=user,
            case_id=case_id,
            stop_payment_id=stop_payment_id,
            frozen=body.frozen,
            recovered=body.recovered,
        )
