"""Claims with an owner and an expiry: how several workers share background work.

Outbox items, governance-ticket sends and case notifications are each taken by one
worker (`worker_id()`: host:pid, unique per live process) with ONE atomic conditional
UPDATE whose condition is "unclaimed and due, or claimed and the claim expired":

- PostgreSQL: `UPDATE … WHERE id IN (SELECT id … FOR UPDATE SKIP LOCKED LIMIT n)
  RETURNING id` — two workers never wait on each other and never take the same row; the
  row lock re-checks the condition on the latest committed version.
- SQLite (one writer at a time): each candidate is taken by an UPDATE that repeats the
  condition, so a row another connection took in between is not taken again.

Only stale claims are taken over (`claim_expires_at <= now`). Finishing is conditional as
well (`WHERE claimed_by = me`, `release`): a worker that stalled past its claim's expiry
and was taken over does not overwrite what the new owner does.

Patient retries: a failed attempt waits `retry_delay(attempts)` (5 s doubling, at most
30 min) and the work fails for good only `RETRY_FOR` (24 h) after its first attempt.
No loop pass sleeps: the next attempt time is recorded and the pass moves on.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from casework.clock import aware

CLAIM_TTL = timedelta(minutes=5)  # only dead (or wedged) workers' claims expire
# What one pass claims at most. It sends them one after the other, each bounded by a
# 5 s connect + 5 s read timeout: 10 × 10 s stays well inside CLAIM_TTL, so a slow
# partner never lets a live worker's claim expire under it (which would mean two sends).
BATCH = 10
# A bot turn (an inbound message the gateway is asking Rasa about) is claimed by the
# worker that stored it. A live worker finishes well inside this: Rasa's read timeout is
# 30 s and a turn resent after an un-pause makes at most two such calls. Past it, the
# turn is answered with the fallback by whichever worker sweeps first, and the slow
# worker's late answer is dropped (`intake.answer_later` checks the owner).
TURN_CLAIM_TTL = timedelta(seconds=75)
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=30)
RETRY_FOR = timedelta(hours=24)


def worker_id() -> str:
    """This process as a claim owner: host:pid (several hosts may share the database)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 5 s, 10 s, 20 s … at most 30 min."""
    return min(RETRY_BASE * 2 ** min(max(attempts - 1, 0), 20), RETRY_CAP)


def retries_exhausted(first_attempt_at: datetime | None, now: datetime) -> bool:
    """True once `RETRY_FOR` has passed since the first attempt."""
    first = aware(first_attempt_at)
    return first is not None and now >= first + RETRY_FOR


def claim(
    session: Session,
    *,
    id_column: Any,
    claimable: ColumnElement[bool],
    order_by: Sequence[Any],
    values: dict[str, Any],
    limit: int,
) -> list[int]:
    """Take up to `limit` rows matching `claimable` by setting `values` (which name the
    owner and the expiry); returns the ids taken, by this call only."""
    model = id_column.class_
    if session.get_bind().dialect.name == "postgresql":
        # A materialised CTE runs once. As `id IN (subquery)` the planner may rescan the
        # subquery per row, and a rescan skips the rows this UPDATE already changed and
        # locks the next ones: more than `limit` rows would be taken.
        chosen = (
            select(id_column.label("id"))
            .where(claimable)
            .order_by(*order_by)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("chosen")
            .prefix_with("MATERIALIZED")
        )
        taken = session.execute(
            update(model)
            .where(id_column == chosen.c.id, claimable)
            .values(**values)
            .returning(id_column)
            .execution_options(synchronize_session=False)
        ).scalars()
        return sorted(int(i) for i in taken)
    candidates = list(
        session.execute(select(id_column).where(claimable).order_by(*order_by).limit(limit))
        .scalars()
        .all()
    )
    claimed = []
    for item_id in candidates:
        result = session.execute(
            update(model)
            .where(id_column == item_id, claimable)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            claimed.append(int(item_id))
    return claimed


def attempt_outcome(
    *,
    error: str | None,
    permanent: bool,
    attempts: int,
    first_attempt_at: datetime | None,
    now: datetime,
) -> tuple[str, datetime | None]:
    """After one sending attempt: ("sent", None); ("failed", None) when the error is
    permanent or retries ran out (`RETRY_FOR` since the first attempt); else ("pending",
    when to try next, after `retry_delay`)."""
    if error is None:
        return "sent", None
    if permanent or retries_exhausted(first_attempt_at, now):
        return "failed", None
    return "pending", now + retry_delay(attempts)


def attempt_values(
    *, owner: str, now: datetime, ttl: timedelta, attempts: Any, first_attempt_at: Any
) -> dict[str, Any]:
    """What claiming for one more sending attempt sets: the owner and the expiry, one more
    attempt, and the first attempt's time kept (retries_exhausted counts from it)."""
    return {
        "claimed_by": owner,
        "claim_expires_at": now + ttl,
        attempts.key: attempts + 1,
        first_attempt_at.key: func.coalesce(first_attempt_at, now),
    }


