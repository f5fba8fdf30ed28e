"""The bureau's numbers: 答复及时率 (timely first replies), 满意度 (satisfaction) and volumes.

Pure reads over the database for a window [since, until). Case numbers are computed over
the cohort of cases *created* in the window (a case's reply, closing and rating count in
the window it was opened in); ticket numbers likewise over tickets created in the window.
`until` is also "now" for deciding whether an unanswered case is already past its target.

Datetimes are timezone-aware UTC; SQLite hands back naive values, which are UTC. Day
buckets are Beijing-time days (Asia/Shanghai), as the bureau counts them.
Percentiles use linear interpolation between the closest ranks (numpy's default).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from casework import dissuasion_metrics, warning_metrics
from casework.cases import CATEGORIES, PRIORITIES, RESPONSE_TARGETS
from casework.clock import aware, beijing, utcnow
from casework.handling import check_reader
from casework.models import Case, Conversation, Message, Ticket, User
from casework.schemas import MetricsPublic

UNLOCATED = "未定位"
RATINGS = (1, 2, 3, 4, 5)
CSV_HEADER = ("板块 section", "对象 key", "指标 metric", "数值 value")


# ---- small helpers ----------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return aware(value).astimezone(timezone.utc)


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _mean(values: list[int], digits: int = 2) -> float | None:
    return round(sum(values) / len(values), digits) if values else None


def _percentile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _target(priority: str) -> timedelta:
    return RESPONSE_TARGETS.get(priority, RESPONSE_TARGETS["normal"])


def _reply_minutes(case: Any) -> float | None:
    if case.first_reply_at is None:
        return None
    return (_utc(case.first_reply_at) - _utc(case.created_at)).total_seconds() / 60


# ---- loading ------------------------------------------------------------------------------


def _cases(session: Session, since: datetime, until: datetime) -> list[Any]:
    rows = session.execute(
        select(
            Case.id,
            Case.sender_id,
            Case.category,
            Case.priority,
            Case.status,
            Case.community,
            Case.claimed_by_id,
            Case.created_at,
            Case.first_reply_at,
            Case.closed_at,
            Case.rating,
            Case.rating_requested_at,
        ).where(Case.created_at >= since, Case.created_at < until)
    )
    return list(rows)


def _tickets(session: Session, since: datetime, until: datetime) -> list[Any]:
    rows = session.execute(
        select(
            Ticket.id,
            Ticket.status,
            Ticket.community,
            Ticket.linked_to_id,
            Ticket.created_at,
            Ticket.due_at,
            Ticket.resolved_at,
        ).where(Ticket.created_at >= since, Ticket.created_at < until)
    )
    return list(rows)


def _inbound_filter(since: datetime, until: datetime) -> tuple[Any, ...]:
    """Residents' messages in the window (follow/unfollow events are not messages)."""
    return (
        Message.direction == "in",
        Message.msg_type != "event",
        Message.created_at >= since,
        Message.created_at < until,
    )


def _inbound(session: Session, since: datetime, until: datetime) -> list[Any]:
    query = select(Message.conversation_id, Message.created_at)
    return list(session.execute(query.where(*_inbound_filter(since, until))))


# ---- the sections -------------------------------------------------------------------------


def timeliness(cases: Iterable[Any], *, now: datetime) -> dict[str, Any]:
    """答复及时率: timely first replies over cases answered or already past their target."""
    total = answered = timely = pending = 0
    for case in cases:
        total += 1
        target = _target(case.priority)
        minutes = _reply_minutes(case)
        if minutes is not None:
            answered += 1
            timely += minutes <= target.total_seconds() / 60
        elif _utc(case.created_at) + target > now:
            pending += 1  # not answered, not yet due: neither timely nor late
    counted = total - pending
    return {
        "cases": total,
        "answered": answered,
        "timely": timely,
        "pending": pending,
        "counted": counted,
        "rate": _ratio(timely, counted),
    }


def reply_minutes(cases: Iterable[Any]) -> dict[str, Any]:
    """Median and p90 of minutes to the first officer reply, over answered cases."""
    minutes = [m for m in map(_reply_minutes, cases) if m is not None]
    return {
        "count": len(minutes),
        "median": _rounded(_percentile(minutes, 0.5)),
        "p90": _rounded(_percentile(minutes, 0.9)),
    }


def satisfaction(cases: Iterable[Any]) -> dict[str, Any]:
    """满意度: ratings 1–5 of closed cases, and how many asked residents answered."""
    cases = list(cases)
    ratings = [c.rating for c in cases if c.rating in RATINGS]
    requested = [c for c in cases if c.rating_requested_at is not None]
    answered = sum(1 for c in requested if c.rating in RATINGS)
    counts = Counter(ratings)
    return {
        "average": _mean(ratings),
        "ratings": len(ratings),
        "requests": len(requested),
        "response_rate": _ratio(answered, len(requested)),
        "distribution": {str(r): counts.get(r, 0) for r in RATINGS},
    }


