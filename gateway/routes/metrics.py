"""GET /api/metrics and /api/metrics.csv — 答复及时率, 满意度 and volumes of the last N days;
GET /api/metrics/hot-topics — the week's 热点 (casework.hot_topics)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Response, status

from casework import hot_topics, metrics
from casework.hot_topics import HotTopicsPublic
from casework.schemas import MetricsPublic
from gateway.deps import OfficerUser, SessionDep, domain_errors

router = APIRouter(prefix="/api", tags=["metrics"])

DaysQuery = Query(30, ge=1, le=366, description="the window: the last N days up to now")


@router.get("/metrics", response_model=MetricsPublic)
def get_metrics(user: OfficerUser, session: SessionDep, days: int = DaysQuery) -> MetricsPublic:
    """Bureau-wide numbers (every console role but trainers sees them)."""
    with domain_errors():
        return metrics.last_days(session=session, user=user, days=days)


@router.get(
    "/metrics.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV with a BOM"}},
)
def get_metrics_csv(user: OfficerUser, session: SessionDep, days: int = DaysQuery) -> Response:
    """The same numbers as a CSV download for Excel."""
    with domain_errors():
        filename, body = metrics.csv_of_last_days(session=session, user=user, days=days)
    return Response(
        content=body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


WeekQuery = Query(
    None,
    regex=r"^\d{4}-W\d{1,2}$",
    description="ISO week, e.g. 2026-W48 (Beijing time); default: the last complete week",
)


@router.get("/metrics/hot-topics", response_model=HotTopicsPublic)
def get_hot_topics(
    user: OfficerUser, session: SessionDep, week: str | None = WeekQuery
) -> HotTopicsPublic:
    """What residents wrote about, per street and community, and what doubled since the
    week before (aggregates and single words only)."""
    with domain_errors():
        try:
            return hot_topics.weekly(session=session, user=user, week=week)
        except ValueError as error:  # a week that does not exist (2026-W60)
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from error