def record_notice_attempt(
    session: Session,
    *,
    model: Any,
    notice_id: int,
    error: str | None,
    permanent: bool,
    owner: str,
    now: datetime,
) -> str:
    """One sending attempt of a notice row (a table with `attempts`, `first_attempt_at`,
    `status`, `error`, `next_attempt_at`, `sent_at` and the claim columns: `CaseNotice`,
    `DissuasionNotice`): "sent", "pending" (retried after the backoff), "failed", or
    "lost" when our claim was taken over and nothing was written."""
    row = session.execute(
        select(model.attempts, model.first_attempt_at).where(
            model.id == notice_id, model.claimed_by == owner, model.status == "pending"
        )
    ).one_or_none()
    if row is None:
        return "lost"
    attempts, first_attempt_at = row
    outcome, next_attempt = attempt_outcome(
        error=error,
        permanent=permanent,
        attempts=attempts,
        first_attempt_at=first_attempt_at,
        now=now,
    )
    values: dict[str, object] = {"error": error[:1000] if error else None}
    if outcome == "pending":
        values["next_attempt_at"] = next_attempt
    else:
        values["status"] = outcome
    if outcome == "sent":
        values["sent_at"] = now
    released = release(
        session,
        id_column=model.id,
        item_id=notice_id,
        owner_column=model.claimed_by,
        owner=owner,
        values={"claimed_by": None, "claim_expires_at": None, **values},
        also=model.status == "pending",
    )
    return outcome if released else "lost"


def claim_rows(
    session: Session,
    *,
    id_column: Any,
    claimable: ColumnElement[bool],
    order_by: Sequence[Any],
    values: dict[str, Any],
    limit: int,
) -> list[Any]:
    """`claim`, then the rows taken (in id order), read afresh from the database: the
    claiming UPDATE bypassed the session, so what it holds may be stale."""
    taken = claim(
        session,
        id_column=id_column,
        claimable=claimable,
        order_by=order_by,
        values=values,
        limit=limit,
    )
    if not taken:
        return []
    return list(
        session.execute(
            select(id_column.class_)
            .where(id_column.in_(taken))
            .order_by(id_column)
            .execution_options(populate_existing=True)
        ).scalars()
    )


def release(
    session: Session,
    *,
    id_column: Any,
    item_id: int,
    owner_column: Any,
    owner: str,
    values: dict[str, Any],
    also: ColumnElement[bool] | None = None,
) -> bool:
    """Finish a claim: set `values` only while the row is still claimed by `owner` (and
    `also` holds). False when the claim was taken over: the caller must not write."""
    statement = update(id_column.class_).where(id_column == item_id, owner_column == owner)
    if also is not None:
        statement = statement.where(also)
    result = session.execute(
        statement.values(**values).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)


def release_row(
    session: Session,
    *,
    id_column: Any,
    item_id: int,
    owner_column: Any,
    owner: str,
    values: dict[str, Any],
    also: ColumnElement[bool] | None = None,
) -> Any | None:
    """`release`, then the row as it now is; None when the claim was taken over."""
    if not release(
        session,
        id_column=id_column,
        item_id=item_id,
        owner_column=owner_column,
        owner=owner,
        values=values,
        also=also,
    ):
        return None
    return session.get(id_column.class_, item_id, populate_existing=True)
