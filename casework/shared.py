"""Small values every gateway worker shares (`shared_values`): the WeChat access token,
claims of background work, single-use stream tickets.

`write` never checks then inserts: it inserts under a savepoint and, when another worker
got there first, updates — so two workers refreshing one value at once both succeed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from casework.clock import aware, utcnow
from casework.models import SharedValue


def read(*, session: Session, key: str, now: datetime | None = None) -> str | None:
    """The value, or None when missing or expired."""
    row = session.get(SharedValue, key)
    if row is None:
        return None
    expires = aware(row.expires_at)
    if expires is not None and expires <= (now or utcnow()):
        return None
    return str(row.value)


def write(*, session: Session, key: str, value: str, expires_at: datetime | None) -> None:
    try:
        with session.begin_nested():
            session.add(SharedValue(key=key, value=value, expires_at=expires_at))
    except IntegrityError:
        session.execute(
            update(SharedValue)
            .where(SharedValue.key == key)
            .values(value=value, expires_at=expires_at)
            .execution_options(synchronize_session=False)
        )


def remove(*, session: Session, key: str) -> None:
    session.execute(
        delete(SharedValue)
        .where(SharedValue.key == key)
        .execution_options(synchronize_session=False)
    )
