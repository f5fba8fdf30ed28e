"""Precision dissuasion (精准劝阻): warning leads about potential fraud victims become tasks
for the officer who can reach the person first, and end with a recorded outcome.

- **Leads** (`ingest_leads`, from the signed webhook or a CSV upload: `dissuasion_csv`) are
  stored once per (source, external_id): the same lead again names its first task.
- Each lead becomes one **task**, matched to a WeChat resident by the mobile they
  registered with consent (`casework.residents`) and to a community (the lead's address
  through the gazetteer, else the resident's community); assigned to that community's
  officer (the least loaded), else to the 反诈 desk; due by risk level (`DEADLINES`).
- Officers record **attempts** (phone, WeChat, visit) and the **outcome**: dissuaded
  (with the amount that was about to be paid), defrauded (an urgent fraud case is opened
  and linked), or unreachable — refused without a visit attempt (不见本人不放过).
- Background work (announce on DingTalk, warn the resident in WeChat, escalate overdue
  tasks) is in `casework.dissuasion_work`, claimed like every background job.

Scoping is in the queries: a community officer sees their community's tasks and those
assigned to them; 反诈 desk officers, commanders and admins see all; trainers none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from casework import audit, cases, handling
from casework.clock import aware, utcnow
from casework.dissuasion_schemas import (
    AttemptPublic,
    LeadIn,
    LeadsAccepted,
    TaskDetail,
    TaskPage,
    TaskPublic,
)
from casework.gazetteer import match_place
from casework.handling import Conflict, NotAllowed, NotFound
from casework.models import (
    DissuasionAttempt,
    DissuasionLead,
    DissuasionNotice,
    DissuasionTask,
    Resident,
    User,
)
from casework.residents import mask_phone, resident_by_mobile, street_of
from casework.schemas import PersonRef
from casework.vocabulary import (
    CONTACT_CHANNEL_LABELS,
    DISSUASION_OUTCOME_LABELS,
    OTHER_RISK_TYPE,
    RISK_TYPES,
)

DESK = "反诈"
# How long the officer has to reach the person, from the moment the task exists. A high-
# risk lead is someone being groomed now (the scammer is on the line or the transfer is
# being set up): Xiangshan's loop answers those within half an hour. Medium: the contact
# happened but no payment is under way, so within a working shift's first hours. Low:
# a warning-list hit (an app installed, a number called once), the next day is enough.
DEADLINES = {
    "high": timedelta(minutes=30),
    "medium": timedelta(hours=2),
    "low": timedelta(hours=24),
}
FEN_PER_YUAN = 100
OUTCOMES = tuple(DISSUASION_OUTCOME_LABELS)
CHANNELS = tuple(CONTACT_CHANNEL_LABELS)
UPLOAD_ROLES = ("commander", "admin")  # plus officers of the 反诈 desk

# The WeChat warning a matched resident gets at once, per risk type (polite, Simplified).
_SIGNATURE = "如有疑问，请拨打反诈专线 96110 或联系您的社区民警。"
WARNINGS = {
    "刷单返利": "所有“刷单返利”都是诈骗：先让您小额获利，再诱导您大额垫付，最后无法提现。",
    "冒充公检法": "公检法机关不会通过电话、微信办案，不会发送“通缉令”，更不会要求您把钱转到"
    "“安全账户”。",
    "虚假投资理财": "宣称有“内幕消息”“高收益、稳赚不赔”，拉您进群、下载陌生 App 投资的，都是骗局。",
    "贷款": "正规贷款放款前不会收取“保证金”“解冻费”“刷流水”等任何费用，先交钱的都是诈骗。",
    "冒充客服": "自称“客服”说您订单异常、要理赔退款或关闭“百万保障”，并要您转账、"
    "开启屏幕共享的，都是诈骗。",
    OTHER_RISK_TYPE: "有人可能正以各种理由诱导您转账汇款。凡是要求您向陌生账户转钱的，"
    "请先停下来核实。",
}


def warning_text(risk_type: str) -> str:
    body = WARNINGS.get(risk_type, WARNINGS[OTHER_RISK_TYPE])
    return (
        f"【反诈预警】您好！公安机关监测到您可能正面临“{risk_type}”类诈骗风险。{body}"
        f"请您千万不要向任何人转账或透露验证码。{_SIGNATURE}"
    )


def classify_risk_type(raw: str) -> tuple[str, str | None]:
    """(vocabulary code, the platform's own wording when it is not exactly a code). A type
    that names a known one ("网络刷单返利类") is that one; anything else is 其他."""
    text = raw.strip()
    if text in RISK_TYPES:
        return text, None
    for code in RISK_TYPES:
        if code != OTHER_RISK_TYPE and code in text:
            return code, text
    return OTHER_RISK_TYPE, text


def to_fen(amount: Decimal | None) -> int | None:
    return None if amount is None else int((amount * FEN_PER_YUAN).to_integral_value())


def to_yuan(fen: int | None) -> Decimal | None:
    return None if fen is None else (Decimal(fen) / FEN_PER_YUAN).quantize(Decimal("0.01"))


# ------------------------------------------------------------------ who sees what


def is_desk_officer(user: User) -> bool:
    return user.role == "officer" and user.desk == DESK


def sees_all_tasks(user: User) -> bool:
    return handling.sees_everything(user) or is_desk_officer(user)


def task_scope(user: User) -> Any:
    """A community officer's tasks: their community's, and those assigned to them."""
    conditions = [DissuasionTask.assignee_id == user.id]
    if user.community:
        conditions.append(DissuasionTask.community == user.community)
    return or_(*conditions)


def check_uploader(user: User) -> None:
    if user.role not in UPLOAD_ROLES and not is_desk_officer(user):
        raise NotAllowed("仅指挥长、管理员和反诈民警可以导入预警线索")


# ------------------------------------------------------------------ leads → tasks


def _least_loaded(session: Session, officers: Sequence[User]) -> User | None:
    if not officers:
        return None
    load = dict(
        session.execute(
            select(DissuasionTask.assignee_id, func.count())
            .where(
                DissuasionTask.status == "open",
                DissuasionTask.assignee_id.in_([o.id for o in officers]),
            )
            .group_by(DissuasionTask.assignee_id)
        ).all()
    )
    return min(officers, key=lambda officer: (load.get(officer.id, 0), officer.id))


def assign(session: Session, community: str | None) -> tuple[User | None, str | None]:
    """(officer, desk): the community's officer, else a 反诈 desk officer (desk 反诈; also
    when the desk has nobody, so the task stays in the desk's list)."""
    officers = select(User).where(User.role == "officer", User.active.is_(True))
    if community:
        local = list(session.execute(officers.where(User.community == community)).scalars())
        chosen = _least_loaded(session, local)
        if chosen is not None:
            return chosen, None
    desk = list(session.execute(officers.where(User.desk == DESK)).scalars())
    return _least_loaded(session, desk), DESK


def _insert_lead(session: Session, values: dict[str, Any]) -> int | None:
    """INSERT … ON CONFLICT (source, external_id) DO NOTHING: the new lead's id, or None
    when the platform sent it before (also by a concurrent request: PostgreSQL waits for
    it and counts it as the conflict)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    result = session.execute(
        dialect.insert(DissuasionLead)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
    )
    if result.rowcount != 1:
        return None
    return int(result.inserted_primary_key[0])


def _task_of_lead(session: Session, source: str, external_id: str) -> int:
    task_id = session.execute(
        select(DissuasionTask.id)
        .join(DissuasionLead, DissuasionLead.id == DissuasionTask.lead_id)
        .where(DissuasionLead.source == source, DissuasionLead.external_id == external_id)
    ).scalar_one_or_none()
    if task_id is None:  # lead and task are written in one transaction
        raise cases.CaseError("the lead exists without its task")
    return int(task_id)


def ingest_leads(
    *,
    session: Session,
    leads: Iterable[LeadIn],
    actor: User | None,
    channel: str = "webhook",
    now: datetime | None = None,
) -> LeadsAccepted:
    """Store each lead once and make its task (matched, placed, assigned, due, with its
    DingTalk announcement queued). `actor` None is the platform (the signed webhook)."""
    now = now or utcnow()
    task_ids: list[int] = []
    created = duplicates = 0
    for lead in leads:
        risk_type, original = classify_risk_type(lead.risk_type)
        lead_id = _insert_lead(
            session,
            {
                "source": lead.source,
                "external_id": lead.external_id,
                "phone": lead.phone,
                "name": lead.name or None,
                "address": lead.address or None,
                "risk_type": risk_type,
                "risk_type_original": original,
                "risk_level": lead.risk_level,
                "warned_at": lead.warned_at.astimezone(timezone.utc),  # SQLite keeps no zone
                "received_at": now,
                "channel": channel,
            },
        )
        if lead_id is None:
            duplicates += 1
            task_ids.append(_task_of_lead(session, lead.source, lead.external_id))
            continue
        task = _make_task(session, lead_id, lead, now)
        created += 1
        task_ids.append(task.id)
        audit.record(session, actor, "dissuasion_lead", "dissuasion_task", task.id, channel=channel)
    session.flush()
    return LeadsAccepted(task_ids=task_ids, created=created, duplicates=duplicates)


def _make_task(session: Session, lead_id: int, lead: LeadIn, now: datetime) -> DissuasionTask:
    resident = resident_by_mobile(session=session, mobile=lead.phone)
    place = match_place(lead.address) if lead.address else None
    community = (place.community if place else None) or (resident.community if resident else None)
    street = (place.street if place else None) or street_of(community)
    assignee, desk = assign(session, community)
    task = DissuasionTask(
        lead_id=lead_id,
        resident_id=resident.id if resident else None,
        street=street,
        community=community,
        assignee_id=assignee.id if assignee else None,
        desk=desk,
        status="open",
        deadline_at=now + DEADLINES[lead.risk_level],
        created_at=now,
    )
    session.add(task)
    session.flush()
    session.add(DissuasionNotice(task_id=task.id, kind="announce", status="pending", attempts=0))
    return task


# ------------------------------------------------------------------ reading


def person_ref(session: Session, user_id: int | None) -> PersonRef | None:
    user = session.get(User, user_id) if user_id else None
    return PersonRef(id=user.id, name=handling.officer_name(user)) if user else None


def task_public(
    session: Session, task: DissuasionTask, lead: DissuasionLead, notice_status: str | None
) -> TaskPublic:
    deadline = aware(task.deadline_at)
    now = utcnow()
    open_ = task.status == "open"
    return TaskPublic(
        id=task.id,
        lead_id=lead.id,
        source=lead.source,
        external_id=lead.external_id,
        phone_masked=mask_phone(lead.phone),
        name=lead.name,
        risk_type=lead.risk_type,
        risk_type_original=lead.risk_type_original,
        risk_level=lead.risk_level,
        warned_at=aware(lead.warned_at),
        street=task.street,
        community=task.community,
        assignee=person_ref(session, task.assignee_id),
        desk=task.desk,
        status=task.status,
        deadline_at=deadline,
        seconds_left=int((deadline - now).total_seconds()) if open_ else None,
        overdue=open_ and now > deadline,
        created_at=aware(task.created_at),
        outcome=task.outcome,
        amount_protected=to_yuan(task.amount_protected_fen),
        closed_at=aware(task.closed_at),
        closed_by=person_ref(session, task.closed_by_id),
        case_id=task.case_id,
        escalated_at=aware(task.escalated_at),
        resident_matched=task.resident_id is not None,
        resident_warned_at=aware(task.resident_warned_at),
        notice_status=notice_status,
    )


def _query(user: User) -> Any:
    handling.check_reader(user)
    notice = and_(
        DissuasionNotice.task_id == DissuasionTask.id, DissuasionNotice.kind == "announce"
    )
    query = (
        select(DissuasionTask, DissuasionLead, DissuasionNotice.status)
        .join(DissuasionLead, DissuasionLead.id == DissuasionTask.lead_id)
        .outerjoin(DissuasionNotice, notice)
    )
    return query if sees_all_tasks(user) else query.where(task_scope(user))


def _status_filter(query: Any, status: str) -> Any:
    if status in ("open", "closed"):
        return query.where(DissuasionTask.status == status)
    if status != "all":
        raise cases.CaseError(f"unknown status filter {status!r}; use open, closed or all")
    return query


def _list_order() -> tuple[Any, ...]:
    """Open tasks first, the nearest deadline first; then closed ones, latest first; the
    id breaks every tie, so pages never overlap or skip a task."""
    is_open = DissuasionTask.status == "open"
    finished = func.coalesce(DissuasionTask.closed_at, DissuasionTask.created_at)
    return (
        case((is_open, 0), else_=1),
        case((is_open, DissuasionTask.deadline_at), else_=None).asc(),
        case((is_open, None), else_=finished).desc(),
        case((is_open, DissuasionTask.id), else_=-DissuasionTask.id),
    )


def task_page(
    *, session: Session, user: User, status: str = "all", limit: int | None = None, offset: int = 0
) -> TaskPage:
    """One page of the tasks in scope (`status`: all | open | closed) in list order, and
    how many there are in all."""
    if offset < 0 or (limit is not None and limit < 1):
        raise cases.CaseError("limit must be at least 1 and offset at least 0")
    query = _status_filter(_query(user), status)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    query = query.order_by(*_list_order()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    items = [task_public(session, task, lead, notice) for task, lead, notice in rows]
    return TaskPage(total=int(total), items=items)


def list_tasks(*, session: Session, user: User, status: str = "all") -> list[TaskPublic]:
    """Every task in scope, in list order (`task_page` for one page)."""
    return task_page(session=session, user=user, status=status).items


def _task(session: Session, user: User, task_id: int) -> tuple[DissuasionTask, DissuasionLead, Any]:
    row = session.execute(_query(user).where(DissuasionTask.id == task_id)).one_or_none()
    if row is None:
        raise NotFound("劝阻任务不存在")
    return row[0], row[1], row[2]


def attempt_public(session: Session, attempt: DissuasionAttempt) -> AttemptPublic:
    return AttemptPublic(
        id=attempt.id,
        task_id=attempt.task_id,
        channel=attempt.channel,
        reached=attempt.reached,
        note=attempt.note or "",
        officer=person_ref(session, attempt.officer_id),
        at=aware(attempt.at),
    )


def _attempts(session: Session, task_id: int) -> list[DissuasionAttempt]:
    return list(
        session.execute(
            select(DissuasionAttempt)
            .where(DissuasionAttempt.task_id == task_id)
            .order_by(DissuasionAttempt.at, DissuasionAttempt.id)
        ).scalars()
    )


def task_detail(
    *, session: Session, user: User, task_id: int, client_ip: str | None = None
) -> TaskDetail:
    """The task with the number to call and every attempt; the read is audited."""
    task, lead, notice = _task(session, user, task_id)
    audit.record(
        session, user, "read_dissuasion_task", "dissuasion_task", task.id, client_ip=client_ip
    )
    return TaskDetail(
        **task_public(session, task, lead, notice).dict(),
        phone=lead.phone,
        address=lead.address,
        attempts=[attempt_public(session, a) for a in _attempts(session, task.id)],
    )


# ------------------------------------------------------------------ working a task


def record_attempt(
    *,
    session: Session,
    user: User,
    task_id: int,
    channel: str,
    reached: bool,
    note: str = "",
    now: datetime | None = None,
) -> AttemptPublic:
    task, _, _ = _task(session, user, task_id)
    if channel not in CHANNELS:
        raise cases.CaseError(f"unknown channel {channel!r}; expected one of {CHANNELS}")
    if task.status != "open":
        raise Conflict("该劝阻任务已办结")
    attempt = DissuasionAttempt(
        task_id=task.id,
        channel=channel,
        reached=reached,
        note=note.strip(),
        officer_id=user.id,
        at=now or utcnow(),
    )
    session.add(attempt)
    session.flush()
    audit.record(
        session,
        user,
        "dissuasion_attempt",
        "dissuasion_task",
        task.id,
        channel=channel,
        reached=reached,
    )
    return attempt_public(session, attempt)


def set_outcome(
    *,
    session: Session,
    user: User,
    task_id: int,
    outcome: str,
    amount_protected: Decimal | None = None,
    now: datetime | None = None,
) -> TaskPublic:
    """Close the task with its outcome (once: a second outcome is a 409).

    - `unreachable` needs a visit attempt first (不见本人不放过): refused (409) otherwise;
      without one the task stays open and is escalated to the 反诈 desk at its deadline.
    - `dissuaded` may carry the amount that was about to be paid (≥ 0).
    - `defrauded` opens an urgent fraud case for the person and links it.
    """
    task, lead, _ = _task(session, user, task_id)
    if outcome not in OUTCOMES:
        raise cases.CaseError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
    if amount_protected is not None and outcome != "dissuaded":
        raise cases.CaseError("amount_protected is only recorded with outcome 'dissuaded'")
    if amount_protected is not None and amount_protected < 0:
        raise cases.CaseError("amount_protected must not be negative")
    if task.status != "open":
        raise Conflict("该劝阻任务已办结")
    if outcome == "unreachable" and not any(
        a.channel == "visit" for a in _attempts(session, task.id)
    ):
        raise Conflict("未联系上须先有上门走访记录（不见本人不放过）")
    now = now or utcnow()
    won = session.execute(
        update(DissuasionTask)
        .where(DissuasionTask.id == task.id, DissuasionTask.status == "open")
        .values(
            status="closed",
            outcome=outcome,
            amount_protected_fen=to_fen(amount_protected),
            closed_at=now,
            closed_by_id=user.id,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:  # another officer closed it a moment ago
        raise Conflict("该劝阻任务已办结")
    session.refresh(task)
    if outcome == "defrauded":
        task.case_id = _open_fraud_case(session, task, lead).id
    audit.record(
        session,
        user,
        "dissuasion_outcome",
        "dissuasion_task",
        task.id,
        outcome=outcome,
        case_id=task.case_id,
    )
    session.flush()
    notice = session.execute(
        select(DissuasionNotice.status).where(
            DissuasionNotice.task_id == task.id, DissuasionNotice.kind == "announce"
        )
    ).scalar_one_or_none()
    return task_public(session, task, lead, notice)


def sender_of(session: Session, task: DissuasionTask) -> str:
    """Whose case: the matched resident's openid, else a stand-in sender for a person who
    is not a WeChat resident (no message will ever be sent to it)."""
    if task.resident_id is not None:
        resident = session.get(Resident, task.resident_id)
        if resident is not None:
            return str(resident.openid)
    return f"{cases.OFFLINE_SENDER_PREFIX}{task.id}"


def _open_fraud_case(session: Session, task: DissuasionTask, lead: DissuasionLead) -> Any:
    """An urgent fraud case with the money-gone intake's details and the lead."""
    place = "".join(p for p in (task.street, task.community) if p)
    return cases.open_case(
        session=session,
        sender_id=sender_of(session, task),
        category="fraud_suspicion",
        priority="urgent",
        reason="dissuasion_defrauded",
        summary=f"【精准劝阻·已被骗】{lead.risk_type} {mask_phone(lead.phone)}"
        + (f" {place}" if place else ""),
        location=lead.address,
        details={
            "money_lost": True,
            "fraud_type": lead.risk_type,
            "victim_phone": lead.phone,
            "dissuasion_task_id": task.id,
            "lead_source": lead.source,
            "lead_external_id": lead.external_id,
            "risk_level": lead.risk_level,
            "warned_at": aware(lead.warned_at).isoformat(),
            "street": task.street,
            "community": task.community,
        },
    )
