"""GET /api/metrics and /api/metrics.csv — 答复及时率, 满意度 and volumes of the last N days."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Query, Response

from casework import metrics
from gateway.deps import OfficerUser, SessionDep

router = APIRouter(prefix="/api", tags=["metrics"])

DaysQuery = Query(30, ge=1, le=366, description="the window: the last N days up to now")


def _window(days: int) -> tuple[datetime, datetime]:
    now = datetime.now(timezone.utc)
    return now - timedelta(days=days), now


@router.get("/metrics")
def get_metrics(user: OfficerUser, session: SessionDep, days: int = DaysQuery) -> dict[str, Any]:
    """Bureau-wide numbers (every console role but trainers sees them)."""
    since, until = _window(days)
    return metrics.compute(session=session, since=since, until=until)


@router.get("/metrics.csv", response_class=Response)
def get_metrics_csv(user: OfficerUser, session: SessionDep, days: int = DaysQuery) -> Response:
    """The same numbers as a CSV download for Excel."""
    since, until = _window(days)
    body = metrics.to_csv(metrics.compute(session=session, since=since, until=until))
    filename = f"jmt-metrics-{until.date().isoformat()}.csv"
    return Response(
        content=body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