def _by_priority(cases: list[Any], now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    groups: dict[str, list[Any]] = {p: [] for p in PRIORITIES}
    for case in cases:
        groups.setdefault(case.priority, []).append(case)
    timely = {p: timeliness(group, now=now) for p, group in groups.items()}
    minutes = {p: reply_minutes(group) for p, group in groups.items()}
    return timely, minutes


def _handed_off_openids(session: Session, since: datetime, until: datetime) -> set[str]:
    """Residents with a case open at some point in the window (created in it or before)."""
    still_open = and_(Case.closed_at.is_(None), Case.status != "closed")
    rows = session.execute(
        select(Case.sender_id)
        .where(
            Case.created_at < until,
            or_(Case.created_at >= since, Case.closed_at >= since, still_open),
        )
        .distinct()
    )
    return set(rows.scalars())


def bot_resolved(session: Session, since: datetime, until: datetime) -> dict[str, Any]:
    """Conversations with resident messages in the window that no officer had to take."""
    active = session.execute(
        select(Conversation.openid)
        .join(Message, Message.conversation_id == Conversation.id)
        .where(*_inbound_filter(since, until))
        .distinct()
    ).scalars()
    openids = list(active)
    handed_off = _handed_off_openids(session, since, until)
    resolved = sum(1 for openid in openids if openid not in handed_off)
    return {
        "resolved_by_bot": resolved,
        "conversations": len(openids),
        "share": _ratio(resolved, len(openids)),
    }


def volume_by_category(cases: Iterable[Any]) -> dict[str, int]:
    counts = Counter(c.category for c in cases)
    volume = {category: counts.pop(category, 0) for category in CATEGORIES}
    return {**volume, **dict(sorted(counts.items()))}


def _days(since: datetime, until: datetime) -> list[date]:
    """The Beijing-time days the window touches (the bureau's days, not UTC's)."""
    first, last = beijing(since).date(), beijing(until - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def volume_by_day(
    cases: list[Any], inbound: list[Any], since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """One row per Beijing-time day of the window: cases per category, all cases, inbound
    messages (a case opened at 06:00 Beijing time on the 30th counts on the 30th)."""
    categories = list(volume_by_category(cases))
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    for case in cases:
        per_day[beijing(case.created_at).date()][case.category] += 1
    messages = Counter(beijing(m.created_at).date() for m in inbound)
    rows = []
    for day in _days(since, until):
        counts = per_day[day]
        row: dict[str, Any] = {"day": day.isoformat()}
        row.update({category: counts.get(category, 0) for category in categories})
        row.update({"cases": sum(counts.values()), "inbound_messages": messages.get(day, 0)})
        rows.append(row)
    return rows


def _duplicate(ticket: Any) -> bool:
    return ticket.linked_to_id is not None or ticket.status == "linked"


def tickets(rows: Iterable[Any], *, now: datetime) -> dict[str, Any]:
    """The governance loop (闭环): how many diverted matters the platform resolved, how fast."""
    rows = list(rows)
    matters = [t for t in rows if not _duplicate(t)]  # a linked duplicate is not a new matter
    resolved = [t for t in matters if t.status == "resolved"]
    hours = [
        (_utc(t.resolved_at) - _utc(t.created_at)).total_seconds() / 3600
        for t in resolved
        if t.resolved_at is not None
    ]
    overdue = [
        t
        for t in matters
        if t.status not in ("resolved", "rejected")
        and t.due_at is not None
        and _utc(t.due_at) < now
    ]
    return {
        "created": len(rows),
        "duplicates": len(rows) - len(matters),
        "resolved": len(resolved),
        "closure_rate": _ratio(len(resolved), len(matters)),
        "median_hours_to_resolve": _rounded(_percentile(hours, 0.5)),
        "rejected": sum(1 for t in matters if t.status == "rejected"),
        "overdue": len(overdue),
    }


def _closed(case: Any) -> bool:
    return case.closed_at is not None or case.status == "closed"


def per_officer(session: Session, cases: list[Any], *, now: datetime) -> list[dict[str, Any]]:
    """Each officer's own numbers, over the cases they claimed."""
    claimed: dict[int, list[Any]] = defaultdict(list)
    for case in cases:
        if case.claimed_by_id is not None:
            claimed[case.claimed_by_id].append(case)
    users = session.execute(
        select(User.id, User.username, User.display_name).where(User.id.in_(list(claimed)))
    )
    rows = []
    for user in users:
        own = claimed[user.id]
        timely = timeliness(own, now=now)
        rows.append(
            {
                "username": user.username,
                "user_id": user.id,
                "display_name": user.display_name,
                "claimed": len(own),
                "answered": timely["answered"],
                "timely_rate": timely["rate"],
                "median_first_reply_minutes": reply_minutes(own)["median"],
                "average_rating": satisfaction(own)["average"],
                "closed": sum(1 for c in own if _closed(c)),
            }
        )
    return sorted(rows, key=lambda row: (-row["claimed"], row["username"]))


def per_community(
    cases: list[Any], ticket_rows: list[Any], *, now: datetime
) -> list[dict[str, Any]]:
    """Each community's numbers (cases and tickets without a place count as 未定位)."""
    case_groups: dict[str, list[Any]] = defaultdict(list)
    ticket_groups: dict[str, list[Any]] = defaultdict(list)
    for case in cases:
        case_groups[case.community or UNLOCATED].append(case)
    for ticket in ticket_rows:
        ticket_groups[ticket.community or UNLOCATED].append(ticket)
    rows = []
    for community in set(case_groups) | set(ticket_groups):
        own, own_tickets = case_groups[community], ticket_groups[community]
        rows.append(
            {
                "community": community,
                "cases": len(own),
                "timely_rate": timeliness(own, now=now)["rate"],
                "average_rating": satisfaction(own)["average"],
                "tickets_created": len(own_tickets),
                "tickets_resolved": sum(1 for t in own_tickets if t.status == "resolved"),
            }
        )
    return sorted(
        rows, key=lambda row: (row["community"] == UNLOCATED, -row["cases"], row["community"])
    )


# ---- the whole report ---------------------------------------------------------------------


def compute(*, session: Session, since: datetime, until: datetime) -> dict[str, Any]:
    """Every number of the metrics page for [since, until), JSON-ready."""
    since, until = _utc(since), _utc(until)
    cases = _cases(session, since, until)
    ticket_rows = _tickets(session, since, until)
    inbound = _inbound(session, since, until)
    timely, minutes = _by_priority(cases, until)
    return {
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "timely": timeliness(cases, now=until),
        "timely_by_priority": timely,
        "first_reply_minutes": {**reply_minutes(cases), "by_priority": minutes},
        "satisfaction": satisfaction(cases),
        "bot_resolved_share": bot_resolved(session, since, until),
        "volume_by_category": volume_by_category(cases),
        "volume_by_day": volume_by_day(cases, inbound, since, until),
        "tickets": tickets(ticket_rows, now=until),
        "per_officer": per_officer(session, cases, now=until),
        "per_community": per_community(cases, ticket_rows, now=until),
        "dissuasion": dissuasion_metrics.compute(session, since, until, _days(since, until)),
        "warnings": warning_metrics.compute(session, since, until, _days(since, until)),
    }


def last_days(*, session: Session, user: User, days: int) -> MetricsPublic:
    """The numbers of the last `days` days up to now, for a console reader (aggregates
    only, no resident's words: every officer sees the bureau's numbers)."""
    check_reader(user)
    until = utcnow()
    return MetricsPublic.parse_obj(
        compute(session=session, since=until - timedelta(days=days), until=until)
    )


def csv_of_last_days(*, session: Session, user: User, days: int) -> tuple[str, str]:
    """(file name, CSV text) of the same numbers, for Excel."""
    report = last_days(session=session, user=user, days=days)
    filename = f"jmt-metrics-{datetime.fromisoformat(report.window['until']).date()}.csv"
    return filename, to_csv(report.dict())


# ---- CSV ------------------------------------------------------------------------------------

_ROW_KEYS = ("day", "username", "community")  # what names a row of a list section


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _flatten(section: str, node: Any, key: str = "") -> Iterator[tuple[str, str, str, Any]]:
    if isinstance(node, list):
        for item in node:
            name = next(k for k in _ROW_KEYS if k in item)
            rest = {k: v for k, v in item.items() if k != name}
            yield from _flatten(section, rest, _join(key, str(item[name])))
        return
    for name, value in node.items():
        if isinstance(value, (dict, list)):
            yield from _flatten(section, value, _join(key, name))
        else:
            yield section, key, name, "" if value is None else value


def to_csv(metrics: dict[str, Any]) -> str:
    """The metrics as flat `section,key,metric,value` rows; UTF-8 BOM so Excel reads 中文."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    for section, node in metrics.items():
        writer.writerows(_flatten(section, node))
    return "\ufeff" + buffer.getvalue()
