"""The broadcast queue: resolving a broadcast's audience and sending it, at most once per
resident, shared by every gateway worker (`gateway.broadcast_worker` drives it).

1. **Start** (`start_due`): a due broadcast is claimed (owner + expiry, `casework.claims`)
   and its audience resolved into one `broadcast_deliveries` row per resident —
   INSERT … SELECT … ON CONFLICT DO NOTHING on UNIQUE(broadcast_id, resident_id), so a
   takeover after a crash adds nobody twice. Placeholder senders (`dissuasion:<id>`: not
   WeChat users) are never selected; residents who opted out (退订) or did not choose the
   topic become `opted_out`, those who unfollowed the account `skipped`. With mass
   sending enabled, a whole-district broadcast's residents with a community go by
   community user tag (`mass_tag`), sent by the start's claim holder (`mass_groups`).
2. **Deliveries** (`claim_deliveries`): pending rows of broadcasts that are `sending` are
   claimed with ONE conditional UPDATE whose condition also says "the resident has not
   opted out, still wants the topic and still follows the account": an opt-out that
   arrives mid-send is honoured at claim time; `exclude` then records it as `opted_out`.
   Each claimed row gets its channel: customer-service when the resident wrote in the
   last 48 h (WeChat's window), else a template message.
3. **Finish**: only the claim's owner writes the result (`claims.release`); a quota error
   (45009) puts the row back and pauses the broadcast with a visible reason.
4. `complete_finished`: a sending broadcast with nothing queued and no start claim → done.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from casework import claims
from casework.broadcast_schemas import AudienceIn
from casework.clock import aware, utcnow
from casework.gazetteer import STREETS
from casework.models import (
    Broadcast,
    BroadcastDelivery,
    Case,
    Conversation,
    Message,
    OutboxItem,
    Resident,
    WarningPreference,
)

CLAIM_TTL = claims.CLAIM_TTL
CS_WINDOW = timedelta(hours=48)  # WeChat accepts customer-service messages this long
MAX_ATTEMPTS = 5
OPTED_OUT = "已退订预警"
NOT_TOPIC = "未订阅该类预警"
UNSUBSCRIBED = "已取消关注公众号"
MASS_UNKNOWN = "群发结果未知（发送中断）"
QUOTA_ERRCODE = 45009
QUOTA_REASON = "模板消息调用额度已用完（45009），已自动暂停；额度恢复后请点击“恢复”"


@dataclass(frozen=True)
class DeliveryJob:
    id: int
    broadcast_id: int
    openid: str
    topic: str
    title: str
    text: str
    send_at: datetime
    channel: str  # template | customer_service
    attempts: int


@dataclass(frozen=True)
class MassGroup:
    broadcast_id: int
    community: str
    openids: list[str]
    topic: str
    title: str
    text: str


# ------------------------------------------------------------------ who may receive


# WeChat's own senders: MASSSENDJOBFINISH comes from the 群发助手, stored like any event.
SYSTEM_OPENIDS = ("mphelper",)


def real_openid() -> ColumnElement[bool]:
    """A WeChat user: not a stand-in sender such as `dissuasion:<task id>`, nor WeChat's
    mass-send assistant (whose job events create a conversation of their own)."""
    return and_(~Resident.openid.contains(":"), Resident.openid.not_in(SYSTEM_OPENIDS))


def _topic_refused(topic: Any) -> ColumnElement[bool]:
    """The preference row refuses the topic: opted out, or chose topics without it."""
    pattern = literal("%,") + topic + literal(",%")
    return or_(
        WarningPreference.warnings_opted_out_at.is_not(None),
        and_(WarningPreference.topics.is_not(None), ~WarningPreference.topics.like(pattern)),
    )


def _selected(audience: AudienceIn, now: datetime) -> ColumnElement[bool]:
    """The residents an audience names (the union of its selectors)."""
    if audience.district:
        return literal(True) == literal(True)
    selectors: list[ColumnElement[bool]] = []
    communities = set(audience.communities)
    for street in audience.streets:
        communities.update(STREETS.get(street, ()))
    if communities:
        selectors.append(Resident.community.in_(sorted(communities)))
    if audience.openids:
        selectors.append(Resident.openid.in_(audience.openids))
    if audience.reported is not None:
        since = now - timedelta(days=audience.reported.days)
        reporters = select(Case.sender_id).where(
            Case.category == audience.reported.category, Case.created_at >= since
        )
        selectors.append(Resident.openid.in_(reporters))
    return or_(*selectors) if selectors else literal(False) == literal(True)


# ------------------------------------------------------------------ start: the audience


def _insert_ignoring_duplicates(session: Session, columns: list[str], rows: Any) -> int:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(BroadcastDelivery)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["broadcast_id", "resident_id"])
    )
    return int(session.execute(statement).rowcount or 0)


def resolve_audience(session: Session, broadcast: Broadcast, *, mass: bool, now: datetime) -> int:
    """Insert the broadcast's deliveries (idempotent); returns how many were new."""
    audience = AudienceIn.parse_obj(broadcast.audience or {})
    channel = case((Resident.community.is_not(None), literal("mass_tag")), else_=None)
    rows = select(
        literal(broadcast.id),
        Resident.id,
        Resident.community,
        channel if mass else literal(None),
        literal("pending"),
        literal(0),
    ).where(real_openid(), _selected(audience, now))
    added = _insert_ignoring_duplicates(
        session,
        ["broadcast_id", "resident_id", "community", "channel", "status", "attempts"],
        rows,
    )
    exclude(session, broadcast.id, broadcast.topic)
    return added


