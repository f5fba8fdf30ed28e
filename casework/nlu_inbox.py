"""The trainers' NLU inbox: which parsed resident messages deserve a trainer's look, and
what the trainer decided about each (annotate with an intent and entities, or discard).

Selection (over inbound messages Rasa parsed: direction "in", intent not null, not yet
annotated or discarded); every item carries the reasons it was selected:

- ``low_confidence``: confidence below 0.6;
- ``fallback``: the intent is ``nlu_fallback``;
- ``ambiguous``: the top two of the ranking are less than 0.1 apart;
- ``corrected``: the message started a case whose category an officer corrected
  (``Case.original_category`` set) — the resident's message equal to the case's
  ``details["first_message"]``, else their last message before the case was opened;
- ``sample``: a deterministic ~5 % sample (a hash of the message id), so the inbox also
  shows what the model gets *right*.

Privacy: texts and entity values go through :func:`casework.privacy.mask_pii` before they
leave this module. Masking can change a text's length (``6222 0212 …`` loses its spaces),
so the inbox shows the **masked** text, annotations' entity offsets refer to the masked
text, and the masked text is what is stored with the annotation and later exported — no
phone, ID-card or bank-card number ever reaches the training data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Session

from casework.audit import record as audit
from casework.clock import aware
from casework.models import Base, Case, Conversation, Message, User, utcnow
from casework.privacy import mask_pii
from casework.schemas import AnnotationPublic, InboxItemPublic, InboxPage, IntentsPublic
from casework.settings import REPO_ROOT
from casework.triage import TRIAGE_FILE, load_categories

# Recalibrated for the sentence-embedding classifier (issue 9; `bench/nlu_pipelines.py
# --chosen` prints the table): on the held-out set, 0.6 puts 7.8 % of messages in the inbox
# and catches 86 % of the model's triage mistakes; 0.7 doubles the volume (14 %) and
# catches no more, 0.5 catches only 29 %. (On the blind set, shown but never used to
# choose: 13 % of messages, 72 % of mistakes.)
LOW_CONFIDENCE = 0.6
AMBIGUOUS_MARGIN = 0.1
SAMPLE_PERCENT = 5
REASONS = ("low_confidence", "fallback", "ambiguous", "corrected", "sample")
REASON_LABELS = {
    "low_confidence": "置信度低",
    "fallback": "未识别",
    "ambiguous": "前两名接近",
    "corrected": "民警改过类别",
    "sample": "随机抽样",
}
ENTITY_NAMES = (
    "address",
    "time",
    "amount",
    "phone",
    "bank_account",
    "fraud_type",
    "platform",
    "injury",
    "legal_topic",
)
FAQ_QUESTIONS = REPO_ROOT / "nlu_data" / "faq" / "questions.yml"
TRAINER_ROLES = ("trainer", "admin")


class NluAnnotation(Base):
    """A trainer's decision on one resident message (revision 0004)."""

    __tablename__ = "nlu_annotations"
    __table_args__ = (UniqueConstraint("message_id", name="uq_nlu_annotations_message_id"),)

    id = Column(Integer, primary_key=True)
    message_id = Column(Integer, ForeignKey("messages.id"), nullable=False)
    text = Column(Text, nullable=False)  # the masked text; entity offsets refer to it
    intent = Column(String(100), nullable=True)  # None when discarded
    entities = Column(JSON, nullable=False, default=list)  # [{entity, start, end, value}]
    status = Column(String(16), nullable=False, index=True)  # annotated | discarded
    annotator_id = Column(Integer, ForeignKey("users.id"), nullable=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    exported_at = Column(DateTime(timezone=True), nullable=True)


class NluError(Exception):
    """Invalid annotation (unknown intent, bad entity span, unknown message ...)."""


class NotAllowed(Exception):
    """Only trainers and admins work in the inbox."""


@dataclass
class Filters:
    intent: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    since: date | None = None  # inclusive, UTC days
    until: date | None = None  # inclusive
    community: str | None = None
    reason: str | None = None


@dataclass
class InboxItem:
    id: int
    text: str  # masked
    intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]]  # [{name, confidence}], best first
    entities: list[dict[str, Any]]  # masked values; offsets into the masked text or None
    reasons: list[str]
    created_at: datetime | None
    community: str | None = None
    conversation_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        created = aware(self.created_at)
        return {
            "id": self.id,
            "text": self.text,
            "intent": self.intent,
            "confidence": self.confidence,
            "ranking": self.ranking,
            "top2": self.ranking[:2],
            "entities": self.entities,
            "reasons": self.reasons,
            "reason_labels": [REASON_LABELS[r] for r in self.reasons],
            "created_at": created,
            "community": self.community,
        }


