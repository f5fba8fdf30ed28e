"""The one timezone helper: times are stored aware (UTC) and shown in Beijing time.

SQLite hands back naive datetimes for `DateTime(timezone=True)` columns; they were written
as UTC, so `aware()` puts the zone back. Relative times a resident says (昨天, 今晚) and
day buckets of the metrics are Beijing time (Asia/Shanghai, no daylight saving).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import overload
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@overload
def aware(value: datetime) -> datetime: ...


@overload
def aware(value: None) -> None: ...


@overload
def aware(value: datetime | None) -> datetime | None: ...


def aware(value: datetime | None) -> datetime | None:
    """`value` with its zone: naive values (SQLite) are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def beijing(value: datetime) -> datetime:
    """`value` in Beijing time (naive values are taken as UTC)."""
    return aware(value).astimezone(BEIJING)


def beijing_now() -> datetime:
    return utcnow().astimezone(BEIJING)