def exclude(session: Session, broadcast_id: int, topic: str) -> int:
    """Queued deliveries whose resident may no longer get this broadcast: opted_out (退订,
    topic not chosen) or skipped (unfollowed the account). Returns how many."""
    changed = 0
    for error, refusing in (
        (OPTED_OUT, WarningPreference.warnings_opted_out_at.is_not(None)),
        (NOT_TOPIC, _topic_refused(literal(topic))),
    ):
        changed += session.execute(
            update(BroadcastDelivery)
            .where(
                BroadcastDelivery.broadcast_id == broadcast_id,
                BroadcastDelivery.status == "pending",
                BroadcastDelivery.resident_id.in_(
                    select(WarningPreference.resident_id).where(refusing)
                ),
            )
            .values(status="opted_out", error=error)
            .execution_options(synchronize_session=False)
        ).rowcount
    changed += session.execute(
        update(BroadcastDelivery)
        .where(
            BroadcastDelivery.broadcast_id == broadcast_id,
            BroadcastDelivery.status == "pending",
            BroadcastDelivery.resident_id.in_(
                select(Resident.id).where(Resident.subscribed.is_(False))
            ),
        )
        .values(status="skipped", error=UNSUBSCRIBED)
        .execution_options(synchronize_session=False)
    ).rowcount
    return changed


def start_due(
    *,
    session: Session,
    owner: str,
    now: datetime | None = None,
    mass_enabled: bool = False,
    limit: int = 5,
) -> list[int]:
    """Claim due broadcasts (and starts whose claim expired: a worker died resolving or
    mass-sending), resolve their audiences; returns their ids. The caller runs the mass
    phase when there is one and then `release_start`."""
    now = now or utcnow()
    claimable = or_(
        and_(Broadcast.status == "scheduled", Broadcast.send_at <= now),
        and_(
            Broadcast.status == "sending",
            Broadcast.claimed_by.is_not(None),
            Broadcast.claim_expires_at <= now,
        ),
    )
    taken = claims.claim_rows(
        session,
        id_column=Broadcast.id,
        claimable=claimable,
        order_by=(Broadcast.send_at, Broadcast.id),
        values={
            "status": "sending",
            "claimed_by": owner,
            "claim_expires_at": now + CLAIM_TTL,
            "started_at": func.coalesce(Broadcast.started_at, now),
        },
        limit=limit,
    )
    for broadcast in taken:
        mass = mass_enabled and bool((broadcast.audience or {}).get("district"))
        resolve_audience(session, broadcast, mass=mass, now=now)
    return [b.id for b in taken]


def release_start(*, session: Session, broadcast_id: int, owner: str) -> bool:
    return claims.release(
        session,
        id_column=Broadcast.id,
        item_id=broadcast_id,
        owner_column=Broadcast.claimed_by,
        owner=owner,
        values={"claimed_by": None, "claim_expires_at": None},
    )


# ------------------------------------------------------------------ mass send by user tag


