"""Retention: `purge` anonymises old words and finished matters, keeps what is still open
and the audit trail, and is idempotent — on SQLite and PostgreSQL; `jmt purge`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from casework import db
from casework.audit import record
from casework.cases import open_case, open_ticket
from casework.clock import aware, utcnow
from casework.conversations import conversation_for
from casework.models import (
    AuditEntry,
    Case,
    CaseNote,
    Conversation,
    Message,
    OutboxItem,
    Ticket,
    User,
)
from casework.nlu_inbox import NluAnnotation
from casework.retention import PURGED, parse_age, purge
from jmt import cli

NOW = utcnow()
OLD = NOW - timedelta(days=200)
RECENT = NOW - timedelta(days=10)
WORDS = "我家住万景社区3幢，电话13912345678"


def _message(session, openid: str, when, direction: str = "in", **extra) -> int:
    conversation = conversation_for(session=session, openid=openid)
    if extra.pop("location", False):
        conversation.location_label, conversation.location_lat = "万景社区3幢", 29.95
    message = Message(
        conversation_id=conversation.id,
        direction=direction,
        msg_type="text",
        content=WORDS,
        media={"recognition": WORDS},
        raw=f"<xml>{WORDS}</xml>",
        reply="收到" if direction == "in" else None,
        intent="complain_noise" if direction == "in" else None,
        confidence=0.91 if direction == "in" else None,
        created_at=when,
        **extra,
    )
    session.add(message)
    session.flush()
    return int(message.id)


def _case(session, openid: str, *, closed_at=None) -> int:
    case = open_case(
        session=session,
        sender_id=openid,
        category="noise_complaint",
        priority="normal",
        reason="test",
        summary=WORDS,
        details={"first_message": WORDS},
        location="万景社区3幢",
    )
    case.community = "万景社区"
    if closed_at is not None:
        case.status, case.closed_at, case.rating = "closed", closed_at, 5
        case.resolution = f"已联系居民{WORDS}"
        case.created_at = case.updated_at = closed_at - timedelta(hours=1)
    return int(case.id)


def _ticket(session, openid: str, status: str, when) -> int:
    ticket = open_ticket(
        session=session, sender_id=openid, kind="noise", summary=WORDS, location="万景社区3幢"
    )
    ticket.status, ticket.status_note, ticket.community = status, "已劝导", "万景社区"
    ticket.created_at = ticket.updated_at = when
    session.flush()
    return int(ticket.id)


@pytest.fixture
def world(database_url):
    """Residents in every situation retention must tell apart."""
    with db.session_scope() as session:
        officer = User(username="zhang", password_hash="x", role="officer")
        session.add(officer)
        session.flush()
        ids = {
            # done long ago: everything goes
            "gone_in": _message(session, "o-done", OLD, location=True),
            "gone_out": _message(session, "o-done", OLD, direction="out", sender="officer:张"),
            "gone_case": _case(session, "o-done", closed_at=OLD),
            "gone_ticket": _ticket(session, "o-done", "resolved", OLD),
            # old words but an open case: all kept, even an old closed case of theirs
            "busy_in": _message(session, "o-busy", OLD),
            "busy_closed": _case(session, "o-busy", closed_at=OLD),
            "busy_open": _case(session, "o-busy"),
            # an open ticket keeps its resident's words too
            "ticket_in": _message(session, "o-ticket", OLD),
            "ticket_open": _ticket(session, "o-ticket", "in_progress", OLD),
            # recent: kept
            "fresh_in": _message(session, "o-fresh", RECENT),
            "fresh_case": _case(session, "o-fresh", closed_at=RECENT),
        }
        # (the busy resident's two cases are of one category: the closed one first)
        session.add(CaseNote(case_id=ids["gone_case"], author_id=officer.id, text=WORDS))
        outbound = ids["gone_out"]
        session.add(OutboxItem(message_id=outbound, openid="o-done", text=WORDS, status="sent"))
        for message_id, status, intent in (
            (ids["gone_in"], "annotated", "complain_noise"),
            (ids["gone_out"], "discarded", None),
        ):
            session.add(
                NluAnnotation(
                    message_id=message_id,
                    text="我家住万景社区3幢",
                    intent=intent,
                    entities=[],
                    status=status,
                )
            )
        record(session, officer, "close", "case", ids["gone_case"], resolution="已处理")
        for conversation in session.execute(select(Conversation)).scalars():
            conversation.updated_at = OLD  # nobody wrote since (the location is old too)
    return ids


def _get(model, key):
    with db.session_scope() as session:
        row = session.get(model, key)
        assert row is not None
        session.expunge(row)
        return row


def test_purge_anonymises_old_words_and_finished_matters(world):
    with db.session_scope() as session:
        report = purge(session=session, older_than=timedelta(days=180), now=NOW)
    assert (report.messages, report.outbox, report.cases, report.case_notes) == (2, 1, 1, 1)
    assert (report.tickets, report.conversations, report.annotations) == (1, 1, 1)

    message = _get(Message, world["gone_in"])
    assert (message.content, message.media, message.raw, message.reply) == (PURGED, {}, None, None)
    assert message.redacted_at is not None
    assert (message.intent, message.confidence) == ("complain_noise", 0.91)  # metrics keep them
    assert aware(message.created_at) == OLD
    assert _get(Message, world["gone_out"]).content == PURGED

    case = _get(Case, world["gone_case"])
    assert (case.summary, case.details, case.location, case.resolution) == (
        PURGED,
        {},
        None,
        PURGED,
    )
    assert (case.category, case.priority, case.community, case.rating) == (
        "noise_complaint",
        "normal",
        "万景社区",
        5,
    )
    assert aware(case.closed_at) == OLD and aware(case.updated_at) == OLD - timedelta(hours=1)

    ticket = _get(Ticket, world["gone_ticket"])
    assert (ticket.summary, ticket.details, ticket.location, ticket.status_note) == (
        PURGED,
        {},
        None,
        None,
    )
    assert (ticket.kind, ticket.community, ticket.status) == ("noise", "万景社区", "resolved")

    with db.session_scope() as session:
        assert [n.text for n in session.execute(select(CaseNote)).scalars()] == [PURGED]
        assert [o.text for o in session.execute(select(OutboxItem)).scalars()] == [PURGED]
        annotations = {a.status: a.text for a in session.execute(select(NluAnnotation)).scalars()}
        conversation = session.execute(
            select(Conversation).where(Conversation.openid == "o-done")
        ).scalar_one()
        audit = session.execute(select(AuditEntry)).scalar_one()
    # A kept annotation is a (masked) training example; a discarded one has no use.
    assert annotations == {"annotated": "我家住万景社区3幢", "discarded": PURGED}
    assert (conversation.location_label, conversation.location_lat) == (None, None)
    assert (audit.action, audit.detail) == ("close", {"resolution": "已处理"})  # the trail stays


def test_open_matters_and_recent_words_are_kept(world):
    with db.session_scope() as session:
        purge(session=session, older_than=timedelta(days=180), now=NOW)
    for key in ("busy_in", "ticket_in", "fresh_in"):
        message = _get(Message, world[key])
        assert (message.content, message.redacted_at) == (WORDS, None), key
    for key in ("busy_closed", "busy_open", "fresh_case"):
        case = _get(Case, world[key])
        assert (case.summary, case.redacted_at) == (WORDS, None), key
    assert _get(Ticket, world["ticket_open"]).summary == WORDS


def test_purge_is_idempotent(world):
    with db.session_scope() as session:
        purge(session=session, older_than=timedelta(days=180), now=NOW)
    first = _get(Message, world["gone_in"]).redacted_at
    with db.session_scope() as session:
        again = purge(session=session, older_than=timedelta(days=180), now=NOW + timedelta(hours=1))
    counts = (again.messages, again.outbox, again.cases, again.case_notes, again.tickets)
    assert counts + (again.conversations, again.annotations) == (0,) * 7
    assert _get(Message, world["gone_in"]).redacted_at == first


def test_a_shorter_age_reaches_further(world):
    with db.session_scope() as session:
        report = purge(session=session, older_than=timedelta(days=5), now=NOW)
    assert report.messages == 3  # o-done's two and o-fresh's one
    assert _get(Case, world["fresh_case"]).summary == PURGED


@pytest.mark.parametrize(
    "text, age",
    [("180d", timedelta(days=180)), ("12h", timedelta(hours=12)), (" 7D ", timedelta(days=7))],
)
def test_parse_age(text, age):
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "180", "d", "1.5d", "-3d", "0h", "3w", "180 days"])
def test_parse_age_refuses(text):
    with pytest.raises(ValueError):
        parse_age(text)


def test_purge_refuses_a_non_positive_age(sqlite_url):
    with db.session_scope() as session, pytest.raises(ValueError):
        purge(session=session, older_than=timedelta(0))


def _rasa_tracker(url: str, events: list[tuple[str, datetime]]) -> None:
    """Rasa's own `events` table (its SQL tracker store's model), with user events."""
    from rasa.core.tracker_store import SQLTrackerStore

    engine = sa.create_engine(url, future=True)
    SQLTrackerStore.SQLEvent.__table__.create(engine, checkfirst=True)
    table = SQLTrackerStore.SQLEvent.__table__
    with engine.begin() as connection:
        for sender, when in events:
            connection.execute(
                table.insert().values(
                    sender_id=sender,
                    type_name="user",
                    timestamp=when.timestamp(),
                    intent_name="complain_noise",
                    data=json.dumps({"event": "user", "text": WORDS}),
                )
            )
    engine.dispose()


def _rasa_senders(url: str) -> list[tuple[str, bool]]:
    engine = sa.create_engine(url, future=True)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("select sender_id, timestamp from events")).all()
    engine.dispose()
    return sorted(
        (sender, stamp < (NOW - timedelta(days=180)).timestamp()) for sender, stamp in rows
    )


def test_rasa_tracker_events_follow_the_same_rule(world, database_url, tmp_path):
    """Rasa keeps every word too: its old events go, except of residents with an open
    matter; recent ones stay. The tracker store here is Rasa's own table, on SQLite (a
    file of its own, as in development) and PostgreSQL (beside ours, as in production)."""
    tracker = (
        f"sqlite:///{tmp_path / 'rasa-tracker.sqlite3'}"
        if database_url.startswith("sqlite")
        else database_url
    )
    with db.session_scope() as session:  # no events table yet: nothing to do, no error
        assert (
            purge(
                session=session, older_than=timedelta(days=180), now=NOW, tracker_url=tracker
            ).rasa_events
            == 0
        )
    _rasa_tracker(
        tracker,
        [
            ("o-done", OLD),
            ("o-done", OLD),
            ("o-done", RECENT),
            ("o-busy", OLD),
            ("o-fresh", RECENT),
        ],
    )
    with db.session_scope() as session:
        report = purge(
            session=session, older_than=timedelta(days=180), now=NOW, tracker_url=tracker
        )
    assert report.rasa_events == 2
    assert "Rasa tracker events deleted: 2" in report.lines()
    assert _rasa_senders(tracker) == [("o-busy", True), ("o-done", False), ("o-fresh", False)]


def test_jmt_purge_prints_counts(sqlite_url, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RASA_TRACKER_DB", str(tmp_path / "rasa-tracker.sqlite3"))
    monkeypatch.delenv("RASA_DB_HOST", raising=False)
    _rasa_tracker(f"sqlite:///{tmp_path / 'rasa-tracker.sqlite3'}", [("o-cli", OLD)])
    with db.session_scope() as session:
        _message(session, "o-cli", NOW - timedelta(days=40))
    cli.main(["purge", "--older-than", "30d"])
    out = capsys.readouterr().out
    assert "messages anonymised: 1" in out and "closed cases anonymised: 0" in out
    assert "Rasa tracker events deleted: 1" in out  # the settings' tracker store
    monkeypatch.setenv("RETENTION_DAYS", "60")
    from casework.settings import get_settings

    get_settings.cache_clear()
    with db.session_scope() as session:
        _message(session, "o-cli-2", NOW - timedelta(days=50))
    cli.main(["purge"])  # the setting's 60 days: the 50-day-old message stays
    assert "messages anonymised: 0" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="180 days"):
        cli.main(["purge", "--older-than", "180 days"])


def test_one_worker_a_day_runs_the_automatic_purge(world):
    """Two gateway workers: exactly one claims today's run; the next day's claim is taken
    over only once the first has expired (an owner and an expiry, never check-then-act)."""
    from casework.retention import DAILY_EVERY, claim_daily_run, purge_if_due

    with db.session_scope() as session:
        report = purge_if_due(session=session, owner="host:1", retention_days=180, now=NOW)
    assert report is not None and report.messages == 2
    with db.session_scope() as session:
        assert purge_if_due(session=session, owner="host:2", retention_days=180, now=NOW) is None
    later = NOW + DAILY_EVERY - timedelta(minutes=1)
    with db.session_scope() as session:
        assert not claim_daily_run(session=session, owner="host:2", now=later)
    tomorrow = NOW + DAILY_EVERY + timedelta(minutes=1)
    with db.session_scope() as session:
        assert claim_daily_run(session=session, owner="host:2", now=tomorrow)
    with db.session_scope() as session:
        assert not claim_daily_run(session=session, owner="host:1", now=tomorrow)


def test_finished_dissuasion_leads_lose_the_persons_details_open_ones_keep_them(database_url):
    """精准劝阻 (issue 11): a closed task's lead loses phone, name, address and the attempt
    notes after the retention age; an open task keeps everything; the numbers stay."""
    from decimal import Decimal

    from casework import accounts, dissuasion
    from casework.models import DissuasionAttempt, DissuasionLead, DissuasionTask
    from tests.unit.test_dissuasion import lead

    closed_at = NOW - timedelta(days=200)
    with db.session_scope() as session:
        desk = accounts.create_user(
            session=session,
            username="desk-r",
            password="correct-horse",
            role="officer",
            desk="反诈",
        )
        done, still_open = dissuasion.ingest_leads(
            session=session,
            leads=[lead("R1", name="王阿姨", address="骆驼街道万景社区3幢"), lead("R2")],
            actor=None,
            now=closed_at - timedelta(hours=1),
        ).task_ids
        dissuasion.record_attempt(
            session=session,
            user=desk,
            task_id=done,
            channel="visit",
            reached=True,
            note="王阿姨家中，已劝阻",
            now=closed_at - timedelta(minutes=30),
        )
        dissuasion.set_outcome(
            session=session,
            user=desk,
            task_id=done,
            outcome="dissuaded",
            amount_protected=Decimal("5000"),
            now=closed_at,
        )
    with db.session_scope() as session:
        report = purge(session=session, older_than=timedelta(days=180), now=NOW)
        assert report.dissuasion_leads == 1
        gone = session.get(DissuasionLead, session.get(DissuasionTask, done).lead_id)
        assert (gone.phone, gone.name, gone.address) == ("", None, None)
        assert (gone.risk_type, gone.risk_level) == ("刷单返利", "high")  # the numbers stay
        assert session.get(DissuasionTask, done).amount_protected_fen == 500000
        [attempt] = session.query(DissuasionAttempt).filter_by(task_id=done).all()
        assert attempt.note == "" and attempt.reached is True
        kept = session.get(DissuasionLead, session.get(DissuasionTask, still_open).lead_id)
        assert kept.phone == "13800001234"
    with db.session_scope() as session:
        assert purge(session=session, older_than=timedelta(days=180), now=NOW).dissuasion_leads == 0


def test_stop_payment_accounts_of_closed_cases_are_cleared_the_amounts_stay(database_url):
    """紧急止付 (issue 11): a closed fraud case past the retention age loses the bank
    account numbers of its stop-payment records — also a case an earlier purge already
    anonymised — while bank, amounts, times and who acted stay (the money protected is
    reported). An open case and a recently closed one keep their accounts."""
    from casework import stop_payments
    from casework.models import StopPayment
    from casework.retention import ANONYMOUS_ACCOUNT

    def fraud_case(session, openid: str, *, closed_at=None) -> int:
        case_id = _case(session, openid, closed_at=closed_at)
        session.get(Case, case_id).category = "fraud_suspicion"
        return case_id

    def stop(session, case_id: int, account: str) -> int:
        item = StopPayment(
            case_id=case_id,
            bank="宁波银行",
            account=account,
            amount_fen=1_000_000,
            requested_at=OLD,
            frozen_fen=800_000,
            recovered_fen=500_000,
            result_at=OLD,
        )
        session.add(item)
        session.flush()
        return int(item.id)

    with db.session_scope() as session:
        old_case = fraud_case(session, "o-sp-done", closed_at=OLD)
        earlier = fraud_case(session, "o-sp-earlier", closed_at=OLD)
        ids = {
            "old": stop(session, old_case, "6222021234567890123"),
            "old_second": stop(session, old_case, "6217001234567890"),
            "earlier": stop(session, earlier, "6228481234567890"),
            "open": stop(session, fraud_case(session, "o-sp-open"), "6222029876543210"),
            "recent": stop(
                session, fraud_case(session, "o-sp-recent", closed_at=RECENT), "6225881234567890"
            ),
        }
        session.get(Case, earlier).redacted_at = OLD  # anonymised before this rule existed
    with db.session_scope() as session:
        report = purge(session=session, older_than=timedelta(days=180), now=NOW)
    assert report.stop_payments == 3
    assert "stop-payment accounts of closed cases cleared: 3" in report.lines()
    for key in ("old", "old_second", "earlier"):
        item = _get(StopPayment, ids[key])
        assert item.account == ANONYMOUS_ACCOUNT, key
        assert (item.bank, item.amount_fen, item.frozen_fen, item.recovered_fen) == (
            "宁波银行",
            1_000_000,
            800_000,
            500_000,
        )
        assert item.requested_at is not None and item.result_at is not None
        assert stop_payments.mask_account(item.account) == stop_payments.PURGED_ACCOUNT
    assert _get(StopPayment, ids["open"]).account == "6222029876543210"
    assert _get(StopPayment, ids["recent"]).account == "6225881234567890"
    with db.session_scope() as session:
        assert purge(session=session, older_than=timedelta(days=180), now=NOW).stop_payments == 0
