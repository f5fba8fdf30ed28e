"""Warnings (预警推送): compose, read, pause, resume and cancel broadcasts; their figures.

Commanders and admins send anywhere; an officer only to their own community (an audience
of exactly `communities: [their community]`, anything else is 403); trainers not at all.
An officer reads and steers the broadcasts they composed or that target their community;
others are 404 to them, like a missing one.

States: draft ──send──► scheduled ──(send_at due, `broadcast_queue.start_due`)──►
sending ──► done; scheduled | sending ──pause──► paused ──resume──► scheduled | sending;
anything not finished ──cancel──► cancelled (deliveries still queued become `skipped`).

A draft (草稿) is a warning composed but not yet released: a commander prepares the
typhoon or scam-wave text ahead, has it checked, edits it (`update_draft`), and sends it
now or at a time (`send_draft`). The queue never touches a draft; the sender is checked
again when it is sent, so an officer cannot release a draft beyond their community. The sending
itself (audience resolution, claims, channels, throttling) is `casework.broadcast_queue`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from casework import audit, cases, handling
from casework.broadcast_schemas import (
    TEXT_MAX,
    TITLE_MAX,
    AudienceIn,
    BroadcastDetail,
    BroadcastPage,
    BroadcastPublic,
    MassJobPublic,
    PreviewPublic,
)
from casework.cases import CaseError
from casework.clock import aware, beijing, utcnow
from casework.gazetteer import STREETS
from casework.handling import Conflict, NotAllowed, NotFound
from casework.models import Broadcast, BroadcastDelivery, Conversation, Message, User
from casework.residents import COMMUNITIES
from casework.schemas import PersonRef
from casework.vocabulary import WARNING_TOPIC_LABELS

SENDER_ROLES = ("officer", "commander", "admin")
# A send_at a little in the past is "now" (the console's clock, the request's travel).
CLOCK_SKEW = timedelta(minutes=1)
REPLY_WINDOW = timedelta(hours=24)
PAGE_MAX = 100
ACCOUNT_NAME = "镇海警民通"


# ------------------------------------------------------------------ how it looks in WeChat


# The bot understands 退订 / 取消提醒 in any wording (the unsubscribe_warnings intent), and
# 订阅提醒 brings the warnings back: every warning says so.
OPT_OUT_HINT = "不想再收到预警？回复“退订”即可，回复“订阅提醒”可恢复。"


def template_data(*, topic: str, title: str, text: str, at: datetime) -> dict[str, Any]:
    """The template message's fields (a 预警通知 template: first, keyword1 预警类型,
    keyword2 发布时间, remark); the template itself is WECHAT_WARNING_TEMPLATE_ID."""
    return {
        "first": {"value": f"【{WARNING_TOPIC_LABELS.get(topic, topic)}】{title}"},
        "keyword1": {"value": WARNING_TOPIC_LABELS.get(topic, topic)},
        "keyword2": {"value": beijing(at).strftime("%Y-%m-%d %H:%M")},
        "remark": {"value": f"{text}\n{OPT_OUT_HINT}"},
    }


def message_text(*, topic: str, title: str, text: str) -> str:
    """The text of a customer-service or mass message."""
    return (
        f"【{WARNING_TOPIC_LABELS.get(topic, topic)}】{title}\n{text}\n"
        f"—— {ACCOUNT_NAME}\n{OPT_OUT_HINT}"
    )


def preview(*, topic: str, title: str, text: str, at: datetime | None = None) -> PreviewPublic:
    at = at or utcnow()
    data = template_data(topic=topic, title=title, text=text, at=at)
    template = "\n".join(
        [
            "预警通知",
            data["first"]["value"],
            f"预警类型：{data['keyword1']['value']}",
            f"发布时间：{data['keyword2']['value']}",
            data["remark"]["value"],
        ]
    )
    return PreviewPublic(template=template, text=message_text(topic=topic, title=title, text=text))


# ------------------------------------------------------------------ validation and scope


def check_content(*, topic: str, title: str, text: str) -> None:
    if topic not in WARNING_TOPIC_LABELS:
        raise CaseError(f"未知预警类别：{topic}（可选：{'、'.join(WARNING_TOPIC_LABELS)}）")
    if not title.strip() or len(title) > TITLE_MAX:
        raise CaseError(f"标题不能为空，且不超过 {TITLE_MAX} 个字")
    if not text.strip() or len(text) > TEXT_MAX:
        raise CaseError(f"正文不能为空，且不超过 {TEXT_MAX} 个字")


def check_audience(audience: AudienceIn) -> None:
    if not (
        audience.district
        or audience.streets
        or audience.communities
        or audience.openids
        or audience.reported
    ):
        raise CaseError("请选择推送对象：全区、街道、社区、近期报警群众或指定用户")
    unknown_streets = [s for s in audience.streets if s not in STREETS]
    if unknown_streets:
        raise CaseError(f"未知街道：{'、'.join(unknown_streets)}")
    unknown = [c for c in audience.communities if c not in COMMUNITIES]
    if unknown:
        raise CaseError(f"未知社区：{'、'.join(unknown)}")
    if audience.reported is not None and audience.reported.category not in cases.CATEGORIES:
        raise CaseError(f"未知类别：{audience.reported.category}")


def check_sender(user: User, audience: AudienceIn) -> None:
    """Commanders and admins: anywhere. Officers: their own community only (403)."""
    if user.role not in SENDER_ROLES:
        raise NotAllowed("无权发布预警")
    if handling.sees_everything(user):
        return
    own = user.community
    only_own = (
        own is not None
        and audience.communities == [own]
        and not (audience.district or audience.streets or audience.openids or audience.reported)
    )
    if not only_own:
        raise NotAllowed("社区民警只能向本社区推送预警")


def _scope(user: User) -> Any:
    """What an officer may read and steer: their own broadcasts and their community's."""
    conditions = [Broadcast.created_by_id == user.id]
    if user.community:
        conditions.append(Broadcast.community == user.community)
    return or_(*conditions)