def mass_groups(*, session: Session, broadcast_id: int, owner: str) -> list[MassGroup]:
    """The start claim holder's mass sends still to do, per community. Rows left
    `sending` by a worker that died during a mass send are not sent again (WeChat may
    have them): they fail with MASS_UNKNOWN — at most once."""
    session.execute(
        update(BroadcastDelivery)
        .where(
            BroadcastDelivery.broadcast_id == broadcast_id,
            BroadcastDelivery.channel == "mass_tag",
            BroadcastDelivery.status == "sending",
            BroadcastDelivery.claimed_by != owner,
        )
        .values(status="failed", error=MASS_UNKNOWN, claimed_by=None, claim_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    broadcast = session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.status != "sending":
        return []
    rows = session.execute(
        select(BroadcastDelivery.community, Resident.openid)
        .join(Resident, Resident.id == BroadcastDelivery.resident_id)
        .where(
            BroadcastDelivery.broadcast_id == broadcast_id,
            BroadcastDelivery.channel == "mass_tag",
            BroadcastDelivery.status == "pending",
        )
        .order_by(BroadcastDelivery.community, Resident.openid)
    ).all()
    grouped: dict[str, list[str]] = defaultdict(list)
    for community, openid in rows:
        grouped[community].append(openid)
    return [
        MassGroup(
            broadcast_id, community, openids, broadcast.topic, broadcast.title, broadcast.text
        )
        for community, openids in grouped.items()
    ]


def _mass_rows(broadcast_id: int, community: str, status: str) -> Any:
    return (
        BroadcastDelivery.broadcast_id == broadcast_id,
        BroadcastDelivery.channel == "mass_tag",
        BroadcastDelivery.community == community,
        BroadcastDelivery.status == status,
    )


def mass_begin(*, session: Session, group: MassGroup, owner: str, now: datetime) -> int:
    """Mark the community's rows `sending` (committed by the caller BEFORE the API call)."""
    return int(
        session.execute(
            update(BroadcastDelivery)
            .where(*_mass_rows(group.broadcast_id, group.community, "pending"))
            .values(
                status="sending",
                claimed_by=owner,
                claim_expires_at=now + CLAIM_TTL,
                attempts=BroadcastDelivery.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def _update_figures(session: Session, broadcast_id: int, change: Any) -> None:
    broadcast = session.execute(
        select(Broadcast).where(Broadcast.id == broadcast_id).with_for_update()
    ).scalar_one()
    figures = dict(broadcast.figures or {})
    change(figures)
    broadcast.figures = figures  # a new dict: JSON columns do not track mutation


def mass_finish(
    *,
    session: Session,
    group: MassGroup,
    owner: str,
    msg_id: str | None,
    error: str | None,
    now: datetime,
) -> None:
    values: dict[str, Any] = {"claimed_by": None, "claim_expires_at": None}
    if error is None:
        values |= {"status": "sent", "wechat_msgid": msg_id, "sent_at": now, "error": None}
    else:
        values |= {"status": "failed", "error": error[:500]}
    session.execute(
        update(BroadcastDelivery)
        .where(
            *_mass_rows(group.broadcast_id, group.community, "sending"),
            BroadcastDelivery.claimed_by == owner,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if msg_id is not None:

        def add(figures: dict[str, Any]) -> None:
            mass = dict(figures.get("mass") or {})
            mass[msg_id] = {"community": group.community, "status": "sent"}
            figures["mass"] = mass

        _update_figures(session, group.broadcast_id, add)


# ------------------------------------------------------------------ deliveries


def claimable_deliveries(now: datetime) -> ColumnElement[bool]:
    due = or_(
        and_(
            BroadcastDelivery.status == "pending",
            or_(
                BroadcastDelivery.next_attempt_at.is_(None),
                BroadcastDelivery.next_attempt_at <= now,
            ),
        ),
        and_(BroadcastDelivery.status == "sending", BroadcastDelivery.claim_expires_at <= now),
    )
    sending = (
        select(Broadcast.id)
        .where(Broadcast.id == BroadcastDelivery.broadcast_id, Broadcast.status == "sending")
        .exists()
    )
    refused = (
        select(WarningPreference.resident_id)
        .where(
            WarningPreference.resident_id == BroadcastDelivery.resident_id,
            Broadcast.id == BroadcastDelivery.broadcast_id,
            _topic_refused(Broadcast.topic),
        )
        .exists()
    )
    following = (
        select(Resident.id)
        .where(Resident.id == BroadcastDelivery.resident_id, Resident.subscribed.is_(True))
        .exists()
    )
    return and_(
        due,
        or_(BroadcastDelivery.channel.is_(None), BroadcastDelivery.channel != "mass_tag"),
        sending,
        ~refused,
        following,
    )


def last_interactions(session: Session, resident_ids: list[int]) -> dict[int, datetime]:
    """When each resident last wrote or tapped the menu (what opens WeChat's 48 h
    customer-service window); template-send and other system events do not count."""
    if not resident_ids:
        return {}
    rows = session.execute(
        select(Conversation.resident_id, func.max(Message.created_at))
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            Conversation.resident_id.in_(resident_ids),
            Message.direction == "in",
            or_(
                Message.msg_type != "event",
                Message.content == "[关注]",
                Message.content.like("[菜单]%"),
            ),
        )
        .group_by(Conversation.resident_id)
    ).all()
    return {resident_id: aware(at) for resident_id, at in rows if at is not None}


def claim_deliveries(
    *, session: Session, owner: str, now: datetime | None = None, limit: int = claims.BATCH
) -> list[DeliveryJob]:
    """Claim up to `limit` deliveries; each with the channel it will go by."""
    now = now or utcnow()
    rows = claims.claim_rows(
        session,
        id_column=BroadcastDelivery.id,
        claimable=claimable_deliveries(now),
        order_by=(BroadcastDelivery.broadcast_id, BroadcastDelivery.id),
        values={
            "status": "sending",
            "claimed_by": owner,
            "claim_expires_at": now + CLAIM_TTL,
            "attempts": BroadcastDelivery.attempts + 1,
        },
        limit=limit,
    )
    if not rows:
        return []
    residents = dict(
        session.execute(
            select(Resident.id, Resident.openid).where(
                Resident.id.in_([r.resident_id for r in rows])
            )
        ).all()
    )
    broadcasts = {
        b.id: b
        for b in session.execute(
            select(Broadcast).where(Broadcast.id.in_({r.broadcast_id for r in rows}))
        ).scalars()
    }
    seen = last_interactions(session, [r.resident_id for r in rows])
    jobs = []
    for row in rows:
        broadcast = broadcasts[row.broadcast_id]
        last = seen.get(row.resident_id)
        channel = "customer_service" if last is not None and now - last < CS_WINDOW else "template"
        jobs.append(
            DeliveryJob(
                id=row.id,
                broadcast_id=row.broadcast_id,
                openid=residents[row.resident_id],
                topic=broadcast.topic,
                title=broadcast.title,
                text=broadcast.text,
                send_at=aware(broadcast.send_at),
                channel=channel,
                attempts=row.attempts,
            )
        )
    return jobs


def _release(session: Session, delivery_id: int, owner: str, **values: Any) -> bool:
    return claims.release(
        session,
        id_column=BroadcastDelivery.id,
        item_id=delivery_id,
        owner_column=BroadcastDelivery.claimed_by,
        owner=owner,
        values={"claimed_by": None, "claim_expires_at": None, **values},
        also=BroadcastDelivery.status == "sending",
    )


def mark_sent(
    *,
    session: Session,
    delivery_id: int,
    owner: str,
    channel: str,
    msgid: str | None,
    now: datetime | None = None,
) -> bool:
    return _release(
        session,
        delivery_id,
        owner,
        status="sent",
        channel=channel,
        wechat_msgid=msgid,
        sent_at=now or utcnow(),
        error=None,
    )


def mark_failed(
    *,
    session: Session,
    delivery_id: int,
    owner: str,
    channel: str,
    error: str,
    permanent: bool,
    attempts: int,
    now: datetime | None = None,
) -> str:
    """Retry later (patiently, `claims.retry_delay`) or give up; "lost" when the claim
    was taken over."""
    now = now or utcnow()
    if permanent or attempts >= MAX_ATTEMPTS:
        done = _release(session, delivery_id, owner, status="failed", channel=channel, error=error)
        return "failed" if done else "lost"
    done = _release(
        session,
        delivery_id,
        owner,
        status="pending",
        error=error,
        next_attempt_at=now + claims.retry_delay(attempts),
    )
    return "pending" if done else "lost"


def put_back(*, session: Session, delivery_ids: list[int], owner: str) -> int:
    """Claimed but not attempted (the outbox got busy, the broadcast was paused): back in
    the queue, the attempt not counted."""
    put = 0
    for delivery_id in delivery_ids:
        put += _release(
            session,
            delivery_id,
            owner,
            status="pending",
            attempts=BroadcastDelivery.attempts - 1,
        )
    return put


def pause_for_quota(
    *, session: Session, delivery_id: int, broadcast_id: int, owner: str, error: str
) -> None:
    """WeChat refused for quota (45009): the row goes back, the broadcast pauses with a
    reason officers see; they resume it when the quota is back."""
    put_back(session=session, delivery_ids=[delivery_id], owner=owner)
    pause_broadcast(session=session, broadcast_id=broadcast_id, reason=f"{QUOTA_REASON}：{error}")


def pause_broadcast(*, session: Session, broadcast_id: int, reason: str) -> bool:
    result = session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status == "sending")
        .values(status="paused", pause_reason=reason[:500])
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)


def still_sending(*, session: Session, broadcast_id: int) -> bool:
    status = session.execute(
        select(Broadcast.status).where(Broadcast.id == broadcast_id)
    ).scalar_one_or_none()
    return status == "sending"


def sweep_exclusions(*, session: Session) -> int:
    """`exclude` for every broadcast being sent: mid-send opt-outs become `opted_out`."""
    changed = 0
    for broadcast_id, topic in session.execute(
        select(Broadcast.id, Broadcast.topic).where(Broadcast.status == "sending")
    ).all():
        changed += exclude(session, broadcast_id, topic)
    return changed


def complete_finished(*, session: Session, now: datetime | None = None) -> int:
    now = now or utcnow()
    queued = (
        select(BroadcastDelivery.id)
        .where(
            BroadcastDelivery.broadcast_id == Broadcast.id,
            BroadcastDelivery.status.in_(("pending", "sending")),
        )
        .exists()
    )
    result = session.execute(
        update(Broadcast)
        .where(Broadcast.status == "sending", Broadcast.claimed_by.is_(None), ~queued)
        .values(status="done", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def outbox_busy(*, session: Session, now: datetime | None = None) -> bool:
    """Residents' own conversations first: True while the outbox has due messages."""
    now = now or utcnow()
    return (
        session.execute(
            select(OutboxItem.id)
            .where(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now)
            .limit(1)
        ).first()
        is not None
    )


# ------------------------------------------------------------------ WeChat's job events


def record_job_result(
    *,
    session: Session,
    event: str,
    msg_id: str,
    status: str,
    total: int | None = None,
    sent: int | None = None,
    errors: int | None = None,
) -> int:
    """TEMPLATESENDJOBFINISH: a template message WeChat could not deliver (user block,
    system failure) turns its delivery `failed`. MASSSENDJOBFINISH: the mass job's counts
    go into the broadcast's figures. Idempotent (WeChat retries events). Returns the
    number of records changed."""
    if event == "templatesendjobfinish":
        if status.strip().lower() == "success":
            return 0
        result = session.execute(
            update(BroadcastDelivery)
            .where(
                BroadcastDelivery.wechat_msgid == msg_id,
                BroadcastDelivery.channel == "template",
                BroadcastDelivery.status == "sent",
            )
            .values(status="failed", error=f"模板消息未送达：{status[:100]}")
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)
    if event == "masssendjobfinish":
        broadcast_id = session.execute(
            select(BroadcastDelivery.broadcast_id)
            .where(
                BroadcastDelivery.wechat_msgid == msg_id, BroadcastDelivery.channel == "mass_tag"
            )
            .limit(1)
        ).scalar_one_or_none()
        if broadcast_id is None:
            return 0

        def record(figures: dict[str, Any]) -> None:
            mass = dict(figures.get("mass") or {})
            job = dict(mass.get(msg_id) or {"community": None})
            job |= {"status": status[:64], "total": total, "sent": sent, "errors": errors}
            mass[msg_id] = job
            figures["mass"] = mass

        _update_figures(session, broadcast_id, record)
        return 1
    return 0
