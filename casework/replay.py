"""Replay protection for signed requests, shared by every gateway worker.

A signature proves who sent a request, not that it is the first time we see it. Within
its timestamp window every accepted (scope, nonce) is remembered with a hash of what it
signed: the same nonce with the same body is a retry (WeChat sends each callback up to
three times); the same nonce with another body is a replay and is refused.

The first sighting is an INSERT guarded by the primary key, so two workers that see the
same nonce at once cannot both take it as new (no check-then-act).
"""

from __future__ import annotations

import enum
import hashlib
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from casework.models import SeenNonce, utcnow

MAX_NONCE_KEY = 255


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

    Commits nothing itself beyond a savepoint: the caller's transaction decides. Expired
    entries of the scope are pruned on the way."""
    if not nonce_key or len(nonce_key) > MAX_NONCE_KEY:
        raise ValueError("nonce key must be 1–255 characters")
    now = utcnow()
    digest = body_hash(body)
    session.execute(
        delete(SeenNonce)
        .where(SeenNonce.scope == scope, SeenNonce.expires_at < now)
        .execution_options(synchronize_session=False)
    )
    try:
        with session.begin_nested():
            session.add(
                SeenNonce(
                    scope=scope, nonce_key=nonce_key, body_hash=digest, expires_at=now + window
                )
            )
        return Sighting.NEW
    except IntegrityError:
        stored = session.execute(
            select(SeenNonce.body_hash).where(
                SeenNonce.scope == scope, SeenNonce.nonce_key == nonce_key
            )
        ).scalar_one_or_none()
        return Sighting.RETRY if stored == digest else Sighting.REPLAY
