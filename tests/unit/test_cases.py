"""The domain layer on a real database: SQLite and PostgreSQL."""

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from casework import db
from casework.cases import CaseError, open_case, open_ticket
from casework.clock import aware
from casework.models import Case, Ticket


def test_open_case_records_category_priority_desk_and_details(database_url):
    with db.session_scope() as session:
        case = open_case(
            session=session,
            sender_id="o-1",
            category="fraud_suspicion",
            priority="urgent",
            reason="money_lost",
            summary="被骗两万",
            details={"amount_yuan": 20000, "payment_method": "银行卡转账", "empty": None},
        )
        case_id = case.id
    with db.session_scope() as session:
        stored = session.get(Case, case_id)
        assert (stored.category, stored.priority, stored.status, stored.desk) == (
            "fraud_suspicion",
            "urgent",
            "open",
            "反诈",
        )
        assert stored.details == {"amount_yuan": 20000, "payment_method": "银行卡转账"}


def test_second_hand_off_updates_the_open_case_and_only_raises_priority(database_url):
    with db.session_scope() as session:
        first = open_case(
            session=session,
            sender_id="o-2",
            category="fraud_suspicion",
            priority="urgent",
            reason="money_lost",
            summary="a",
            details={"amount_yuan": 5000},
        )
        second = open_case(
            session=session,
            sender_id="o-2",
            category="fraud_suspicion",
            priority="normal",
            reason="resident_request",
            summary="b",
            details={"scammer_contact": "13812345678"},
        )
        assert first.id == second.id
    with db.session_scope() as session:
        cases = session.execute(select(Case).where(Case.sender_id == "o-2")).scalars().all()
        assert len(cases) == 1
        assert cases[0].priority == "urgent"
        assert cases[0].details == {"amount_yuan": 5000, "scammer_contact": "13812345678"}


def test_open_ticket_is_pending_for_the_governance_platform(database_url):
    with db.session_scope() as session:
        ticket_id = open_ticket(
            session=session,
            sender_id="o-3",
            kind="noise",
            summary="楼上装修",
            location="骆驼街道金华小区",
        ).id
    with db.session_scope() as session:
        ticket = session.get(Ticket, ticket_id)
        assert (ticket.kind, ticket.status, ticket.location) == (
            "noise",
            "pending",
            "骆驼街道金华小区",
        )


@pytest.mark.parametrize(("category", "priority"), [("burglary", "urgent"), ("emergency", "asap")])
def test_unknown_category_or_priority_is_refused_and_nothing_stored(sqlite_url, category, priority):
    with pytest.raises(CaseError), db.session_scope() as session:
        open_case(
            session=session,
            sender_id="o-4",
            category=category,
            priority=priority,
            reason="x",
            summary="x",
        )
    with db.session_scope() as session:
        assert session.execute(select(Case)).first() is None


def test_migrate_is_idempotent(database_url):
    db.migrate(database_url)
    db.migrate(database_url)


def _pending_ticket(openid: str, community: str) -> int:
    with db.session_scope() as session:
        ticket = open_ticket(
            session=session, sender_id=openid, kind="dog", summary="恶犬", community=community
        )
        assert ticket.status == "pending"
        return ticket.id


def test_a_ticket_that_cannot_be_delivered_comes_back_to_officers_once(database_url):
    from datetime import timedelta

    from casework import claims, dispatch
    from casework.clock import utcnow

    retried = _pending_ticket("o-retry", "俞范社区")
    refused = _pending_ticket("o-refused", "万景社区")
    start = utcnow()
    with db.session_scope() as session:
        assert {i for i, _ in dispatch.tickets_to_send(session=session, owner="w", now=start)} == {
            retried,
            refused,
        }
        assert (
            dispatch.record_ticket_sent(
                session=session,
                ticket_id=retried,
                error="HTTP 502",
                permanent=False,
                owner="w",
                now=start,
            )
            == "pending"
        )
        assert (
            dispatch.record_ticket_sent(
                session=session,
                ticket_id=refused,
                error="HTTP 400",
                permanent=True,
                owner="w",
                now=start,
            )
            == "failed"
        )
    with db.session_scope() as session:
        again = session.get(Ticket, retried)
        assert (again.status, again.send_attempts, again.send_error) == ("pending", 1, "HTTP 502")
        assert session.get(Ticket, refused).status == "failed"
        [back] = session.execute(select(Case).where(Case.sender_id == "o-refused")).scalars()
        assert (back.reason, back.community) == ("ticket_not_sent", "万景社区")
        assert session.execute(select(Case).where(Case.sender_id == "o-retry")).first() is None
    now = start
    while now < start + claims.RETRY_FOR:  # a day of failures, one attempt whenever due
        with db.session_scope() as session:
            due = session.get(Ticket, retried).next_attempt_at
            now = max(now, aware(due))
            [(ticket_id, _)] = dispatch.tickets_to_send(session=session, owner="w", now=now)
            outcome = dispatch.record_ticket_sent(
                session=session,
                ticket_id=ticket_id,
                error="HTTP 502",
                permanent=False,
                owner="w",
                now=now,
            )
        assert outcome == ("failed" if now >= start + claims.RETRY_FOR else "pending")
        assert now < start + claims.RETRY_FOR + timedelta(minutes=31)
    with db.session_scope() as session:
        given_up = session.get(Ticket, retried)
        assert given_up.status == "failed"  # 24 hours of attempts: given up, back to officers
        assert len(session.execute(select(Case).where(Case.sender_id == "o-retry")).all()) == 1
        sent = _pending_ticket("o-sent", "清水浦社区")
        dispatch.tickets_to_send(session=session, owner="w")
        dispatch.record_ticket_sent(
            session=session, ticket_id=sent, error=None, permanent=False, owner="w"
        )
        delivered = session.get(Ticket, sent)
        assert (delivered.status, delivered.send_error) == ("sent", None)
        assert delivered.sent_at is not None


