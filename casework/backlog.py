"""Work waiting, counted for the operators (GET /metrics, gateway/observability.py).

Cheap enough for every scrape: one `COUNT(*) … GROUP BY` per table, each on an indexed
status column, and only the rows still waiting (sent messages and closed cases are
most of each table and are left out by the WHERE). Known values are always present
(zero when nothing waits), so a gauge never vanishes and alerts need no `absent()`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework.cases import OPEN_TICKET_STATES, PRIORITIES
from casework.models import Case, OutboxItem, Ticket
from casework.schemas import BacklogPublic

OUTBOX_WAITING = ("pending", "sending", "failed")  # `sent` is done
TICKETS_WAITING = (*OPEN_TICKET_STATES, "failed")  # failed: back with officers
NOTIFICATIONS_WAITING = ("pending", "failed")


def _counts(session: Session, column: Any, where: Any, known: tuple[str, ...]) -> dict[str, int]:
    found = dict.fromkeys(known, 0)
    rows = session.execute(select(column, func.count()).where(where).group_by(column))
    for value, count in rows:
        found[str(value)] = int(count)
    return found


def snapshot(*, session: Session) -> BacklogPublic:
    """The outbox, tickets, open cases and case notifications still waiting, by state."""
    return BacklogPublic(
        outbox=_counts(
            session, OutboxItem.status, OutboxItem.status.in_(OUTBOX_WAITING), OUTBOX_WAITING
        ),
        tickets=_counts(
            session, Ticket.status, Ticket.status.in_(TICKETS_WAITING), TICKETS_WAITING
        ),
        open_cases=_counts(session, Case.priority, Case.status != "closed", PRIORITIES),
        notifications=_counts(
            session,
            Case.notify_status,
            Case.notify_status.in_(NOTIFICATIONS_WAITING),
            NOTIFICATIONS_WAITING,
        ),
    )