# ------------------------------------------------------------------ intents


@lru_cache(maxsize=4)
def faq_topics(path: Path = FAQ_QUESTIONS) -> tuple[str, ...]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    topics = {
        str(block["intent"]).split("/", 1)[1]
        for block in data.get("nlu") or []
        if str(block.get("intent", "")).startswith("faq/")
    }
    return tuple(sorted(topics))


def intents(
    triage: Path = TRIAGE_FILE, faq_questions: Path = FAQ_QUESTIONS
) -> list[dict[str, str]]:
    """What a trainer may pick: every intent of bot/triage.yml (not the bare retrieval
    intent `faq` nor `nlu_fallback`) and every `faq/<topic>` of the FAQ questions."""
    categories = load_categories(triage)
    picked = [
        {"name": name, "category": category}
        for name, category in categories.items()
        if name not in ("faq", "nlu_fallback")
    ]
    picked += [{"name": f"faq/{topic}", "category": "faq"} for topic in faq_topics(faq_questions)]
    return picked


def check_intent(intent: str) -> str:
    intent = (intent or "").strip()
    if intent in {i["name"] for i in intents()}:
        return intent
    raise NluError(f"未知意图：{intent or '（空）'}")


# ------------------------------------------------------------------ selection


def _ranking(message: Message) -> list[dict[str, Any]]:
    parse = (message.media or {}).get("parse") or {}
    ranking = [
        {"name": r.get("name"), "confidence": r.get("confidence")}
        for r in parse.get("ranking") or []
        if isinstance(r, dict) and r.get("name")
    ]
    if not ranking and message.intent:
        ranking = [{"name": message.intent, "confidence": message.confidence}]
    return sorted(ranking, key=lambda r: -(r["confidence"] or 0.0))


def _masked_entities(message: Message, masked_text: str) -> list[dict[str, Any]]:
    parse = (message.media or {}).get("parse") or {}
    entities = []
    for raw in parse.get("entities") or []:
        if not isinstance(raw, dict) or not raw.get("entity"):
            continue
        value = mask_pii(str(raw.get("value") if raw.get("value") is not None else ""))
        start, end = raw.get("start"), raw.get("end")
        if not (
            isinstance(start, int)
            and isinstance(end, int)
            and 0 <= start < end <= len(masked_text)
            and masked_text[start:end] == value
        ):
            found = masked_text.find(value) if value else -1
            start, end = (found, found + len(value)) if found >= 0 else (None, None)
        entities.append({"entity": raw["entity"], "value": value, "start": start, "end": end})
    return entities