def _readable(session: Session, user: User, broadcast_id: int) -> Broadcast:
    if user.role not in SENDER_ROLES:
        raise NotAllowed("无权查看预警推送")
    statement = select(Broadcast).where(Broadcast.id == broadcast_id)
    if not handling.sees_everything(user):
        statement = statement.where(_scope(user))
    broadcast = session.execute(statement).scalar_one_or_none()
    if broadcast is None:
        raise NotFound(f"没有编号为 {broadcast_id} 的预警推送")
    return broadcast


# ------------------------------------------------------------------ public shapes


def _person(session: Session, user_id: int | None) -> PersonRef | None:
    user = session.get(User, user_id) if user_id else None
    return PersonRef(id=user.id, name=handling.officer_name(user)) if user else None


def broadcast_public(session: Session, broadcast: Broadcast) -> BroadcastPublic:
    return BroadcastPublic(
        id=broadcast.id,
        topic=broadcast.topic,
        topic_label=WARNING_TOPIC_LABELS.get(broadcast.topic, broadcast.topic),
        title=broadcast.title,
        text=broadcast.text,
        audience=AudienceIn.parse_obj(broadcast.audience or {}),
        send_at=aware(broadcast.send_at),
        status=broadcast.status,
        pause_reason=broadcast.pause_reason,
        created_by=_person(session, broadcast.created_by_id),
        created_at=aware(broadcast.created_at),
        started_at=aware(broadcast.started_at),
        finished_at=aware(broadcast.finished_at),
        preview=preview(
            topic=broadcast.topic,
            title=broadcast.title,
            text=broadcast.text,
            at=aware(broadcast.send_at),
        ),
    )


def replies_within(session: Session, broadcast_id: int, window: timedelta = REPLY_WINDOW) -> int:
    """Targeted residents who wrote (not an event) within `window` after their send."""
    sent = (
        select(BroadcastDelivery.resident_id, BroadcastDelivery.sent_at)
        .where(
            BroadcastDelivery.broadcast_id == broadcast_id,
            BroadcastDelivery.status == "sent",
            BroadcastDelivery.sent_at.is_not(None),
        )
        .subquery()
    )
    rows = session.execute(
        select(sent.c.resident_id, sent.c.sent_at, Message.created_at)
        .join(Conversation, Conversation.resident_id == sent.c.resident_id)
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            Message.direction == "in",
            Message.msg_type != "event",
            Message.created_at >= sent.c.sent_at,
        )
    ).all()
    replied = {
        resident_id for resident_id, sent_at, at in rows if aware(at) <= aware(sent_at) + window
    }
    return len(replied)


