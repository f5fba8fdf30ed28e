"""The data side of the dispatcher's dissuasion step: warn matched residents in WeChat,
escalate overdue tasks, and hand out the DingTalk notices to send — each exactly once
with several gateway workers (`casework.claims`).

- **Resident warning** (`warn_residents`): one conditional UPDATE takes the task
  (`resident_warned_at` NULL → now) and the warning is queued in the outbox in the same
  transaction: both happen or neither, and no second worker can take the task again.
  It goes out as a customer-service message, which WeChat accepts only within 48 h of
  the resident's last message; outside that window the outbox records it failed (the
  template-message path of the broadcasts slice is the way to reach them later).
- **Escalation** (`escalate_overdue`): an open task past its deadline without an outcome
  is taken the same way (`escalated_at` NULL → now, desk 反诈) and gets an `escalate`
  notice; (task, kind) is unique, so a task is escalated once.
- **Notices** (`notices_due` / `record_notice`), like case announcements
  (`casework.dispatch`):

      pending (unclaimed, due) ──claim──► pending (claimed_by=me, expires; attempts + 1)
      pending (claimed) ──owner: delivered──► sent
                        ├─owner: transient failure──► pending (unclaimed, backoff)
                        ├─owner: permanent, or 24 h of failures──► failed
                        └─claim expired (owner died)──► taken over by another worker
      no notifier configured ──► failed at once ("DINGTALK_WEBHOOK_URL 未配置")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from casework import audit, claims, outbox, routing
from casework.clock import aware, utcnow
from casework.conversations import conversation_for
from casework.dissuasion import DESK, warning_text
from casework.handling import officer_name
from casework.models import DissuasionLead, DissuasionNotice, DissuasionTask, Resident, User
from casework.residents import mask_phone

logger = logging.getLogger(__name__)
NO_NOTIFIER = "DINGTALK_WEBHOOK_URL 未配置"


@dataclass(frozen=True)
class TaskNotice:
    """A DingTalk notice to send about a task: what it says, and whom it rings."""

    notice_id: int
    task_id: int
    kind: str  # announce | escalate
    risk_level: str
    risk_type: str
    phone_masked: str
    street: str | None
    community: str | None
    deadline_at: datetime
    names: tuple[str, ...]
    mobiles: tuple[str, ...]
    resident_matched: bool


# ------------------------------------------------------------------ the resident's warning


def warn_residents(
    *, session: Session, now: datetime | None = None, limit: int = claims.BATCH
) -> list[int]:
    """Queue the WeChat warning for each new task whose person is a WeChat resident; the
    ids of the tasks taken. Unsubscribed residents are taken but not written to."""
    now = now or utcnow()
    taken = claims.claim(
        session,
        id_column=DissuasionTask.id,
        claimable=(DissuasionTask.status == "open")
        & DissuasionTask.resident_id.is_not(None)
        & DissuasionTask.resident_warned_at.is_(None),
        order_by=(DissuasionTask.id,),
        values={"resident_warned_at": now},
        limit=limit,
    )
    for task_id in taken:
        task = session.get(DissuasionTask, task_id, populate_existing=True)
        assert task is not None
        lead = session.get(DissuasionLead, task.lead_id)
        resident = session.get(Resident, task.resident_id)
        if lead is None or resident is None:
            continue
        if not resident.subscribed:
            logger.info("dissuasion task %s: the resident unsubscribed, no warning", task_id)
            continue
        conversation = conversation_for(session=session, openid=resident.openid)
        outbox.enqueue(
            session=session,
            conversation_id=conversation.id,
            openid=resident.openid,
            text=warning_text(lead.risk_type),
            sender="system",
        )
    return taken


# ------------------------------------------------------------------ escalation


def escalate_overdue(
    *, session: Session, now: datetime | None = None, limit: int = claims.BATCH
) -> list[int]:
    """Open tasks past their deadline go to the 反诈 desk, once each (不接电话不放过)."""
    now = now or utcnow()
    taken = claims.claim(
        session,
        id_column=DissuasionTask.id,
        claimable=(DissuasionTask.status == "open")
        & DissuasionTask.escalated_at.is_(None)
        & (DissuasionTask.deadline_at <= now),
        order_by=(DissuasionTask.deadline_at, DissuasionTask.id),
        values={"escalated_at": now, "desk": DESK},
        limit=limit,
    )
    for task_id in taken:
        session.add(
            DissuasionNotice(task_id=task_id, kind="escalate", status="pending", attempts=0)
        )
        audit.record(session, None, "dissuasion_escalated", "dissuasion_task", task_id)
    session.flush()
    return taken


# ------------------------------------------------------------------ DingTalk notices


def _claimable(now: datetime) -> ColumnElement[bool]:
    pending = DissuasionNotice.status == "pending"
    due = (
        pending
        & DissuasionNotice.claimed_by.is_(None)
        & or_(DissuasionNotice.next_attempt_at.is_(None), DissuasionNotice.next_attempt_at <= now)
    )
    stale = pending & DissuasionNotice.claimed_by.is_not(None)
    return due | (stale & (DissuasionNotice.claim_expires_at <= now))


def _desk_officers(session: Session) -> list[User]:
    return list(
        session.execute(
            select(User)
            .where(User.role == "officer", User.desk == DESK, User.active.is_(True))
            .order_by(User.id)
        ).scalars()
    )


def _people(session: Session, task: DissuasionTask, kind: str) -> list[User]:
    """Who is rung: the assignee (announce), plus the 反诈 desk (escalate); the duty
    commander when nobody else would be."""
    assignee = session.get(User, task.assignee_id) if task.assignee_id else None
    people = [assignee] if assignee else []
    if kind == "escalate":
        people += _desk_officers(session)
    if not people:
        commander = routing.duty_commander(session)
        people = [commander] if commander else []
    return list(dict.fromkeys(people))


def notices_due(
    *,
    session: Session,
    can_notify: bool,
    owner: str | None = None,
    now: datetime | None = None,
    limit: int = claims.BATCH,
    ttl: timedelta = claims.CLAIM_TTL,
) -> list[TaskNotice]:
    """Claim the notices due (new, a retry, or a dead worker's) and return them to send.
    Without a notifier they are marked failed at once (visible on the task)."""
    now = now or utcnow()
    owner = owner or claims.worker_id()
    taken: list[DissuasionNotice] = claims.claim_rows(
        session,
        id_column=DissuasionNotice.id,
        claimable=_claimable(now),
        order_by=(DissuasionNotice.id,),
        values={
            **claims.attempt_values(
                owner=owner,
                now=now,
                ttl=ttl,
                attempts=DissuasionNotice.attempts,
                first_attempt_at=DissuasionNotice.first_attempt_at,
            ),
            "next_attempt_at": None,
        },
        limit=limit,
    )
    due = []
    for notice in taken:
        if not can_notify:
            notice.status, notice.error = "failed", NO_NOTIFIER
            notice.claimed_by = notice.claim_expires_at = None
            continue
        task = session.get(DissuasionTask, notice.task_id)
        lead = session.get(DissuasionLead, task.lead_id) if task else None
        if task is None or lead is None:
            continue
        people = _people(session, task, notice.kind)
        due.append(
            TaskNotice(
                notice_id=notice.id,
                task_id=task.id,
                kind=notice.kind,
                risk_level=lead.risk_level,
                risk_type=lead.risk_type,
                phone_masked=mask_phone(lead.phone),
                street=task.street,
                community=task.community,
                deadline_at=aware(task.deadline_at),
                names=tuple(officer_name(p) for p in people),
                mobiles=tuple(p.mobile for p in people if p.mobile),
                resident_matched=task.resident_id is not None,
            )
        )
    session.flush()
    return due


def record_notice(
    *,
    session: Session,
    notice_id: int,
    error: str | None,
    permanent: bool = False,
    owner: str | None = None,
    now: datetime | None = None,
) -> str:
    """What became of one sending attempt: "sent", "pending" (retried after the backoff),
    "failed", or "lost" when our claim was taken over and nothing was written."""
    return claims.record_notice_attempt(
        session,
        model=DissuasionNotice,
        notice_id=notice_id,
        error=error,
        permanent=permanent,
        owner=owner or claims.worker_id(),
        now=now or utcnow(),
    )
