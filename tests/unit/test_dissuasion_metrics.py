"""The 精准劝阻 / 紧急止付 numbers on the metrics page and in its CSV (issue 11): reached
within the deadline, reached in person, 劝阻成功 and the amount protected, 止付 amounts —
by risk type, Beijing-time day, community and officer — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from casework import db, dissuasion, metrics, stop_payments
from casework.cases import open_case
from casework.clock import BEIJING
from tests.unit.test_dissuasion import A, lead, people, user  # noqa: F401 — the fixture

NOW = datetime(2026, 12, 5, 2, tzinfo=timezone.utc)  # 10:00 Beijing time


def test_dissuasion_numbers_in_the_metrics(people):  # noqa: F811
    with db.session_scope() as session:
        high, medium, outside = dissuasion.ingest_leads(
            session=session,
            leads=[
                lead("M1", address=f"骆驼街道{A}3幢"),
                lead("M2", risk_type="冒充公检法", risk_level="medium", phone="13800004321"),
                lead("M3", phone="13800009999"),
            ],
            actor=None,
            now=NOW,
        ).task_ids
        desk, officer = user(session, people, "desk"), user(session, people, "officer_a")
        # high risk (30 min): reached by phone after 10 min, then seen in person; 劝阻成功
        dissuasion.record_attempt(
            session=session,
            user=officer,
            task_id=high,
            channel="phone",
            reached=True,
            now=NOW + timedelta(minutes=10),
        )
        dissuasion.record_attempt(
            session=session,
            user=officer,
            task_id=high,
            channel="visit",
            reached=True,
            now=NOW + timedelta(minutes=50),
        )
        dissuasion.set_outcome(
            session=session,
            user=officer,
            task_id=high,
            outcome="dissuaded",
            amount_protected=Decimal("38000.50"),
        )
        # medium risk (2 h): first reached after 3 h, too late; it had gone: 已被骗
        dissuasion.record_attempt(
            session=session,
            user=desk,
            task_id=medium,
            channel="phone",
            reached=True,
            now=NOW + timedelta(hours=3),
        )
        dissuasion.set_outcome(session=session, user=desk, task_id=medium, outcome="defrauded")
        # the third: never reached, still open
        case = open_case(
            session=session,
            sender_id="o-sp",
            category="fraud_suspicion",
            priority="urgent",
            reason="test",
            summary="被骗",
        )
        stop_payments.request(
            session=session,
            user=desk,
            case_id=case.id,
            bank="工商银行",
            account="6222021234567890123",
            amount=Decimal("20000"),
            requested_at=NOW + timedelta(minutes=5),
        )
        assert outside  # made
    with db.session_scope() as session:
        found = metrics.compute(
            session=session, since=NOW - timedelta(days=1), until=NOW + timedelta(days=1)
        )["dissuasion"]
    assert found["tasks"] == 3
    assert (found["reached_within_deadline"], found["reached_within_deadline_rate"]) == (1, 0.3333)
    assert (found["reached_in_person"], found["dissuaded"], found["defrauded"]) == (1, 1, 1)
    assert found["amount_protected_yuan"] == 38000.5
    assert found["open"] == 1
    assert found["by_risk_type"]["冒充公检法"]["defrauded"] == 1
    assert found["by_risk_type"]["刷单返利"]["tasks"] == 2
    assert found["stop_payments"] == {
        "requests": 1,
        "amount_yuan": 20000.0,
        "frozen_yuan": 0.0,
        "recovered_yuan": 0.0,
    }
    beijing_day = NOW.astimezone(BEIJING).date().isoformat()
    [today] = [d for d in found["per_day"] if d["day"] == beijing_day]
    assert today["tasks"] == 3
    communities = {row["community"]: row for row in found["per_community"]}
    assert communities[A]["dissuaded"] == 1
    officers = {row["username"]: row for row in found["per_officer"]}
    assert officers["officer_a"]["amount_protected_yuan"] == 38000.5
    csv_rows = metrics.to_csv({"dissuasion": found}).splitlines()
    assert "dissuasion,,amount_protected_yuan,38000.5" in csv_rows
    assert f"dissuasion,per_community.{A},dissuaded,1" in csv_rows
