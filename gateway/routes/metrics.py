"""GET /api/metrics and /api/metrics.csv — 答复及时率, 满意度 and volumes of the last N days."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from casework import metrics
from casework.schemas import MetricsPublic
from gateway.deps import OfficerUser, SessionDep, domain_errors

router = APIRouter(prefix="/api", tags=["metrics"])

DaysQuery = Query(30, ge=1, le=366, description="the window: the last N days up to now")


@router.get("/metrics", response_model=MetricsPublic)
def get_metrics(user: OfficerUser, session: SessionDep, days: int = DaysQuery) -> MetricsPublic:
    """Bureau-wide numbers (every console role but trainers sees them)."""
    with domain_errors():
        return metrics.last_days(session=session, user=user, days=days)


@router.get("/metrics.csv", response_class=Response)
def get_metrics_csv(user: OfficerUser, session: SessionDep, days: int = DaysQuery) -> Response:
    """The same numbers as a CSV download for Excel."""
    with domain_errors():
        filename, body = metrics.csv_of_last_days(session=session, user=user, days=days)
    return Response(
        content=body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