# ------------------------------------------------------------------ one open case (0006)


def _hand_off(session, priority: str = "normal", **details):
    return open_case(
        session=session,
        sender_id="o-race",
        category="fraud_suspicion",
        priority=priority,
        reason="money_lost",
        summary="被骗",
        details=details,
    )


def _open_cases(sender_id: str = "o-race") -> list[Case]:
    with db.session_scope() as session:
        return list(
            session.execute(
                select(Case).where(Case.sender_id == sender_id, Case.status != "closed")
            ).scalars()
        )


def _wait_for_a_blocked_insert(engine, outcome: dict, timeout: float = 10.0) -> None:
    """Until a connection waits on a lock while inserting a case (the unique index makes
    it wait for our uncommitted one) — orchestration, not a timed assertion."""
    import time

    deadline = time.monotonic() + timeout
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.execute(
                sa.text(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                    " and datname = current_database() and query ilike 'insert into cases%'"
                )
            ).scalar()
            probe.rollback()  # pg_stat_activity is a snapshot per transaction
            if waiting:
                return
            if outcome:  # the other worker finished (or failed) without waiting
                break
            time.sleep(0.02)
    raise AssertionError(f"the second insert never waited (unique index missing?): {outcome}")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_workers_racing_to_open_the_same_case_get_one_merged_case(database_url):
    import threading

    from sqlalchemy.orm import sessionmaker

    engine = db.get_engine(database_url)
    first = sessionmaker(bind=engine, future=True, expire_on_commit=False)()
    mine = _hand_off(first, amount_yuan=5000)  # inserted, not yet committed
    outcome: dict = {}

    def second_worker() -> None:
        try:
            with db.session_scope(database_url) as session:  # misses our row, inserts
                outcome["id"] = _hand_off(session, "urgent", scammer_contact="qq 123").id
        except Exception as error:  # noqa: BLE001 — reported below
            outcome["error"] = error

    thread = threading.Thread(target=second_worker)
    thread.start()
    try:
        _wait_for_a_blocked_insert(engine, outcome)
        first.commit()
    finally:
        first.close()
        thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    [case] = _open_cases()
    assert outcome["id"] == mine.id == case.id
    assert case.details == {"amount_yuan": 5000, "scammer_contact": "qq 123"}
    assert case.priority == "urgent"


def test_the_loser_of_the_race_merges_into_the_winners_case(database_url, monkeypatch):
    from casework import cases

    with db.session_scope() as session:
        winner = _hand_off(session, amount_yuan=100).id
    real = cases._open_case_of
    looks: list[str] = []

    def first_look_misses(*args):  # our look misses the winner's case, as in a race
        looks.append("look")
        return None if len(looks) == 1 else real(*args)

    monkeypatch.setattr(cases, "_open_case_of", first_look_misses)
    with db.session_scope() as session:
        loser = cases.open_case(
            session=session,
            sender_id="o-race",
            category="fraud_suspicion",
            priority="high",
            reason="resident_request",
            summary="又被骗",
            details={"payment_method": "微信"},
        )
        assert loser.id == winner
    assert len(looks) == 2  # the insert was refused and the case looked up again
    [case] = _open_cases()
    assert case.details == {"amount_yuan": 100, "payment_method": "微信"}
    assert (case.priority, case.summary) == ("high", "又被骗")


def test_a_closed_case_does_not_block_a_new_one(database_url):
    with db.session_scope() as session:
        closed = _hand_off(session)
        closed.status = "closed"
    with db.session_scope() as session:
        fresh = _hand_off(session).id
    assert fresh != closed.id and [c.id for c in _open_cases()] == [fresh]


def test_recategorising_into_an_open_case_of_that_category_is_a_conflict(database_url):
    from casework import accounts, handling

    with db.session_scope() as session:
        admin = accounts.create_user(
            session=session, username="chief", password="correct-horse", role="admin"
        )
        fraud = _hand_off(session).id
        other = open_case(
            session=session,
            sender_id="o-race",
            category="other",
            priority="normal",
            reason="x",
            summary="其他",
        ).id
    with pytest.raises(handling.Conflict), db.session_scope() as session:
        handling.correct_category(
            session=session,
            user=session.get(type(admin), admin.id),
            case_id=other,
            category="fraud_suspicion",
        )
    assert {c.id: c.category for c in _open_cases()} == {fraud: "fraud_suspicion", other: "other"}