def figures(session: Session, broadcast: Broadcast) -> BroadcastDetail:
    rows = session.execute(
        select(
            BroadcastDelivery.status,
            BroadcastDelivery.channel,
            BroadcastDelivery.error,
            func.count(),
        )
        .where(BroadcastDelivery.broadcast_id == broadcast.id)
        .group_by(BroadcastDelivery.status, BroadcastDelivery.channel, BroadcastDelivery.error)
    ).all()
    by_status: Counter[str] = Counter()
    by_channel: Counter[str] = Counter()
    failed_by_reason: Counter[str] = Counter()
    for status, channel, error, count in rows:
        by_status[status] += count
        if status == "sent":
            by_channel[channel or "?"] += count
        if status == "failed":
            failed_by_reason[error or "未知原因"] += count
    jobs = [
        MassJobPublic(msg_id=msg_id, **job)
        for msg_id, job in sorted(((broadcast.figures or {}).get("mass") or {}).items())
    ]
    return BroadcastDetail(
        **broadcast_public(session, broadcast).dict(),
        targeted=sum(by_status.values()),
        pending=by_status["pending"] + by_status["sending"],
        sent=by_status["sent"],
        failed=by_status["failed"],
        failed_by_reason=dict(failed_by_reason),
        opted_out=by_status["opted_out"],
        skipped=by_status["skipped"],
        by_channel=dict(by_channel),
        replies_24h=replies_within(session, broadcast.id),
        mass_jobs=jobs,
    )


# ------------------------------------------------------------------ services


def _single_community(audience: AudienceIn) -> str | None:
    """The one community an audience is limited to (officers' broadcasts), else None."""
    only = not (audience.district or audience.streets or audience.openids or audience.reported)
    return audience.communities[0] if only and len(audience.communities) == 1 else None


def _check_send_at(send_at: datetime | None, now: datetime) -> None:
    if send_at is None:
        return
    if send_at.tzinfo is None:
        raise CaseError("send_at 须带时区，例如 2026-12-05T20:00:00+08:00")
    if send_at < now - CLOCK_SKEW:
        raise CaseError("发送时间不能早于现在")


def compose(
    *,
    session: Session,
    user: User,
    topic: str,
    title: str,
    text: str,
    audience: AudienceIn,
    send_at: datetime | None = None,
    draft: bool = False,
    now: datetime | None = None,
) -> BroadcastPublic:
    """A new broadcast, scheduled for `send_at` (aware, not in the past; None: now) — or,
    with `draft`, kept as a draft (`send_at` then only the planned time)."""
    now = now or utcnow()
    check_sender(user, audience)
    check_content(topic=topic, title=title, text=text)
    check_audience(audience)
    _check_send_at(send_at, now)
    broadcast = Broadcast(
        topic=topic,
        title=title.strip(),
        text=text.strip(),
        audience=audience.dict(),
        community=_single_community(audience),
        send_at=max(send_at, now) if send_at is not None else now,
        status="draft" if draft else "scheduled",
        created_by_id=user.id,
        created_at=now,
        figures={},
    )
    session.add(broadcast)
    session.flush()
    action = "broadcast_draft" if draft else "broadcast_compose"
    audit.record(session, user, action, "broadcast", broadcast.id, topic=topic)
    return broadcast_public(session, broadcast)


def update_draft(
    *,
    session: Session,
    user: User,
    broadcast_id: int,
    topic: str,
    title: str,
    text: str,
    audience: AudienceIn,
    send_at: datetime | None = None,
    now: datetime | None = None,
) -> BroadcastPublic:
    """Rewrite a draft (every field, as `compose` checks them); 409 once it was sent or
    cancelled — one conditional UPDATE, so an edit never lands on a broadcast on its way."""
    now = now or utcnow()
    _readable(session, user, broadcast_id)  # out of scope: 404 like missing
    check_sender(user, audience)
    check_content(topic=topic, title=title, text=text)
    check_audience(audience)
    _check_send_at(send_at, now)
    broadcast = _transition(
        session,
        user,
        broadcast_id,
        allowed_from=("draft",),
        values={
            "status": "draft",
            "topic": topic,
            "title": title.strip(),
            "text": text.strip(),
            "audience": audience.dict(),
            "community": _single_community(audience),
            "send_at": max(send_at, now) if send_at is not None else now,
        },
        action="修改（只有草稿可以修改）",
    )
    return broadcast_public(session, broadcast)


