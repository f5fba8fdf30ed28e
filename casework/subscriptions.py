"""A resident's warning preferences (预警订阅): topics chosen, 退订 and coming back.

The resident is the actor (their openid); the bot side (我的社区, the 退订 intent) calls
these services, a later slice of issue 11. Every change is a consent: what the resident
agreed to and when is recorded in `warning_consents`, and the latest one on the
preference row. Until a resident chooses, every topic reaches them; an opt-out
(`warnings_opted_out_at`) stops every warning, and the broadcast loop honours it at
claim time (`casework.broadcasts`), so it holds even in the middle of a send.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.orm import Session

from casework.cases import CaseError
from casework.clock import aware, utcnow
from casework.conversations import conversation_for
from casework.models import WarningConsent, WarningPreference
from casework.vocabulary import WARNING_TOPIC_LABELS

TOPICS = tuple(WARNING_TOPIC_LABELS)
# The wording a resident agrees to (recorded with each change).
CONSENT_TOPICS = "同意接收镇海警民通推送的以下预警：{labels}。可随时回复“退订”取消。"
CONSENT_OPT_OUT = "退订镇海警民通的全部预警推送。"
CONSENT_OPT_IN = "重新接收镇海警民通的预警推送。"


class WarningPreferencesPublic(BaseModel):
    openid: str
    topics: list[str]  # the topics that reach the resident (all until they choose)
    chosen: bool  # False: no choice yet, every topic
    opted_out: bool
    warnings_opted_out_at: datetime | None
    consent_text: str | None
    consent_at: datetime | None


def encode_topics(topics: list[str] | tuple[str, ...]) -> str:
    """ ",fraud,weather,": one LIKE '%,fraud,%' finds a topic on SQLite and PostgreSQL."""
    return "," + ",".join(topics) + ","


def decode_topics(stored: str | None) -> list[str] | None:
    if stored is None:
        return None
    return [code for code in stored.split(",") if code]


def topic_pattern(topic: str) -> str:
    return f"%,{topic},%"


def _preference(session: Session, openid: str) -> tuple[int, WarningPreference | None]:
    resident_id = conversation_for(session=session, openid=openid).resident_id
    return resident_id, session.get(WarningPreference, resident_id)


def _public(openid: str, preference: WarningPreference | None) -> WarningPreferencesPublic:
    chosen = decode_topics(preference.topics) if preference is not None else None
    opted_out_at = aware(preference.warnings_opted_out_at) if preference else None
    return WarningPreferencesPublic(
        openid=openid,
        topics=list(TOPICS) if chosen is None else chosen,
        chosen=chosen is not None,
        opted_out=opted_out_at is not None,
        warnings_opted_out_at=opted_out_at,
        consent_text=preference.consent_text if preference else None,
        consent_at=aware(preference.consent_at) if preference else None,
    )


def _record(
    session: Session,
    *,
    resident_id: int,
    preference: WarningPreference | None,
    action: str,
    text: str,
    source: str,
    now: datetime,
) -> WarningPreference:
    if preference is None:
        preference = WarningPreference(resident_id=resident_id)
        session.add(preference)
    preference.consent_text, preference.consent_at, preference.updated_at = text, now, now
    session.add(
        WarningConsent(
            resident_id=resident_id,
            action=action,
            topics=preference.topics,
            text=text,
            source=source,
            at=now,
        )
    )
    session.flush()
    return preference


def preferences(*, session: Session, openid: str) -> WarningPreferencesPublic:
    return _public(openid, _preference(session, openid)[1])


def choose_topics(
    *,
    session: Session,
    openid: str,
    topics: list[str],
    source: str = "wechat",
    now: datetime | None = None,
) -> WarningPreferencesPublic:
    """The resident wants these topics (codes of `WARNING_TOPIC_LABELS`, at least one);
    choosing also opts back in — it is a new consent."""
    unknown = [topic for topic in topics if topic not in WARNING_TOPIC_LABELS]
    if unknown:
        raise CaseError(f"未知预警类别：{'、'.join(unknown)}")
    if not topics:
        raise CaseError("请至少选择一类预警；不再接收请选择退订")
    ordered = [code for code in TOPICS if code in topics]
    now = now or utcnow()
    resident_id, preference = _preference(session, openid)
    labels = "、".join(WARNING_TOPIC_LABELS[code] for code in ordered)
    if preference is None:
        preference = WarningPreference(resident_id=resident_id)
        session.add(preference)
    preference.topics = encode_topics(ordered)
    preference.warnings_opted_out_at = None
    preference = _record(
        session,
        resident_id=resident_id,
        preference=preference,
        action="topics",
        text=CONSENT_TOPICS.format(labels=labels),
        source=source,
        now=now,
    )
    return _public(openid, preference)


def opt_out(
    *, session: Session, openid: str, source: str = "wechat", now: datetime | None = None
) -> WarningPreferencesPublic:
    """退订: no warning reaches the resident from now on (also mid-send). Idempotent: the
    first opt-out's time is kept."""
    now = now or utcnow()
    resident_id, preference = _preference(session, openid)
    if preference is not None and preference.warnings_opted_out_at is not None:
        return _public(openid, preference)
    if preference is None:
        preference = WarningPreference(resident_id=resident_id)
        session.add(preference)
    preference.warnings_opted_out_at = now
    preference = _record(
        session,
        resident_id=resident_id,
        preference=preference,
        action="opt_out",
        text=CONSENT_OPT_OUT,
        source=source,
        now=now,
    )
    return _public(openid, preference)


def opt_in(
    *, session: Session, openid: str, source: str = "wechat", now: datetime | None = None
) -> WarningPreferencesPublic:
    """Back after 退订, with the topics chosen before (all if none were)."""
    now = now or utcnow()
    resident_id, preference = _preference(session, openid)
    if preference is None:
        preference = WarningPreference(resident_id=resident_id)
        session.add(preference)
    preference.warnings_opted_out_at = None
    preference = _record(
        session,
        resident_id=resident_id,
        preference=preference,
        action="opt_in",
        text=CONSENT_OPT_IN,
        source=source,
        now=now,
    )
    return _public(openid, preference)
