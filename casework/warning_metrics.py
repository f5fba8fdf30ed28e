"""The warnings (预警推送) numbers the bureau reports (issue 11).

Over the broadcasts whose send time falls in the window [since, until) and their
per-resident deliveries:

- by topic: broadcasts, targeted residents, sent, failed, opted out, and the reach
  (sent / targeted);
- the opt-out rate: residents who said 退订 in the window over the distinct residents
  a warning was sent to in it;
- per Beijing-time day (by send time) and per community (the resident's, when the
  audience was resolved).

A whole-district warning mass-sent by user tag (BROADCAST_MASS_SEND) reaches residents
through WeChat's own fan-out: those show as the mass jobs' counts, not as deliveries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework.clock import beijing
from casework.models import Broadcast, BroadcastDelivery, WarningConsent
from casework.vocabulary import WARNING_TOPIC_LABELS

UNLOCATED = "未定位"


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _summary(statuses: Counter[str], broadcasts: int | None = None) -> dict[str, Any]:
    targeted = sum(statuses.values())
    found: dict[str, Any] = {} if broadcasts is None else {"broadcasts": broadcasts}
    found.update(
        {
            "targeted": targeted,
            "sent": statuses["sent"],
            "failed": statuses["failed"],
            "opted_out": statuses["opted_out"],
            "reach": _rate(statuses["sent"], targeted),
        }
    )
    return found


def _mass_sent(figures: dict[str, Any] | None) -> int:
    """What WeChat's MASSSENDJOBFINISH events said the mass jobs delivered."""
    jobs = ((figures or {}).get("mass") or {}).values()
    return sum(int(job.get("sent") or 0) for job in jobs if isinstance(job, dict))


def compute(session: Session, since: datetime, until: datetime, days: list[date]) -> dict[str, Any]:
    """The warnings section of the metrics for [since, until)."""
    sent_broadcasts = session.execute(
        select(Broadcast.id, Broadcast.topic, Broadcast.send_at, Broadcast.figures).where(
            Broadcast.send_at >= since,
            Broadcast.send_at < until,
            Broadcast.status.not_in(("cancelled", "draft")),  # a draft was never sent
        )
    ).all()
    by_id = {b.id: b for b in sent_broadcasts}
    deliveries = (
        session.execute(
            select(
                BroadcastDelivery.broadcast_id,
                BroadcastDelivery.resident_id,
                BroadcastDelivery.community,
                BroadcastDelivery.status,
            ).where(BroadcastDelivery.broadcast_id.in_(list(by_id)))
        ).all()
        if by_id
        else []
    )
    overall: Counter[str] = Counter()
    per_topic: dict[str, Counter[str]] = defaultdict(Counter)
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    per_community: dict[str, Counter[str]] = defaultdict(Counter)
    reached: set[int] = set()
    for d in deliveries:
        broadcast = by_id[d.broadcast_id]
        overall[d.status] += 1
        per_topic[broadcast.topic][d.status] += 1
        per_day[beijing(broadcast.send_at).date()][d.status] += 1
        per_community[d.community or UNLOCATED][d.status] += 1
        if d.status == "sent":
            reached.add(d.resident_id)
    topics = Counter(b.topic for b in sent_broadcasts)
    opt_outs = session.execute(
        select(func.count(func.distinct(WarningConsent.resident_id))).where(
            WarningConsent.action == "opt_out",
            WarningConsent.at >= since,
            WarningConsent.at < until,
        )
    ).scalar_one()
    broadcasts_per_day = Counter(beijing(b.send_at).date() for b in sent_broadcasts)
    return {
        **_summary(overall, len(sent_broadcasts)),
        "mass_sent": sum(_mass_sent(b.figures) for b in sent_broadcasts),
        "opt_outs": int(opt_outs),
        "opt_out_rate": _rate(int(opt_outs), len(reached)),
        "by_topic": {
            topic: {
                "label": WARNING_TOPIC_LABELS.get(topic, topic),
                **_summary(per_topic[topic], topics[topic]),
            }
            for topic in sorted(topics, key=lambda t: -topics[t])
        },
        "per_day": [
            {"day": day.isoformat(), **_summary(per_day[day], broadcasts_per_day[day])}
            for day in days
        ],
        "per_community": [
            {"community": community, **_summary(counts)}
            for community, counts in sorted(
                per_community.items(),
                key=lambda kv: (kv[0] == UNLOCATED, -sum(kv[1].values()), kv[0]),
            )
        ],
    }
