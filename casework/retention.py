"""Retention: residents' words and the details of finished matters are not kept for ever.

`purge` anonymises, older than a cutoff (`RETENTION_DAYS`, 180 by default). The gateway
runs it once a day by itself (`purge_if_due`, claimed by one worker); `jmt purge` runs it
by hand:

- **messages** of residents' conversations, both directions (the bot's echo and an
  officer's reply can quote the resident): content becomes `PURGED`, media `{}`, raw
  XML and the passive reply None, `redacted_at` set. Direction, type, intent,
  confidence, sender, delivery and times stay: the metrics (答复及时率, NLU quality) are
  computed from them. The outbox copy of a purged outbound message is blanked too.
- **closed cases**: summary, details, location and resolution, and the officers' notes
  on them. Category, priority, desk, street, community, every time, the rating and the
  assignment stay (metrics, accountability).
- **finished tickets** (resolved, rejected, failed, or linked to a finished one):
  summary, details, location and the platform's note. Kind, place names and times stay.
- the last **location** a resident shared with their conversation.
- **紧急止付 records of closed cases** (closed before the cutoff): the bank account
  number becomes "" (`ANONYMOUS_ACCOUNT`; shown as 已清除). The bank, the amounts asked
  to stop, frozen and recovered, who acted and every time stay: the money protected is
  one of the bureau's numbers. A case still open keeps its accounts.
- **finished dissuasion tasks** (精准劝阻, closed before the cutoff): the lead's phone
  number, name and address, and the officers' notes on the contact attempts. Risk type
  and level, source, community, outcome, amount protected and every time stay (the
  bureau's numbers). An open task keeps everything: someone still has to be reached.
- **Rasa's tracker store** (`RASA_TRACKER_DB` in development, `RASA_DB_*` in production):
  its events older than the cutoff are deleted, except those of residents with an open
  matter (`purge_rasa_events`) — Rasa keeps every word too, in its own database.

Kept whatever their age: everything of a resident who has an open case or an open
ticket (the matter is not over; an officer may need the whole story), and the audit
trail (who did what stays answerable; it holds ids, not words).

NLU annotations (decided here): an annotation a trainer **kept** is a curated training
example whose text was masked (`mask_pii`) when it was made, and it is exported into
`nlu_data/`, which lives in git beyond any database retention — so it stays, only cut
loose from the message it came from. A **discarded** annotation has no use: its text is
blanked with its message.

Idempotent: rows already carrying `redacted_at` (or the marker) are not touched again,
so a second run reports zeros. One transaction: the caller's session decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, column, delete, func, inspect, or_, select, table, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from casework import db
from casework.clock import utcnow
from casework.models import (
    Case,
    CaseNote,
    Conversation,
    DissuasionAttempt,
    DissuasionLead,
    DissuasionTask,
    Message,
    OutboxItem,
    SharedValue,
    StopPayment,
    Ticket,
)
from casework.nlu_inbox import NluAnnotation
from casework.tickets import FINAL_STATES, OPEN_STATES

PURGED = "[已按保存期限清除]"
ANONYMOUS_PHONE = ""  # a purged lead's phone (the column is NOT NULL; "" is no number)
ANONYMOUS_ACCOUNT = ""  # a purged stop-payment account (NOT NULL too)
_AGE = re.compile(r"\s*([0-9]{1,6})\s*([dh])\s*", re.IGNORECASE)


@dataclass(frozen=True)
class PurgeReport:
    """How many rows each part of a purge anonymised."""

    cutoff: datetime
    messages: int = 0
    outbox: int = 0
    cases: int = 0
    case_notes: int = 0
    tickets: int = 0
    conversations: int = 0
    annotations: int = 0
    dissuasion_leads: int = 0
    stop_payments: int = 0
    rasa_events: int = 0

    def lines(self) -> list[str]:
        return [
            f"cutoff {self.cutoff.isoformat(timespec='seconds')}",
            f"messages anonymised: {self.messages}",
            f"outbox texts blanked: {self.outbox}",
            f"closed cases anonymised: {self.cases} (notes: {self.case_notes})",
            f"finished tickets anonymised: {self.tickets}",
            f"conversation locations cleared: {self.conversations}",
            f"discarded NLU annotations blanked: {self.annotations}",
            f"finished dissuasion leads anonymised: {self.dissuasion_leads}",
            f"stop-payment accounts of closed cases cleared: {self.stop_payments}",
            f"Rasa tracker events deleted: {self.rasa_events}",
        ]


def parse_age(text: str) -> timedelta:
    """`180d` or `12h` (whole days or hours, at least one hour) → a timedelta."""
    match = _AGE.fullmatch(text or "")
    if match is None:
        raise ValueError(f"expected a number of days or hours such as 180d or 12h, not {text!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    age = timedelta(days=number) if unit == "d" else timedelta(hours=number)
    if age < timedelta(hours=1):
        raise ValueError("the age must be at least 1h")
    return age


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _busy_residents() -> Any:
    """Residents whose matter is not over: nothing of theirs is purged."""
    return (
        select(Case.sender_id)
        .where(Case.status != "closed")
        .union(select(Ticket.sender_id).where(Ticket.status.in_(OPEN_STATES)))
    )


def purge(
    *,
    session: Session,
    older_than: timedelta,
    now: datetime | None = None,
    tracker_url: str | None = None,
) -> PurgeReport:
    """Anonymise what is older than `now - older_than` (see the module docstring); with
    `tracker_url`, Rasa's tracker store too (`purge_rasa_events`)."""
    if older_than <= timedelta(0):
        raise ValueError("older_than must be positive")
    cutoff = (now or utcnow()) - older_than
    busy = _busy_residents()
    busy_conversations = select(Conversation.id).where(Conversation.openid.in_(busy))
    no_sync = {"synchronize_session": False}

    old_messages = and_(
        Message.created_at < cutoff,
        Message.redacted_at.is_(None),
        Message.conversation_id.not_in(busy_conversations),
    )
    purged_ids = list(session.execute(select(Message.id).where(old_messages)).scalars())
    annotations = outbox = 0
    if purged_ids:
        for chunk in _chunks(purged_ids):
            annotations += _count(
                session.execute(
                    update(NluAnnotation)
                    .where(
                        NluAnnotation.message_id.in_(chunk),
                        NluAnnotation.status == "discarded",
                        NluAnnotation.text != PURGED,
                    )
                    .values(text=PURGED, entities=[])
                    .execution_options(**no_sync)
                )
            )
            outbox += _count(
                session.execute(
                    update(OutboxItem)
                    .where(
                        OutboxItem.message_id.in_(chunk),
                        OutboxItem.status != "pending",  # still to deliver: not ours to blank
                        OutboxItem.text != PURGED,
                    )
                    .values(text=PURGED)
                    .execution_options(**no_sync)
                )
            )
    messages = 0
    for chunk in _chunks(purged_ids):
        messages += _count(
            session.execute(
                update(Message)
                .where(Message.id.in_(chunk), Message.redacted_at.is_(None))
                .values(content=PURGED, media={}, raw=None, reply=None, redacted_at=utcnow())
                .execution_options(**no_sync)
            )
        )

    old_cases = and_(
        Case.status == "closed",
        Case.redacted_at.is_(None),
        func.coalesce(Case.closed_at, Case.updated_at) < cutoff,
        Case.sender_id.not_in(busy),
    )
    case_ids = list(session.execute(select(Case.id).where(old_cases)).scalars())
    case_notes = cases = 0
    for chunk in _chunks(case_ids):
        case_notes += _count(
            session.execute(
                update(CaseNote)
                .where(CaseNote.case_id.in_(chunk), CaseNote.text != PURGED)
                .values(text=PURGED)
                .execution_options(**no_sync)
            )
        )
        cases += _count(
            session.execute(
                update(Case)
                .where(Case.id.in_(chunk), Case.redacted_at.is_(None))
                .values(
                    summary=PURGED,
                    details={},
                    location=None,
                    resolution=PURGED,
                    redacted_at=utcnow(),
                    updated_at=Case.updated_at,  # the times stay what they were
                )
                .execution_options(**no_sync)
            )
        )

    finished_originals = select(Ticket.id).where(
        Ticket.status.in_(tuple(s for s in FINAL_STATES if s != "linked"))
    )
    finished = or_(
        and_(Ticket.status.in_(FINAL_STATES), Ticket.status != "linked"),
        and_(Ticket.status == "linked", Ticket.linked_to_id.in_(finished_originals)),
    )
    tickets = _count(
        session.execute(
            update(Ticket)
            .where(
                finished,
                Ticket.redacted_at.is_(None),
                Ticket.updated_at < cutoff,
                Ticket.sender_id.not_in(busy),
            )
            .values(
                summary=PURGED,
                details={},
                location=None,
                status_note=None,
                redacted_at=utcnow(),
                updated_at=Ticket.updated_at,
            )
            .execution_options(**no_sync)
        )
    )

    conversations = _count(
        session.execute(
            update(Conversation)
            .where(
                Conversation.updated_at < cutoff,
                Conversation.location_label.is_not(None)
                | Conversation.location_lat.is_not(None)
                | Conversation.location_lng.is_not(None),
                Conversation.id.not_in(busy_conversations),
            )
            .values(
                location_label=None,
                location_lat=None,
                location_lng=None,
                updated_at=Conversation.updated_at,
            )
            .execution_options(**no_sync)
        )
    )
    # Every closed case past the cutoff, also one anonymised by an earlier run (before
    # stop-payment accounts were purged): its 止付 accounts go, the amounts stay.
    finished_cases = select(Case.id).where(
        Case.status == "closed",
        func.coalesce(Case.closed_at, Case.updated_at) < cutoff,
        Case.sender_id.not_in(busy),
    )
    stop_payments = _count(
        session.execute(
            update(StopPayment)
            .where(
                StopPayment.case_id.in_(finished_cases),
                StopPayment.account != ANONYMOUS_ACCOUNT,
            )
            .values(account=ANONYMOUS_ACCOUNT)
            .execution_options(**no_sync)
        )
    )
    finished_tasks = select(DissuasionTask.id).where(
        DissuasionTask.status == "closed", DissuasionTask.closed_at < cutoff
    )
    dissuasion_leads = _count(
        session.execute(
            update(DissuasionLead)
            .where(
                DissuasionLead.id.in_(
                    select(DissuasionTask.lead_id).where(DissuasionTask.id.in_(finished_tasks))
                ),
                DissuasionLead.phone != ANONYMOUS_PHONE,
            )
            .values(phone=ANONYMOUS_PHONE, name=None, address=None)
            .execution_options(**no_sync)
        )
    )
    session.execute(
        update(DissuasionAttempt)
        .where(DissuasionAttempt.task_id.in_(finished_tasks), DissuasionAttempt.note != "")
        .values(note="")
        .execution_options(**no_sync)
    )
    session.flush()
    return PurgeReport(
        cutoff=cutoff,
        dissuasion_leads=dissuasion_leads,
        stop_payments=stop_payments,
        messages=messages,
        outbox=outbox,
        cases=cases,
        case_notes=case_notes,
        tickets=tickets,
        conversations=conversations,
        annotations=annotations,
        rasa_events=(
            purge_rasa_events(session=session, tracker_url=tracker_url, cutoff=cutoff)
            if tracker_url
            else 0
        ),
    )


