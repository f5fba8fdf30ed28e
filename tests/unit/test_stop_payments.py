"""紧急止付 on fraud cases: request and result recorded by officers in scope, the account
masked, amounts exact, and the time from the resident's first message to the request."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from casework import accounts, db, stop_payments
from casework.cases import CaseError, open_case
from casework.clock import utcnow
from casework.conversations import record_inbound
from casework.handling import NotFound
from casework.models import Case, Message


def _users(session):
    desk = accounts.create_user(
        session=session, username="fz", password="correct-horse", role="officer", desk="反诈"
    )
    other = accounts.create_user(
        session=session, username="zx", password="correct-horse", role="officer", community="X"
    )
    return desk, other


def _fraud_case(session, openid="o-victim") -> Case:
    message, _ = record_inbound(
        session=session, openid=openid, dedupe_key=f"k-{openid}", msg_type="text", content="被骗了"
    )
    message.created_at = utcnow() - timedelta(minutes=12)
    return open_case(
        session=session,
        sender_id=openid,
        category="fraud_suspicion",
        priority="urgent",
        reason="money_lost",
        summary="【涉诈】刷单被骗",
    )


def test_request_and_result_with_the_time_from_the_first_message(database_url):
    with db.session_scope(database_url) as session:
        desk, _ = _users(session)
        case = _fraud_case(session)
        made = stop_payments.request(
            session=session,
            user=desk,
            case_id=case.id,
            bank="中国工商银行",
            account="6222 0212 3456 7890 123",
            amount=Decimal("20000.50"),
        )
        assert made.account_masked == "6222***********0123"
        assert made.amount == Decimal("20000.50")
        assert 11 * 60 <= (made.seconds_from_first_message or 0) <= 13 * 60
        done = stop_payments.record_result(
            session=session,
            user=desk,
            case_id=case.id,
            stop_payment_id=made.id,
            frozen=Decimal("15000"),
            recovered=None,
        )
        assert (done.frozen, done.recovered, done.result_by.name) == (
            Decimal("15000.00"),
            None,
            "fz",
        )
        summary = stop_payments.of_case(session=session, user=desk, case_id=case.id)
        assert summary.seconds_to_first_request == made.seconds_from_first_message
        assert (summary.amount, summary.frozen, summary.recovered) == (
            Decimal("20000.50"),
            Decimal("15000.00"),
            Decimal("0.00"),
        )
        assert "6222021234567890123" not in summary.json()


def test_rules_scope_and_fraud_cases_only(database_url):
    with db.session_scope(database_url) as session:
        desk, other = _users(session)
        case = _fraud_case(session)
        noise = open_case(
            session=session,
            sender_id="o-noise",
            category="noise_complaint",
            priority="normal",
            reason="resident_request",
            summary="噪音",
        )
        kwargs = {"bank": "建行", "account": "6217000012345678", "amount": Decimal("100")}
        with pytest.raises(NotFound):  # out of scope looks like missing
            stop_payments.request(session=session, user=other, case_id=case.id, **kwargs)
        commander = accounts.create_user(
            session=session, username="zh", password="correct-horse", role="commander"
        )
        with pytest.raises(CaseError, match="涉诈"):
            stop_payments.request(session=session, user=commander, case_id=noise.id, **kwargs)
        with pytest.raises(CaseError, match="账户"):
            stop_payments.request(
                session=session, user=desk, case_id=case.id, **{**kwargs, "account": "12-34"}
            )
        made = stop_payments.request(session=session, user=desk, case_id=case.id, **kwargs)
        with pytest.raises(CaseError, match="冻结金额不能超过"):
            stop_payments.record_result(
                session=session,
                user=desk,
                case_id=case.id,
                stop_payment_id=made.id,
                frozen=Decimal("101"),
                recovered=None,
            )
        with pytest.raises(CaseError, match="返还金额不能超过"):
            stop_payments.record_result(
                session=session,
                user=desk,
                case_id=case.id,
                stop_payment_id=made.id,
                frozen=Decimal("50"),
                recovered=Decimal("60"),
            )


def test_without_a_message_the_time_is_unknown_and_old_messages_do_not_count(database_url):
    with db.session_scope(database_url) as session:
        desk, _ = _users(session)
        case = _fraud_case(session, "o-old")
        session.execute(  # the message was two days before the case: another matter
            update(Message).values(created_at=utcnow() - timedelta(days=2))
        )
        made = stop_payments.request(
            session=session,
            user=desk,
            case_id=case.id,
            bank="农行",
            account="62284800123",
            amount=Decimal("1"),
        )
        assert made.seconds_from_first_message is None
