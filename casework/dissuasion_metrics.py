"""The precision-dissuasion (精准劝阻) and 紧急止付 numbers the bureau reports (issue 11).

Over the cohort of dissuasion tasks *created* in the window [since, until) — a task's
attempts and outcome count in the window it was created in, as cases do in
`casework.metrics` — and the stop-payment requests *requested* in it:

- tasks by risk type (with their outcomes), escalated tasks;
- reached within the deadline: a contact attempt marked `reached` at or before the
  task's deadline (不接电话不放过); reached in person: a reached `visit` attempt
  (不见本人不放过); both as a share of the cohort;
- 劝阻成功 count and the amount protected; 已被骗 count;
- 止付: requests, amount asked to stop, frozen, recovered (元);
- per Beijing-time day, per community and per officer (the assignee).

Amounts are kept in 分 in the database and reported in 元 (two decimals).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.clock import aware, beijing
from casework.models import DissuasionAttempt, DissuasionLead, DissuasionTask, StopPayment, User

UNLOCATED = "未定位"
UNASSIGNED = "（反诈专班）"  # held by the desk, no single officer


def _yuan(fen: int) -> float:
    return round(fen / 100, 2)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _tasks(session: Session, since: datetime, until: datetime) -> list[Any]:
    return list(
        session.execute(
            select(
                DissuasionTask.id,
                DissuasionTask.community,
                DissuasionTask.assignee_id,
                DissuasionTask.deadline_at,
                DissuasionTask.created_at,
                DissuasionTask.outcome,
                DissuasionTask.amount_protected_fen,
                DissuasionTask.escalated_at,
                DissuasionLead.risk_type,
            )
            .join(DissuasionLead, DissuasionLead.id == DissuasionTask.lead_id)
            .where(DissuasionTask.created_at >= since, DissuasionTask.created_at < until)
        ).all()
    )


def _reached(session: Session, task_ids: list[int]) -> tuple[dict[int, datetime], set[int]]:
    """Per task: when it was first reached, and whether it was reached in person."""
    first: dict[int, datetime] = {}
    in_person: set[int] = set()
    if not task_ids:
        return first, in_person
    rows = session.execute(
        select(DissuasionAttempt.task_id, DissuasionAttempt.channel, DissuasionAttempt.at).where(
            DissuasionAttempt.task_id.in_(task_ids), DissuasionAttempt.reached.is_(True)
        )
    ).all()
    for row in rows:
        at = aware(row.at)
        if row.task_id not in first or at < first[row.task_id]:
            first[row.task_id] = at
        if row.channel == "visit":
            in_person.add(row.task_id)
    return first, in_person


def _summary(tasks: list[Any], first: dict[int, datetime], in_person: set[int]) -> dict[str, Any]:
    timely = sum(1 for t in tasks if t.id in first and first[t.id] <= aware(t.deadline_at))
    visited = sum(1 for t in tasks if t.id in in_person)
    dissuaded = [t for t in tasks if t.outcome == "dissuaded"]
    return {
        "tasks": len(tasks),
        "reached_within_deadline": timely,
        "reached_within_deadline_rate": _rate(timely, len(tasks)),
        "reached_in_person": visited,
        "reached_in_person_rate": _rate(visited, len(tasks)),
        "dissuaded": len(dissuaded),
        "amount_protected_yuan": _yuan(sum(t.amount_protected_fen or 0 for t in dissuaded)),
        "defrauded": sum(1 for t in tasks if t.outcome == "defrauded"),
        "unreachable": sum(1 for t in tasks if t.outcome == "unreachable"),
        "open": sum(1 for t in tasks if t.outcome is None),
        "escalated": sum(1 for t in tasks if t.escalated_at is not None),
    }


def _stop_payments(session: Session, since: datetime, until: datetime) -> dict[str, Any]:
    rows = session.execute(
        select(StopPayment.amount_fen, StopPayment.frozen_fen, StopPayment.recovered_fen).where(
            StopPayment.requested_at >= since, StopPayment.requested_at < until
        )
    ).all()
    return {
        "requests": len(rows),
        "amount_yuan": _yuan(sum(r.amount_fen for r in rows)),
        "frozen_yuan": _yuan(sum(r.frozen_fen or 0 for r in rows)),
        "recovered_yuan": _yuan(sum(r.recovered_fen or 0 for r in rows)),
    }


def compute(session: Session, since: datetime, until: datetime, days: list[date]) -> dict[str, Any]:
    """The dissuasion section of the metrics for [since, until); `days` are the window's
    Beijing-time days (casework.metrics._days)."""
    tasks = _tasks(session, since, until)
    first, in_person = _reached(session, [t.id for t in tasks])
    by_type: dict[str, list[Any]] = defaultdict(list)
    by_day: dict[date, list[Any]] = defaultdict(list)
    by_community: dict[str, list[Any]] = defaultdict(list)
    by_officer: dict[int | None, list[Any]] = defaultdict(list)
    for task in tasks:
        by_type[task.risk_type].append(task)
        by_day[beijing(task.created_at).date()].append(task)
        by_community[task.community or UNLOCATED].append(task)
        by_officer[task.assignee_id].append(task)
    names = {
        user.id: user.username
        for user in session.execute(
            select(User).where(User.id.in_([i for i in by_officer if i is not None]))
        ).scalars()
    }
    return {
        **_summary(tasks, first, in_person),
        "by_risk_type": {
            risk_type: _summary(group, first, in_person)
            for risk_type, group in sorted(by_type.items(), key=lambda kv: -len(kv[1]))
        },
        "stop_payments": _stop_payments(session, since, until),
        "per_day": [
            {"day": day.isoformat(), **_summary(by_day.get(day, []), first, in_person)}
            for day in days
        ],
        "per_community": [
            {"community": community, **_summary(group, first, in_person)}
            for community, group in sorted(
                by_community.items(), key=lambda kv: (kv[0] == UNLOCATED, -len(kv[1]), kv[0])
            )
        ],
        "per_officer": [
            {
                "username": names.get(officer_id, UNASSIGNED) if officer_id else UNASSIGNED,
                **_summary(group, first, in_person),
            }  # fmt: skip
            for officer_id, group in sorted(by_officer.items(), key=lambda kv: -len(kv[1]))
        ],
    }