def sampled(message_id: int) -> bool:
    digest = hashlib.sha256(f"jmt-nlu-sample:{message_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < SAMPLE_PERCENT


def reasons_for(message: Message, ranking: list[dict[str, Any]], corrected: bool) -> list[str]:
    reasons = []
    if message.confidence is not None and message.confidence < LOW_CONFIDENCE:
        reasons.append("low_confidence")
    if message.intent == "nlu_fallback":
        reasons.append("fallback")
    if len(ranking) >= 2:
        first, second = ranking[0]["confidence"], ranking[1]["confidence"]
        if first is not None and second is not None and first - second < AMBIGUOUS_MARGIN:
            reasons.append("ambiguous")
    if corrected:
        reasons.append("corrected")
    if sampled(message.id):
        reasons.append("sample")
    return reasons


def corrected_message_ids(session: Session) -> set[int]:
    """The resident messages that started cases whose category an officer corrected."""
    found: set[int] = set()
    cases = session.execute(select(Case).where(Case.original_category.is_not(None))).scalars()
    for case in cases:
        conversation = session.execute(
            select(Conversation).where(Conversation.openid == case.sender_id)
        ).scalar_one_or_none()
        if conversation is None:
            continue
        inbound = select(Message.id).where(
            Message.conversation_id == conversation.id, Message.direction == "in"
        )
        first = (case.details or {}).get("first_message")
        match = None
        if first:
            match = session.execute(
                inbound.where(Message.content == first).order_by(Message.id.desc()).limit(1)
            ).scalar_one_or_none()
        if match is None and case.created_at is not None:
            match = session.execute(
                inbound.where(Message.created_at <= case.created_at)
                .order_by(Message.created_at.desc(), Message.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        if match is not None:
            found.add(match)
    return found


def _communities(session: Session, openids: set[str]) -> dict[str, str]:
    """openid → the community of their open case, else of their latest case with one."""
    if not openids:
        return {}
    rows = session.execute(
        select(Case.sender_id, Case.community, Case.status)
        .where(Case.sender_id.in_(openids), Case.community.is_not(None))
        .order_by(Case.id)
    ).all()
    result: dict[str, str] = {}
    open_found: set[str] = set()
    for openid, community, status in rows:
        if status != "closed":
            result[openid] = community
            open_found.add(openid)
        elif openid not in open_found:
            result[openid] = community
    return result


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def check_role(user: User | None) -> None:
    """Trainers and admins; `None` is the `jmt` command line (shell access to the server)."""
    if user is not None and user.role not in TRAINER_ROLES:
        raise NotAllowed("仅训练师和管理员可使用语料标注")


def inbox(
    *,
    session: Session,
    user: User | None,
    filters: Filters | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[InboxItem], int]:
    """Pending items (newest first) and how many there are in all, masked."""
    check_role(user)
    filters = filters or Filters()
    if filters.reason is not None and filters.reason not in REASONS:
        raise NluError(f"未知筛选原因：{filters.reason}")
    decided = select(NluAnnotation.message_id)
    query = (
        select(Message, Conversation.openid)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.direction == "in",
            Message.intent.is_not(None),
            Message.id.not_in(decided),
        )
    )
    if filters.intent:
        query = query.where(Message.intent == filters.intent)
    if filters.min_confidence is not None:
        query = query.where(Message.confidence >= filters.min_confidence)
    if filters.max_confidence is not None:
        query = query.where(Message.confidence <= filters.max_confidence)
    if filters.since is not None:
        query = query.where(Message.created_at >= _day_start(filters.since))
    if filters.until is not None:
        query = query.where(Message.created_at < _day_start(filters.until + timedelta(days=1)))
    if filters.community:
        residents = select(Case.sender_id).where(Case.community == filters.community)
        query = query.where(Conversation.openid.in_(residents))
    rows = session.execute(query.order_by(Message.created_at.desc(), Message.id.desc())).all()
    corrected = corrected_message_ids(session)
    communities = _communities(session, {openid for _, openid in rows})
    items = []
    for message, openid in rows:
        ranking = _ranking(message)
        reasons = reasons_for(message, ranking, message.id in corrected)
        if not reasons or (filters.reason and filters.reason not in reasons):
            continue
        text = mask_pii(message.content or "")
        items.append(
            InboxItem(
                id=message.id,
                text=text,
                intent=message.intent,
                confidence=message.confidence,
                ranking=ranking,
                entities=_masked_entities(message, text),
                reasons=reasons,
                created_at=message.created_at,
                community=communities.get(openid),
                conversation_id=message.conversation_id,
            )
        )
    return items[offset : offset + limit], len(items)


def inbox_page(
    *,
    session: Session,
    user: User | None,
    filters: Filters | None = None,
    limit: int = 50,
    offset: int = 0,
) -> InboxPage:
    """One page of the inbox as the trainers' API serves it."""
    items, total = inbox(session=session, user=user, filters=filters, limit=limit, offset=offset)
    return InboxPage(
        items=[InboxItemPublic.parse_obj(item.public()) for item in items], total=total
    )


def intent_choices(*, user: User | None) -> IntentsPublic:
    """What the annotation picker offers."""
    check_role(user)
    return IntentsPublic.parse_obj({"intents": intents(), "entities": list(ENTITY_NAMES)})


def decision_public(row: NluAnnotation) -> AnnotationPublic:
    return AnnotationPublic(
        message_id=row.message_id,
        status=row.status,
        intent=row.intent,
        text=row.text,
        entities=row.entities or [],
    )


# ------------------------------------------------------------------ decisions


def _parsed_message(session: Session, message_id: int) -> Message:
    message = session.get(Message, message_id)
    if message is None or message.direction != "in" or message.intent is None:
        raise LookupError("消息不存在或未经识别")
    return message


def check_entities(text: str, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{entity, start, end}] over the masked text → sorted, with the value it covers."""
    checked = []
    for raw in entities or []:
        if not isinstance(raw, dict):
            raise NluError("实体格式错误")
        name, start, end = raw.get("entity"), raw.get("start"), raw.get("end")
        if name not in ENTITY_NAMES:
            raise NluError(f"未知实体：{name}")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            raise NluError(f"实体位置无效：{name} {start}–{end}")
        value = text[start:end]
        if value != value.strip():
            raise NluError(f"实体首尾不能是空格：{value!r}")
        checked.append({"entity": name, "start": start, "end": end, "value": value})
    checked.sort(key=lambda e: (e["start"], e["end"]))
    for before, after in zip(checked, checked[1:], strict=False):
        if after["start"] < before["end"]:
            raise NluError(f"实体重叠：{before['value']} / {after['value']}")
    return checked


def _decision(session: Session, message_id: int) -> NluAnnotation | None:
    row = session.execute(
        select(NluAnnotation).where(NluAnnotation.message_id == message_id)
    ).scalar_one_or_none()
    if row is not None and row.exported_at is not None:
        raise NluError("该条已导出到训练数据，不能再修改")
    return row


def annotate(
    *,
    session: Session,
    user: User,
    message_id: int,
    intent: str,
    entities: list[dict[str, Any]] | None = None,
) -> NluAnnotation:
    """Record the right intent (and entities over the masked text) for a message.
    Annotating again before the export replaces the earlier decision."""
    check_role(user)
    message = _parsed_message(session, message_id)
    intent = check_intent(intent)
    text = mask_pii(message.content or "")
    if not text.strip():
        raise NluError("空消息不能标注")
    checked = check_entities(text, entities or [])
    row = _decision(session, message_id)
    if row is None:
        row = NluAnnotation(message_id=message_id)
        session.add(row)
    row.text, row.intent, row.entities, row.status = text, intent, checked, "annotated"
    row.annotator_id, row.created_at = user.id, utcnow()
    session.flush()
    audit(
        session,
        user,
        "nlu_annotate",
        "message",
        message_id,
        intent=intent,
        predicted=message.intent,
        entities=[e["entity"] for e in checked],
    )
    return row


def discard(*, session: Session, user: User, message_id: int) -> NluAnnotation:
    """Take a message out of the inbox without teaching anything from it."""
    check_role(user)
    message = _parsed_message(session, message_id)
    row = _decision(session, message_id)
    if row is None:
        row = NluAnnotation(message_id=message_id)
        session.add(row)
    row.text, row.intent, row.entities, row.status = (
        mask_pii(message.content or ""),
        None,
        [],
        ("discarded"),
    )
    row.annotator_id, row.created_at = user.id, utcnow()
    session.flush()
    audit(session, user, "nlu_discard", "message", message_id, predicted=message.intent)
    return row