_RASA_EVENTS = table("events", column("sender_id"), column("timestamp"))


def purge_rasa_events(*, session: Session, tracker_url: str, cutoff: datetime) -> int:
    """Rasa's SQL tracker store keeps every event of every conversation — the residents'
    words among them — in its own database. Delete the events older than the cutoff,
    except those of residents whose matter is still open (the rule of our own tables).
    Rasa rebuilds a tracker from the events that remain; a conversation idle for the
    retention period has long since started a new session."""
    engine = db.foreign_engine(tracker_url)
    if not inspect(engine).has_table("events"):
        return 0  # Rasa has not stored anything yet
    busy = set(session.execute(_busy_residents()).scalars())
    old = _RASA_EVENTS.c.timestamp < cutoff.timestamp()
    deleted = 0
    with engine.begin() as connection:
        senders = connection.execute(select(_RASA_EVENTS.c.sender_id).where(old).distinct())
        purgeable = sorted({str(sender) for sender in senders.scalars()} - busy)
        for start in range(0, len(purgeable), 500):
            chunk = purgeable[start : start + 500]
            deleted += _count(
                connection.execute(
                    delete(_RASA_EVENTS).where(old, _RASA_EVENTS.c.sender_id.in_(chunk))
                )
            )
    return deleted


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    """Bounded IN lists (SQLite allows a limited number of bound parameters)."""
    return [ids[start : start + size] for start in range(0, len(ids), size)]


