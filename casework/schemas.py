"""Public schemas: what the domain layer hands to the web app (and so to the console).

Routes return these and declare them as `response_model`, so ORM objects never leave
`casework` and OpenAPI (/docs) documents the console API by itself. Field names are the
ones the console's scripts and ../shared/CONTRACT.md rely on: rename none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

# ------------------------------------------------------------------ pages

Item = TypeVar("Item")


@dataclass(frozen=True)
class ListPage(Generic[Item]):
    """One page of a list route: the body stays a JSON list of `items`; `total` (all that
    match, across pages) travels in the `X-Total-Count` header."""

    items: list[Item]
    total: int


# ------------------------------------------------------------------ people


class PersonRef(BaseModel):
    """An officer as a case names them."""

    id: int
    name: str


class OfficerPublic(BaseModel):
    id: int
    name: str
    role: str
    desk: str | None
    community: str | None


class MePublic(BaseModel):
    id: int
    username: str
    name: str
    role: str
    desk: str | None
    community: str | None


# ------------------------------------------------------------------ conversations


class MessagePublic(BaseModel):
    id: int
    direction: str = Field(description="in (from the resident) | out (to the resident)")
    msg_type: str
    content: str
    media: dict[str, Any] = Field(default_factory=dict)
    status: str
    intent: str | None
    confidence: float | None
    sender: str | None = Field(description="outbound: bot | officer:<name> | system")
    delivery: str | None = Field(description="outbound: passive | outbox")
    created_at: datetime


class ConversationPublic(BaseModel):
    id: int
    openid: str
    owner: str = Field(description="bot | officer: who answers the resident now")
    location_label: str | None
    location_lat: float | None
    location_lng: float | None
    created_at: datetime
    updated_at: datetime


class ConversationDetail(ConversationPublic):
    messages: list[MessagePublic]


class CaseConversation(BaseModel):
    """The resident's conversation as a case shows it."""

    id: int
    openid: str
    owner: str
    location_label: str | None
    location_lat: float | None
    location_lng: float | None


# ------------------------------------------------------------------ tickets


class TicketPublic(BaseModel):
    id: int
    kind: str
    kind_label: str | None
    status: str
    summary: str
    street: str | None
    community: str | None
    location: str | None
    case_id: int | None
    linked_to_id: int | None
    sent_at: datetime | None
    status_note: str | None
    created_at: datetime
    due_at: datetime | None
    resolved_at: datetime | None
    overdue: bool
    send_error: str | None


# ------------------------------------------------------------------ cases


class CasePublic(BaseModel):
    """A case as the queue lists it."""

    id: int
    category: str
    category_label: str
    priority: str
    status: str
    reason: str
    desk: str | None
    summary: str
    street: str | None
    community: str | None
    assigned_to: PersonRef | None
    claimed_by: PersonRef | None
    created_at: datetime
    due_at: datetime | None
    first_reply_at: datetime | None
    closed_at: datetime | None
    seconds_left: int | None = Field(description="until the first-reply target; None once met")
    overdue: bool
    notify_status: str | None
    notify_error: str | None
    rating: int | None
    resolution: str | None
    unread: int = Field(
        0, description="the resident's messages since the reader last opened or answered it"
    )


class NotePublic(BaseModel):
    id: int
    author: str
    text: str
    created_at: datetime


class CaseHistoryItem(BaseModel):
    """Another case of the same resident (only those the reader may see)."""

    id: int
    category_label: str
    status: str
    summary: str
    created_at: datetime


class CaseDetail(CasePublic):
    details: dict[str, Any]
    location: str | None
    # None: the person is not a WeChat resident (a dissuasion lead's 已被骗 case)
    conversation: CaseConversation | None
    transcript: list[MessagePublic]
    notes: list[NotePublic]
    history: list[CaseHistoryItem]
    tickets: list[TicketPublic]


class ReplyIn(BaseModel):
    text: str


class NoteIn(BaseModel):
    text: str


class TransferIn(BaseModel):
    desk: str | None = None
    officer_id: int | None = None


class DivertIn(BaseModel):
    kind: str
    note: str = ""


class CloseIn(BaseModel):
    resolution: str


class CategoryIn(BaseModel):
    category: str


class ReplyResult(BaseModel):
    message_id: int
    outbox_id: int


class DivertResult(BaseModel):
    ticket_id: int


# ------------------------------------------------------------------ health


class HealthPublic(BaseModel):
    status: str = Field(description="ok | degraded")
    database: str
    rasa: str
    action_server: str


# ------------------------------------------------------------------ metrics


class MetricsPublic(BaseModel):
    """The metrics page's numbers (see casework.metrics.compute for each section)."""

    window: dict[str, str]
    timely: dict[str, Any]
    timely_by_priority: dict[str, Any]
    first_reply_minutes: dict[str, Any]
    satisfaction: dict[str, Any]
    bot_resolved_share: dict[str, Any]
    volume_by_category: dict[str, int]
    volume_by_day: list[dict[str, Any]]
    tickets: dict[str, Any]
    per_officer: list[dict[str, Any]]
    per_community: list[dict[str, Any]]
    # 精准劝阻 and 紧急止付 (casework.dissuasion_metrics)
    dissuasion: dict[str, Any] = Field(default_factory=dict)
    # 预警推送 (casework.warning_metrics)
    warnings: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------ the trainers' inbox


class InboxItemPublic(BaseModel):
    id: int
    text: str = Field(description="masked: phone, ID-card and bank-card numbers hidden")
    intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]]
    top2: list[dict[str, Any]]
    entities: list[dict[str, Any]]
    reasons: list[str]
    reason_labels: list[str]
    created_at: datetime | None
    community: str | None


class InboxPage(BaseModel):
    items: list[InboxItemPublic]
    total: int


class IntentChoice(BaseModel):
    name: str
    category: str


class IntentsPublic(BaseModel):
    intents: list[IntentChoice]
    entities: list[str]


class AnnotationPublic(BaseModel):
    message_id: int
    status: str
    intent: str | None
    text: str
    entities: list[dict[str, Any]]


class ExportPublic(BaseModel):
    written: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    files: list[str]
    count: int


# ------------------------------------------------------------------ operations


class BacklogPublic(BaseModel):
    """Work waiting, for the operators' /metrics gauges (counts only, nobody's data)."""

    outbox: dict[str, int] = Field(description="customer-service messages not yet sent, by status")
    tickets: dict[str, int] = Field(
        description="governance tickets still open or failed, by status"
    )
    open_cases: dict[str, int] = Field(description="cases not closed, by priority")
    notifications: dict[str, int] = Field(
        description="DingTalk notifications of cases not yet sent, by status (pending, failed)"
    )
