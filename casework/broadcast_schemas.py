"""Public schemas of warnings (预警推送): what the console sends and what it reads back."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from casework.schemas import PersonRef

TITLE_MAX = 64
TEXT_MAX = 600
OPENIDS_MAX = 10_000
DAYS_MAX = 365


class ReportedIn(BaseModel):
    """Residents who reported a case of `category` in the last `days` days."""

    category: str = Field(..., min_length=1, max_length=32)
    days: int = Field(..., ge=1, le=DAYS_MAX)


class AudienceIn(BaseModel):
    """Who a broadcast is for: the union of the selectors given (at least one)."""

    district: bool = False  # every resident of the district
    streets: list[str] = Field(default_factory=list, max_items=50)
    communities: list[str] = Field(default_factory=list, max_items=200)
    openids: list[str] = Field(default_factory=list, max_items=OPENIDS_MAX)
    reported: ReportedIn | None = None

    class Config:
        extra = "forbid"


class DraftIn(BaseModel):
    """A draft's every field, as `PUT /api/broadcasts/{id}` rewrites it."""

    topic: str = Field(..., min_length=1, max_length=16)
    title: str = Field(..., min_length=1, max_length=TITLE_MAX)
    text: str = Field(..., min_length=1, max_length=TEXT_MAX)
    audience: AudienceIn
    send_at: datetime | None = None  # None: now

    class Config:
        extra = "forbid"


class BroadcastIn(DraftIn):
    draft: bool = False  # True: kept as a draft (草稿), sent later with …/send


class SendIn(BaseModel):
    """Releasing a draft: now, or at `send_at`."""

    send_at: datetime | None = None

    class Config:
        extra = "forbid"


class PreviewPublic(BaseModel):
    """How the warning looks in WeChat: as a template message (residents who have not
    written in 48 h) and as a customer-service / mass text message."""

    template: str
    text: str


class PreviewIn(BaseModel):
    topic: str = Field(..., min_length=1, max_length=16)
    title: str = Field(..., min_length=1, max_length=TITLE_MAX)
    text: str = Field(..., min_length=1, max_length=TEXT_MAX)
    send_at: datetime | None = None


class BroadcastPublic(BaseModel):
    id: int
    topic: str
    topic_label: str
    title: str
    text: str
    audience: AudienceIn
    send_at: datetime
    status: str
    pause_reason: str | None
    created_by: PersonRef | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    preview: PreviewPublic


class MassJobPublic(BaseModel):
    """One mass send by user tag and what WeChat's MASSSENDJOBFINISH said of it."""

    msg_id: str
    community: str | None
    status: str
    total: int | None = None
    sent: int | None = None
    errors: int | None = None


class BroadcastDetail(BroadcastPublic):
    """A broadcast with its figures (`targeted`, `sent`, `failed`, `opted_out` …)."""

    targeted: int  # residents the audience selected (WeChat users of the account)
    pending: int  # still in the queue
    sent: int
    failed: int
    failed_by_reason: dict[str, int]
    opted_out: int  # 退订 or not subscribed to the topic (also mid-send)
    skipped: int  # unsubscribed from the account, cancelled …
    by_channel: dict[str, int]  # sent, per channel
    replies_24h: int  # targeted residents who wrote within 24 h after their send
    mass_jobs: list[MassJobPublic]


class BroadcastPage(BaseModel):
    items: list[BroadcastPublic]
    total: int
    limit: int
    offset: int
