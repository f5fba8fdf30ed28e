"""Public schemas of precision dissuasion (精准劝阻) and 紧急止付: what the domain hands to
the web app. Input shapes of ../shared/CONTRACT.md are kept exactly (extra keys ignored).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from pydantic import BaseModel, Field, condecimal, constr, validator

from casework.clock import utcnow
from casework.residents import PhoneError, normalise_phone
from casework.schemas import PersonRef
from casework.vocabulary import RISK_LEVEL_LABELS

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
FUTURE_SKEW = timedelta(days=1)  # the platform's clock may be off; a later time is wrong


def plausible(value: datetime, name: str) -> datetime:
    """The time in UTC (SQLite keeps no zone), or ValueError when it cannot be a real
    warning's or request's time (year 1 would not even convert)."""
    try:
        utc = value.astimezone(timezone.utc)
    except (OverflowError, ValueError) as error:
        raise ValueError(f"{name} is out of range") from error
    if not EARLIEST <= utc <= utcnow() + FUTURE_SKEW:
        raise ValueError(f"{name} must be a real time, not before 2000 nor in the future")
    return utc


Yuan = condecimal(ge=Decimal(0), max_digits=14, decimal_places=2)  # up to ¥999,999,999,999.99


class LeadIn(BaseModel):
    """One lead of the municipal warning platform (CONTRACT: POST /api/dissuasion/leads)."""

    external_id: constr(strip_whitespace=True, min_length=1, max_length=128)  # type: ignore[valid-type]
    phone: constr(strip_whitespace=True, min_length=1, max_length=32)  # type: ignore[valid-type]
    name: constr(strip_whitespace=True, max_length=64) | None = None  # type: ignore[valid-type]
    address: constr(strip_whitespace=True, max_length=500) | None = None  # type: ignore[valid-type]
    risk_type: constr(strip_whitespace=True, min_length=1, max_length=64)  # type: ignore[valid-type]
    risk_level: str = Field(..., description="high | medium | low")
    warned_at: datetime = Field(..., description="ISO 8601 with a time zone")
    source: constr(strip_whitespace=True, min_length=1, max_length=64)  # type: ignore[valid-type]

    class Config:
        extra = "ignore"

    @validator("phone")
    def _phone(cls, value: str) -> str:  # noqa: N805
        try:
            return normalise_phone(value)
        except PhoneError as error:
            raise ValueError(str(error)) from error

    @validator("risk_level")
    def _level(cls, value: str) -> str:  # noqa: N805 — pydantic's validator signature
        level = value.strip().lower()
        if level not in RISK_LEVEL_LABELS:
            raise ValueError("risk_level must be high, medium or low")
        return level

    @validator("warned_at")
    def _aware(cls, value: datetime) -> datetime:  # noqa: N805
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("warned_at needs a time zone (e.g. 2026-12-05T10:00:00+08:00)")
        return plausible(value, "warned_at")


class LeadsIn(BaseModel):
    leads: list[LeadIn] = Field(..., min_items=1, max_items=200)  # and at most 64 KB

    class Config:
        extra = "ignore"


class LeadsAccepted(BaseModel):
    """The task of each lead, in the order sent; a lead sent again names its first task."""

    task_ids: list[int]
    created: int
    duplicates: int


class RowError(BaseModel):
    line: int = Field(description="line number in the uploaded file (the header is line 1)")
    error: str


class UploadResult(LeadsAccepted):
    rows: int
    errors: list[RowError]


class AttemptIn(BaseModel):
    channel: str = Field(..., description="phone | wechat | visit")
    reached: bool
    note: constr(max_length=2000) = ""  # type: ignore[valid-type]

    class Config:
        extra = "ignore"


class OutcomeIn(BaseModel):
    outcome: str = Field(..., description="dissuaded | defrauded | unreachable")
    amount_protected: Yuan | None = None  # type: ignore[valid-type]

    class Config:
        extra = "ignore"


class AttemptPublic(BaseModel):
    id: int
    task_id: int
    channel: str
    reached: bool
    note: str
    officer: PersonRef | None
    at: datetime


class TaskPublic(BaseModel):
    """A dissuasion task as the list shows it (the phone masked)."""

    id: int
    lead_id: int
    source: str
    external_id: str
    phone_masked: str
    name: str | None
    risk_type: str
    risk_type_original: str | None = Field(description="the platform's wording, for 其他")
    risk_level: str
    warned_at: datetime
    street: str | None
    community: str | None
    assignee: PersonRef | None
    desk: str | None
    status: str = Field(description="open | closed")
    deadline_at: datetime
    seconds_left: int | None = Field(description="until the deadline; None once closed")
    overdue: bool
    created_at: datetime
    outcome: str | None
    amount_protected: Decimal | None = Field(description="元")
    closed_at: datetime | None
    closed_by: PersonRef | None
    case_id: int | None = Field(description="the urgent fraud case of a defrauded person")
    escalated_at: datetime | None
    resident_matched: bool = Field(description="a WeChat resident registered this mobile")
    resident_warned_at: datetime | None
    notice_status: str | None = Field(description="the DingTalk announcement: pending|sent|failed")


class TaskPage(BaseModel):
    """One page of the task list and the number of tasks in all (X-Total-Count)."""

    total: int
    items: list[TaskPublic]


class TaskDetail(TaskPublic):
    """One task for the officer working it: the number to call and every attempt (audited)."""

    phone: str
    address: str | None
    attempts: list[AttemptPublic]


class StopPaymentIn(BaseModel):
    bank: constr(strip_whitespace=True, min_length=1, max_length=64)  # type: ignore[valid-type]
    account: constr(strip_whitespace=True, min_length=1, max_length=64)  # type: ignore[valid-type]
    amount: Yuan  # type: ignore[valid-type]
    requested_at: datetime | None = Field(None, description="default: now; with a time zone")

    class Config:
        extra = "ignore"

    @validator("requested_at")
    def _aware(cls, value: datetime | None) -> datetime | None:  # noqa: N805
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("requested_at needs a time zone")
        return plausible(value, "requested_at")


class StopPaymentResultIn(BaseModel):
    frozen: Yuan | None = None  # type: ignore[valid-type]
    recovered: Yuan | None = None  # type: ignore[valid-type]

    class Config:
        extra = "ignore"


class StopPaymentPublic(BaseModel):
    id: int
    case_id: int
    bank: str
    account_masked: str
    amount: Decimal = Field(description="元, asked to stop")
    requested_at: datetime
    requested_by: PersonRef | None
    frozen: Decimal | None
    recovered: Decimal | None
    result_at: datetime | None
    result_by: PersonRef | None
    seconds_from_first_message: int | None = Field(
        description="from the resident's first message about the case to this request"
    )


class CaseStopPayments(BaseModel):
    case_id: int
    first_message_at: datetime | None = Field(
        description="the resident's first message of this report (None: no message)"
    )
    seconds_to_first_request: int | None
    amount: Decimal
    frozen: Decimal
    recovered: Decimal
    items: list[StopPaymentPublic]