def send_draft(
    *,
    session: Session,
    user: User,
    broadcast_id: int,
    send_at: datetime | None = None,
    now: datetime | None = None,
) -> BroadcastDetail:
    """Release a draft: scheduled for `send_at` (None: now). The sender is checked as at
    composing (an officer only to their own community); 409 when it is no draft."""
    now = now or utcnow()
    current = _readable(session, user, broadcast_id)
    check_sender(user, AudienceIn(**current.audience))
    _check_send_at(send_at, now)
    broadcast = _transition(
        session,
        user,
        broadcast_id,
        allowed_from=("draft",),
        values={"status": "scheduled", "send_at": max(send_at, now) if send_at else now},
        action="发送",
    )
    return figures(session, broadcast)


def list_broadcasts(
    *, session: Session, user: User, limit: int = 20, offset: int = 0, status: str | None = None
) -> BroadcastPage:
    if user.role not in SENDER_ROLES:
        raise NotAllowed("无权查看预警推送")
    limit = max(1, min(limit, PAGE_MAX))
    statement = select(Broadcast)
    if not handling.sees_everything(user):
        statement = statement.where(_scope(user))
    if status:
        statement = statement.where(Broadcast.status == status)
    total = session.execute(select(func.count()).select_from(statement.subquery())).scalar_one()
    items = session.execute(
        statement.order_by(Broadcast.id.desc()).limit(limit).offset(max(offset, 0))
    ).scalars()
    return BroadcastPage(
        items=[broadcast_public(session, b) for b in items],
        total=int(total),
        limit=limit,
        offset=max(offset, 0),
    )


def detail(*, session: Session, user: User, broadcast_id: int) -> BroadcastDetail:
    return figures(session, _readable(session, user, broadcast_id))


def _transition(
    session: Session,
    user: User,
    broadcast_id: int,
    *,
    allowed_from: tuple[str, ...],
    values: dict[str, Any],
    action: str,
) -> Broadcast:
    """One conditional UPDATE: the state the user saw may have moved on (409)."""
    _readable(session, user, broadcast_id)
    result = session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status.in_(allowed_from))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    broadcast = session.get(Broadcast, broadcast_id, populate_existing=True)
    assert broadcast is not None
    if result.rowcount != 1:
        raise Conflict(f"该推送当前状态为“{broadcast.status}”，不能{action}")
    audit.record(session, user, f"broadcast_{values['status']}", "broadcast", broadcast_id)
    return broadcast


def pause(*, session: Session, user: User, broadcast_id: int) -> BroadcastDetail:
    broadcast = _transition(
        session,
        user,
        broadcast_id,
        allowed_from=("scheduled", "sending"),
        values={"status": "paused", "pause_reason": "人工暂停"},
        action="暂停",
    )
    return figures(session, broadcast)


def resume(*, session: Session, user: User, broadcast_id: int) -> BroadcastDetail:
    """Back to sending (or to waiting for send_at when it never started)."""
    current = _readable(session, user, broadcast_id)
    target = "sending" if current.started_at is not None else "scheduled"
    broadcast = _transition(
        session,
        user,
        broadcast_id,
        allowed_from=("paused",),
        values={"status": target, "pause_reason": None},
        action="恢复",
    )
    return figures(session, broadcast)


def cancel(*, session: Session, user: User, broadcast_id: int) -> BroadcastDetail:
    """No more sends: deliveries still queued become `skipped` (a claimed one in flight
    finishes, its owner's conditional release still holds)."""
    now = utcnow()
    broadcast = _transition(
        session,
        user,
        broadcast_id,
        allowed_from=("draft", "scheduled", "sending", "paused"),
        values={"status": "cancelled", "finished_at": now},
        action="取消",
    )
    session.execute(
        update(BroadcastDelivery)
        .where(
            BroadcastDelivery.broadcast_id == broadcast_id,
            BroadcastDelivery.status == "pending",
        )
        .values(status="skipped", error="推送已取消")
        .execution_options(synchronize_session=False)
    )
    return figures(session, broadcast)


def preview_for(*, user: User, topic: str, title: str, text: str) -> PreviewPublic:
    """How a warning being composed will look in WeChat (validated like `compose`)."""
    if user.role not in SENDER_ROLES:
        raise NotAllowed("无权发布预警")
    check_content(topic=topic, title=title, text=text)
    return preview(topic=topic, title=title, text=text)