# ------------------------------------------------------------------ the daily run

DAILY_CLAIM = "retention:daily"
DAILY_EVERY = timedelta(hours=24)


def claim_daily_run(*, session: Session, owner: str, now: datetime | None = None) -> bool:
    """True for exactly one caller per day, whatever the number of gateway workers.

    The claim is a `shared_values` row with an owner and an expiry: the first caller
    inserts it (the primary key refuses a second insert), later callers take it over only
    once it has expired, by one conditional UPDATE — never check-then-act."""
    now = now or utcnow()
    try:
        with session.begin_nested():
            session.add(SharedValue(key=DAILY_CLAIM, value=owner, expires_at=now + DAILY_EVERY))
        return True
    except IntegrityError:
        taken = session.execute(
            update(SharedValue)
            .where(SharedValue.key == DAILY_CLAIM, SharedValue.expires_at < now)
            .values(value=owner, expires_at=now + DAILY_EVERY)
            .execution_options(synchronize_session=False)
        ).rowcount
        return taken == 1


def purge_if_due(
    *,
    session: Session,
    owner: str,
    retention_days: int,
    now: datetime | None = None,
    tracker_url: str | None = None,
) -> PurgeReport | None:
    """The gateway's daily purge (`RETENTION_DAYS`); None when another worker (or this
    one, earlier today) already ran it."""
    if not claim_daily_run(session=session, owner=owner, now=now):
        return None
    return purge(
        session=session,
        older_than=timedelta(days=retention_days),
        now=now,
        tracker_url=tracker_url,
    )
