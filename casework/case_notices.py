"""Personal DingTalk notices about cases and the urgent-case escalation (issue 12): the
data side; the dispatcher (`gateway/dispatcher.py`) sends.

- **Personal announcements** (`add_personal_announcements`, called while a case is
  routed): each officer routing considers for the case — its desk's or its community's
  officers, the assignee, the commander routing named — who has a DingTalk id gets one
  work notification: a `case_notices` row (kind `announce`, channel `personal`,
  recipient = the DingTalk id). UNIQUE (case, kind, channel, recipient): one per case per
  officer, however often the case is routed and by however many workers.
- **Escalation** (`escalate_unclaimed`): an urgent case still unclaimed after its
  response target (`cases.due_at`) is taken by one conditional UPDATE
  (`escalated_at` NULL → now): once per case, whatever the number of workers. It gets a
  group message @-mentioning the commanders and a work notification to each commander
  with a DingTalk id.
- **Sending** (`notices_due` / `record_notice`), like every other send
  (`casework.claims`):

      pending (unclaimed, due) ──claim──► pending (claimed_by=me, expires; attempts + 1)
      pending (claimed) ──owner: delivered──► sent
                        ├─owner: transient failure──► pending (unclaimed, backoff)
                        ├─owner: permanent, or 24 h of failures──► failed
                        └─claim expired (owner died)──► taken over by another worker
      channel not configured ──► failed at once (the reason names the setting)
      case closed (or, for an escalation, claimed) before it was sent ──► cancelled
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from casework import audit, claims, routing
from casework.clock import utcnow
from casework.handling import officer_name
from casework.models import Case, CaseNotice, User

logger = logging.getLogger(__name__)

ANNOUNCE, ESCALATE = "announce", "escalate"
PERSONAL, GROUP = "personal", "group"
NOT_CONFIGURED = {
    PERSONAL: "DINGTALK_APP_KEY 未配置（个人工作通知）",
    GROUP: "DINGTALK_WEBHOOK_URL 未配置",
}


@dataclass(frozen=True)
class CaseFacts:
    """What a notice says about its case."""

    id: int
    category: str
    priority: str
    street: str | None
    community: str | None
    location: str | None
    summary: str


@dataclass(frozen=True)
class DueNotice:
    """A notice to send now: about which case, to whom, and on which channel."""

    notice_id: int
    kind: str  # announce | escalate
    channel: str  # personal | group
    case: CaseFacts
    user_ids: tuple[str, ...]  # personal: the recipient's DingTalk id
    names: tuple[str, ...]  # announce: the assignee; escalate: the commanders rung
    mobiles: tuple[str, ...]  # escalate: the commanders' mobiles (@-mentioned in the group)


def facts(case: Case) -> CaseFacts:
    return CaseFacts(
        id=case.id,
        category=case.category,
        priority=case.priority,
        street=case.street,
        community=case.community,
        location=case.location,
        summary=case.summary,
    )


def _add(session: Session, case_id: int, kind: str, channel: str, user: User | None) -> bool:
    """Insert one notice unless it exists (never check-then-insert: a savepoint)."""
    recipient = (user.dingtalk_id or "") if user is not None else ""
    try:
        with session.begin_nested():
            session.add(
                CaseNotice(
                    case_id=case_id,
                    kind=kind,
                    channel=channel,
                    recipient=recipient,
                    user_id=user.id if user is not None else None,
                    status="pending",
                    attempts=0,
                )
            )
        return True
    except IntegrityError:
        return False


def personal_recipients(session: Session, case: Case, also: list[User | None]) -> list[User]:
    """The officers told personally about a case: routing's officers for it and `also`
    (the assignee, the commander routing named), active and bound to DingTalk."""
    people = routing.officers_for(session=session, case=case) + [p for p in also if p]
    unique = {p.id: p for p in people}
    return [p for p in unique.values() if p.active and p.dingtalk_id]


def add_personal_announcements(*, session: Session, case: Case, people: list[User]) -> int:
    """One personal announcement per officer (with a DingTalk id); how many were new."""
    return sum(
        _add(session, case.id, ANNOUNCE, PERSONAL, person)
        for person in people
        if person.dingtalk_id
    )


# ------------------------------------------------------------------ escalation


def escalate_unclaimed(
    *,
    session: Session,
    now: datetime | None = None,
    personal: bool,
    group: bool,
    limit: int = claims.BATCH,
) -> list[int]:
    """Urgent cases still unclaimed after their response target: each taken once (one
    conditional UPDATE sets `escalated_at`), with a group notice and a personal notice
    per commander. Returns the ids taken."""
    now = now or utcnow()
    taken = claims.claim(
        session,
        id_column=Case.id,
        claimable=(Case.priority == "urgent")
        & (Case.status == "open")
        & Case.claimed_by_id.is_(None)
        & Case.escalated_at.is_(None)
        & Case.due_at.is_not(None)
        & (Case.due_at <= now),
        order_by=(Case.due_at, Case.id),
        values={"escalated_at": now},
        limit=limit,
    )
    commanders = routing.alert_commanders(session) if taken else []
    for case_id in taken:
        if group:
            _add(session, case_id, ESCALATE, GROUP, None)
        if personal:
            for commander in commanders:
                if commander.dingtalk_id:
                    _add(session, case_id, ESCALATE, PERSONAL, commander)
        audit.record(
            session,
            None,
            "case_escalated",
            "case",
            case_id,
            commanders=[officer_name(c) for c in commanders],
        )
    session.flush()
    return taken


# ------------------------------------------------------------------ sending


def _claimable(now: datetime) -> ColumnElement[bool]:
    pending = CaseNotice.status == "pending"
    due = (
        pending
        & CaseNotice.claimed_by.is_(None)
        & or_(CaseNotice.next_attempt_at.is_(None), CaseNotice.next_attempt_at <= now)
    )
    stale = pending & CaseNotice.claimed_by.is_not(None) & (CaseNotice.claim_expires_at <= now)
    return due | stale


def notices_due(
    *,
    session: Session,
    personal: bool,
    group: bool,
    owner: str | None = None,
    now: datetime | None = None,
    limit: int = claims.BATCH,
    ttl: timedelta = claims.CLAIM_TTL,
) -> list[DueNotice]:
    """Claim the notices due (new, a retry, or a dead worker's) and return them to send.
    A notice whose channel is not configured (`personal` / `group` False) fails at once."""
    now = now or utcnow()
    owner = owner or claims.worker_id()
    taken: list[CaseNotice] = claims.claim_rows(
        session,
        id_column=CaseNotice.id,
        claimable=_claimable(now),
        order_by=(CaseNotice.id,),
        values={
            **claims.attempt_values(
                owner=owner,
                now=now,
                ttl=ttl,
                attempts=CaseNotice.attempts,
                first_attempt_at=CaseNotice.first_attempt_at,
            ),
            "next_attempt_at": None,
        },
        limit=limit,
    )
    commanders: list[User] | None = None
    due = []
    for notice in taken:
        configured = personal if notice.channel == PERSONAL else group
        case = session.get(Case, notice.case_id)
        if not configured or case is None:
            notice.status = "failed"
            notice.error = NOT_CONFIGURED[notice.channel] if case else "案件不存在"
            notice.claimed_by = notice.claim_expires_at = None
            continue
        if case.status == "closed" or (notice.kind == ESCALATE and case.claimed_by_id):
            notice.status, notice.error = "cancelled", "案件已认领或办结，无需再提醒"
            notice.claimed_by = notice.claim_expires_at = None
            continue
        rung: list[User] = []
        if notice.kind == ESCALATE:
            if commanders is None:
                commanders = routing.alert_commanders(session)
            rung = commanders
        elif case.assigned_to_id is not None:  # an announcement names the assignee
            assignee = session.get(User, case.assigned_to_id)
            rung = [assignee] if assignee else []
        due.append(
            DueNotice(
                notice_id=notice.id,
                kind=notice.kind,
                channel=notice.channel,
                case=facts(case),
                user_ids=(notice.recipient,) if notice.channel == PERSONAL else (),
                names=tuple(officer_name(c) for c in rung),
                mobiles=tuple(c.mobile for c in rung if c.mobile),
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
        model=CaseNotice,
        notice_id=notice_id,
        error=error,
        permanent=permanent,
        owner=owner or claims.worker_id(),
        now=now or utcnow(),
    )
