"""Replay protection for signed requests, shared by every gateway worker.

A signature proves who sent a request, not that it is the first time we see it. Within
its timestamp window every accepted (scope, nonce) is remembered with a hash of what it
signed: the same nonce with the same body is a retry (WeChat sends each callback up to
three times); the same nonce with another body is a replay and is refused.

The first sighting is one `INSERT … ON CONFLICT` on the primary key, so two workers that
see the same nonce at once cannot both take it as new (no check-then-act), and the usual
case — a nonce never seen — costs one statement and no savepoint (issue 10: each
statement is a round trip on the path of the passive reply). An expired entry still in
the table is taken over by the same statement, so pruning expired entries is only
housekeeping: it runs once every `PRUNE_EVERY` sightings per process, not on each.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from casework.clock import utcnow
from casework.models import SeenNonce
from casework.upsert import insert_for

MAX_NONCE_KEY = 255
# Expired entries (of every scope) are deleted every this many sightings, per process;
# until then they are only rows a new sighting may overwrite. Two workers pruning at
# once delete the same rows: harmless.
PRUNE_EVERY = 100
_sightings = itertools.count()


class Sighting(enum.Enum):
    NEW = "new"  # never seen: go on
    RETRY = "retry"  # seen with the same body: a retry of an accepted request
    REPLAY = "replay"  # seen with another body: refuse


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def remember(
    *, session: Session, scope: str, nonce_key: str, body: bytes, window: timedelta
) -> Sighting:
    """Record `nonce_key` for `window` and say whether it is new, a retry or a replay.

    Commits nothing itself: the caller's transaction decides (a refused replay is rolled
    back with it). An entry of the same key whose window has passed counts as unseen."""
    if not nonce_key or len(nonce_key) > MAX_NONCE_KEY:
        raise ValueError("nonce key must be 1–255 characters")
    now = utcnow()
    digest = body_hash(body)
    if next(_sightings) % PRUNE_EVERY == 0:
        prune_expired(session=session, now=now)
    table = SeenNonce.__table__
    sighting = insert_for(session, table).values(
        scope=scope, nonce_key=nonce_key, body_hash=digest, expires_at=now + window
    )
    # New, or an expired entry taken over: one row written. A live entry: none (and on
    # PostgreSQL a concurrent first sighting is waited for, then seen as live).
    taken = sighting.on_conflict_do_update(
        index_elements=[table.c.scope, table.c.nonce_key],
        set_={"body_hash": digest, "expires_at": now + window},
        where=table.c.expires_at < now,
    )
    if session.execute(taken).rowcount == 1:
        return Sighting.NEW
    stored = session.execute(
        select(SeenNonce.body_hash).where(
            SeenNonce.scope == scope, SeenNonce.nonce_key == nonce_key
        )
    ).scalar_one_or_none()
    return Sighting.RETRY if stored == digest else Sighting.REPLAY


def prune_expired(
    *, session: Session, scope: str | None = None, now: datetime | None = None
) -> int:
    """Forget the entries (of `scope`, or of all) whose window has passed; how many."""
    expired = delete(SeenNonce).where(SeenNonce.expires_at < (now or utcnow()))
    if scope is not None:
        expired = expired.where(SeenNonce.scope == scope)
    result = session.execute(expired.execution_options(synchronize_session=False))
    return int(result.rowcount)
