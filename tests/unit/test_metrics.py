"""The bureau's numbers (答复及时率, 满意度, volumes, tickets) on a real database: SQLite and
PostgreSQL, from rows with known timestamps; plus the HTTP routes on a minimal app."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from casework import db, metrics
from casework.models import Case, Conversation, Message, Resident, Ticket, User
from casework.settings import get_settings
from gateway import deps
from gateway.routes import metrics as metrics_routes

UTC = timezone.utc
SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 3, 8, tzinfo=UTC)  # also "now" for what is already overdue


def at(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def _users(session) -> dict[str, User]:
    users = {
        "zhang": User(username="zhang", display_name="张警官", role="officer"),
        "li": User(username="li", display_name="李警官", role="officer"),
        "wang": User(username="wang", display_name="王教员", role="trainer"),
    }
    for user in users.values():
        user.password_hash = "x"
        session.add(user)
    session.flush()
    return users


def _case(sender: str, category: str, priority: str, created: datetime, **extra: Any) -> Case:
    reply = extra.pop("reply", None)  # minutes to the first officer reply
    return Case(
        sender_id=sender,
        category=category,
        priority=priority,
        status="closed" if extra.get("closed_at") else "open",
        reason="test",
        summary=f"{category} {sender}",
        details={},
        created_at=created,
        first_reply_at=None if reply is None else created + timedelta(minutes=reply),
        **extra,
    )


def _cases(session, users: dict[str, User]) -> None:
    zhang, li = users["zhang"].id, users["li"].id
    closed = at(7)
    session.add_all(
        [
            # urgent: 3.6 min (timely), 14 min (late: target 5 min)
            _case(
                "o-1",
                "fraud_suspicion",
                "urgent",
                at(1, 10),
                reply=3.6,
                community="万景社区",
                claimed_by_id=zhang,
                closed_at=closed,
                rating=5,
                rating_requested_at=closed,
            ),
            _case(
                "o-2",
                "emergency",
                "urgent",
                at(2, 9),
                reply=14,
                community="万景社区",
                claimed_by_id=zhang,
                closed_at=closed,
                rating=2,
                rating_requested_at=closed,
            ),
            # high: 20 min (timely: target 30 min); asked for a rating, none given
            _case(
                "o-3",
                "legal_help",
                "high",
                at(2, 12),
                reply=20,
                claimed_by_id=li,
                closed_at=closed,
                rating_requested_at=closed,
            ),
            # normal: 150 min (late: target 2 h); 60 min (timely); unanswered, not yet due
            _case(
                "o-4",
                "noise_complaint",
                "normal",
                at(3, 8),
                reply=150,
                community="骆驼社区",
                claimed_by_id=li,
                closed_at=closed,
                rating=4,
                rating_requested_at=closed,
            ),
            _case("o-5", "dog_complaint", "normal", at(7, 23), community="骆驼社区"),
            _case(
                "o-7",
                "noise_complaint",
                "normal",
                at(5, 10),
                reply=60,
                community="万景社区",
                claimed_by_id=zhang,
            ),
            # low: unanswered and past its 24 h target
            _case("o-6", "other", "low", at(4)),
            # outside the window: before it (still open / closed before it) and at its end
            _case("o-old", "other", "normal", at(27, month=2), reply=1, claimed_by_id=li),
            _case(
                "o-closed",
                "faq",
                "normal",
                at(20, month=2),
                reply=1,
                claimed_by_id=li,
                closed_at=at(21, month=2),
                rating=1,
                rating_requested_at=at(21, month=2),
            ),
            _case("o-late", "faq", "urgent", UNTIL, community="万景社区"),
        ]
    )


def _conversation(session, openid: str, inbound: list[datetime], event: datetime | None = None):
    resident = Resident(openid=openid, created_at=at(1, month=1), last_seen_at=at(1, month=1))
    session.add(resident)
    session.flush()
    conversation = Conversation(resident_id=resident.id, openid=openid, owner="bot")
    session.add(conversation)
    session.flush()
    for n, when in enumerate(inbound):
        session.add(_message(conversation.id, "in", "text", when, f"{openid}-{n}"))
        session.add(_message(conversation.id, "out", "text", when + timedelta(seconds=2), None))
    if event is not None:
        session.add(_message(conversation.id, "in", "event", event, f"{openid}-subscribe"))


def _message(conversation_id: int, direction: str, kind: str, when: datetime, key: str | None):
    return Message(
        conversation_id=conversation_id,
        direction=direction,
        msg_type=kind,
        dedupe_key=key,
        content="你好",
        media={},
        status="received",
        created_at=when,
    )


def _conversations(session) -> None:
    _conversation(session, "o-1", [at(1, 9, 58), at(1, 9, 59)])  # handed off (case o-1)
    _conversation(session, "o-bot1", [at(2, 10)])  # the bot answered it
    _conversation(session, "o-bot2", [at(2, 11)])
    _conversation(session, "o-old", [at(3, 7)])  # its case, opened before, is still open
    _conversation(session, "o-closed", [at(6, 15)])  # its case closed before the window
    _conversation(session, "o-quiet", [at(20, month=2)])  # wrote only before the window
    _conversation(session, "o-event", [], event=at(4, 12))  # only followed the account


def _ticket(kind: str, created: datetime, status: str, community: str | None, **extra) -> Ticket:
    return Ticket(
        sender_id=f"o-{kind}",
        kind=kind,
        status=status,
        summary=kind,
        details={},
        community=community,
        created_at=created,
        **extra,
    )


def _tickets(session) -> None:
    first = _ticket("noise", at(3, 9), "resolved", "骆驼社区", resolved_at=at(3, 21))  # 12 h
    session.add(first)
    session.flush()
    session.add_all(
        [
            _ticket("dog", at(4, 9), "resolved", "骆驼社区", resolved_at=at(5, 15)),  # 30 h
            _ticket("noise", at(3, 10), "linked", "骆驼社区", linked_to_id=first.id),
            _ticket("dispute", at(5), "rejected", "万景社区", due_at=at(6)),
            _ticket("noise", at(6), "sent", None, due_at=at(7)),  # overdue
            _ticket("dog", at(7, 12), "accepted", "万景社区", due_at=at(9)),
            _ticket("noise", at(20, month=2), "sent", None, due_at=at(21, month=2)),  # before
        ]
    )


@pytest.fixture
def report(database_url) -> dict[str, Any]:
    with db.session_scope() as session:
        users = _users(session)
        _cases(session, users)
        _conversations(session)
        _tickets(session)
    with db.session_scope() as session:
        return metrics.compute(session=session, since=SINCE, until=UNTIL)


def test_timely_rate_counts_late_and_overdue_but_not_cases_still_within_target(report):
    assert report["timely"] == {
        "cases": 7,
        "answered": 5,
        "timely": 3,
        "pending": 1,
        "counted": 6,
        "rate": 0.5,
    }
    by_priority = report["timely_by_priority"]
    assert list(by_priority) == ["urgent", "high", "normal", "low"]
    assert by_priority["urgent"] == {
        "cases": 2,
        "answered": 2,
        "timely": 1,
        "pending": 0,
        "counted": 2,
        "rate": 0.5,
    }
    assert by_priority["high"]["rate"] == 1.0
    assert (by_priority["normal"]["cases"], by_priority["normal"]["pending"]) == (3, 1)
    assert by_priority["normal"]["rate"] == 0.5
    assert (by_priority["low"]["answered"], by_priority["low"]["rate"]) == (0, 0.0)


def test_first_reply_median_and_p90_in_minutes(report):
    minutes = report["first_reply_minutes"]
    assert (minutes["count"], minutes["median"], minutes["p90"]) == (5, 20.0, 114.0)
    assert minutes["by_priority"] == {
        "urgent": {"count": 2, "median": 8.8, "p90": 13.0},
        "high": {"count": 1, "median": 20.0, "p90": 20.0},
        "normal": {"count": 2, "median": 105.0, "p90": 141.0},
        "low": {"count": 0, "median": None, "p90": None},
    }


def test_satisfaction_average_response_rate_and_distribution(report):
    assert report["satisfaction"] == {
        "average": 3.67,
        "ratings": 3,
        "requests": 4,
        "response_rate": 0.75,
        "distribution": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1},
    }


def test_bot_resolved_share_counts_conversations_without_a_hand_off(report):
    # o-bot1, o-bot2, o-closed of o-1, o-bot1, o-bot2, o-old, o-closed (events don't count)
    assert report["bot_resolved_share"] == {
        "resolved_by_bot": 3,
        "conversations": 5,
        "share": 0.6,
    }


def test_volume_by_category_and_by_day(report):
    assert report["volume_by_category"] == {
        "legal_help": 1,
        "fraud_suspicion": 1,
        "noise_complaint": 2,
        "dog_complaint": 1,
        "emergency": 1,
        "faq": 0,
        "other": 1,
    }
    # Beijing-time days: the UTC window [03-01 00:00, 03-08 00:00) is 08:00 on the 1st to
    # 08:00 on the 8th in Beijing, so it touches eight Beijing days.
    days = report["volume_by_day"]
    assert [d["day"] for d in days] == [f"2026-03-0{n}" for n in range(1, 9)]
    assert [d["cases"] for d in days] == [1, 2, 1, 1, 1, 0, 0, 1]
    assert [d["inbound_messages"] for d in days] == [2, 2, 1, 0, 0, 1, 0, 0]
    assert (days[1]["emergency"], days[1]["legal_help"], days[1]["faq"]) == (1, 1, 0)
    # opened at 23:00 UTC on the 7th = 07:00 on the 8th in Beijing: the bureau's 8th
    assert days[7]["dog_complaint"] == 1 and days[6]["dog_complaint"] == 0


def test_tickets_closure_rate_excludes_linked_duplicates(report):
    assert report["tickets"] == {
        "created": 6,
        "duplicates": 1,
        "resolved": 2,
        "closure_rate": 0.4,
        "median_hours_to_resolve": 21.0,
        "rejected": 1,
        "overdue": 1,
    }


def test_per_officer_numbers_over_the_cases_they_claimed(report):
    assert report["per_officer"] == [
        {
            "username": "zhang",
            "user_id": report["per_officer"][0]["user_id"],
            "display_name": "张警官",
            "claimed": 3,
            "answered": 3,
            "timely_rate": 0.6667,
            "median_first_reply_minutes": 14.0,
            "average_rating": 3.5,
            "closed": 2,
        },
        {
            "username": "li",
            "user_id": report["per_officer"][1]["user_id"],
            "display_name": "李警官",
            "claimed": 2,
            "answered": 2,
            "timely_rate": 0.5,
            "median_first_reply_minutes": 85.0,
            "average_rating": 4.0,
            "closed": 2,
        },
    ]


def test_per_community_with_unlocated_last(report):
    assert report["per_community"] == [
        {
            "community": "万景社区",
            "cases": 3,
            "timely_rate": 0.6667,
            "average_rating": 3.5,
            "tickets_created": 2,
            "tickets_resolved": 0,
        },
        {
            "community": "骆驼社区",
            "cases": 2,
            "timely_rate": 0.0,
            "average_rating": 4.0,
            "tickets_created": 3,
            "tickets_resolved": 2,
        },
        {
            "community": "未定位",
            "cases": 2,
            "timely_rate": 0.5,
            "average_rating": None,
            "tickets_created": 1,
            "tickets_resolved": 0,
        },
    ]


def test_window_in_another_timezone_means_the_same_instants(report):
    beijing = timezone(timedelta(hours=8))
    with db.session_scope() as session:
        again = metrics.compute(
            session=session, since=SINCE.astimezone(beijing), until=UNTIL.astimezone(beijing)
        )
    assert again == report


def test_empty_window_has_zeros_and_no_rates(database_url):
    with db.session_scope() as session:
        empty = metrics.compute(session=session, since=SINCE, until=UNTIL)
    assert empty["timely"]["rate"] is None
    assert empty["satisfaction"]["average"] is None
    assert empty["bot_resolved_share"] == {
        "resolved_by_bot": 0,
        "conversations": 0,
        "share": None,
    }
    assert empty["per_officer"] == [] and empty["per_community"] == []
    assert len(empty["volume_by_day"]) == 8  # the Beijing days a 7-day UTC window touches
    metrics.to_csv(empty)  # None values become empty cells


def _parse(text: str) -> dict[tuple[str, str, str], str]:
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == ["板块 section", "对象 key", "指标 metric", "数值 value"]
    assert all(len(row) == 4 for row in rows)
    return {(s, k, m): v for s, k, m, v in rows[1:]}


def test_csv_has_a_bom_and_the_numbers(report):
    text = metrics.to_csv(report)
    assert text.startswith("\ufeff")
    cells = _parse(text)
    assert cells[("timely", "", "rate")] == "0.5"
    assert cells[("timely_by_priority", "urgent", "timely")] == "1"
    assert cells[("first_reply_minutes", "", "p90")] == "114.0"
    assert cells[("first_reply_minutes", "by_priority.low", "median")] == ""
    assert cells[("satisfaction", "", "average")] == "3.67"
    assert cells[("satisfaction", "", "response_rate")] == "0.75"
    assert cells[("satisfaction", "distribution", "5")] == "1"
    assert cells[("bot_resolved_share", "", "share")] == "0.6"
    assert cells[("volume_by_category", "", "noise_complaint")] == "2"
    assert cells[("volume_by_day", "2026-03-02", "inbound_messages")] == "2"
    assert cells[("tickets", "", "closure_rate")] == "0.4"
    assert cells[("per_officer", "zhang", "timely_rate")] == "0.6667"
    assert cells[("per_officer", "li", "display_name")] == "李警官"
    assert cells[("per_community", "未定位", "cases")] == "2"
    assert cells[("window", "", "since")] == "2026-03-01T00:00:00+00:00"


# ---- the routes, on a minimal app (gateway.app does not include the router yet) ----------


def _client(role: str) -> TestClient:
    app = FastAPI()
    app.include_router(metrics_routes.router)
    app.state.settings = get_settings()
    app.dependency_overrides[deps.current_user] = lambda: User(id=1, username="u", role=role)
    return TestClient(app)


def _recent_case() -> None:
    now = datetime.now(UTC)
    with db.session_scope() as session:
        session.add(_case("o-now", "faq", "normal", now - timedelta(hours=1), reply=30))


def test_metrics_route_returns_the_numbers_of_the_last_days(sqlite_url):
    _recent_case()
    answer = _client("commander").get("/api/metrics", params={"days": 7})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["timely"]["rate"] == 1.0
    assert body["volume_by_category"]["faq"] == 1
    assert len(body["volume_by_day"]) in (7, 8)  # the first day is partial
    assert _client("officer").get("/api/metrics").status_code == 200


@pytest.mark.parametrize("days", [0, 367, "x"])
def test_metrics_route_rejects_a_bad_window(sqlite_url, days):
    assert _client("admin").get("/api/metrics", params={"days": days}).status_code == 422
    assert _client("admin").get("/api/metrics.csv", params={"days": days}).status_code == 422


def test_metrics_routes_are_not_for_trainers(sqlite_url):
    assert _client("trainer").get("/api/metrics").status_code == 403
    assert _client("trainer").get("/api/metrics.csv").status_code == 403


def test_metrics_csv_route_is_an_excel_friendly_attachment(sqlite_url):
    _recent_case()
    answer = _client("officer").get("/api/metrics.csv", params={"days": 366})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    today = datetime.now(UTC).date().isoformat()
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="jmt-metrics-{today}.csv"'
    )
    assert answer.content.startswith("\ufeff".encode())
    assert _parse(answer.content.decode("utf-8"))[("timely", "", "rate")] == "1.0"
