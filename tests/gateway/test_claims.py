"""Exactly one delivery with two workers (issue 10), on SQLite and PostgreSQL.

Two `OutboxWorker` / `Dispatcher` instances with different owners share one database;
stand-ins (simulated WeChat, DingTalk and governance platform, counting what they get)
show each outbox item, ticket and case announcement is sent exactly once — in threads
on PostgreSQL, interleaved claim by claim on both. A claim left by a "dead" worker is
taken over only after it expires, and the dead worker's late answer writes nothing.
Outages are simulated with an injected clock, never with sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from casework import claims, db, dispatch, outbox
from casework.cases import open_case, open_ticket
from casework.clock import utcnow
from casework.conversations import conversation_for
from casework.models import Case, OutboxItem, Ticket
from gateway.dispatcher import Dispatcher, build_notification
from gateway.outbox_worker import OutboxWorker
from integrations.governance import GovernanceError
from integrations.notify import NotifyError, RecordingNotifier
from integrations.wechat import DeliveryError

# ------------------------------------------------------------------ stand-ins (simulated)


class CountingMessenger:
    """Simulated WeChat customer-service API: counts each text it is given."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.down = False
        self._lock = threading.Lock()

    def send_text(self, openid: str, text: str) -> None:
        if self.down:
            raise DeliveryError("-1 系统繁忙", permanent=False)
        with self._lock:
            self.sent[text] += 1


class CountingGovernance:
    """Simulated governance platform: counts each ticket it receives; `down` = outage."""

    def __init__(self) -> None:
        self.received: Counter[int] = Counter()
        self.attempts = 0
        self.down = False
        self._lock = threading.Lock()

    def send_ticket(self, payload: dict) -> dict:
        with self._lock:
            self.attempts += 1
            if self.down:
                raise GovernanceError("HTTP 503", permanent=False, status_code=503)
            self.received[payload["ticket_id"]] += 1
        return {"ok": True}


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# ------------------------------------------------------------------ helpers


def queue(text: str, openid: str = "o-claim") -> int:
    with db.session_scope() as session:
        conversation = conversation_for(session=session, openid=openid)
        return outbox.enqueue(
            session=session, conversation_id=conversation.id, openid=openid, text=text, sender="bot"
        ).id


def new_ticket(n: int) -> int:
    with db.session_scope() as session:  # no place: never linked to another ticket
        return open_ticket(
            session=session, sender_id=f"o-t{n}", kind="noise", summary=f"噪音{n}"
        ).id


def new_case(n: int, category: str = "noise_complaint") -> int:
    with db.session_scope() as session:
        return open_case(
            session=session,
            sender_id=f"o-c{n}",
            category=category,
            priority="normal",
            reason="test",
            summary=f"案件{n}",
        ).id


def get(model, item_id: int):
    with db.session_scope() as session:
        found = session.get(model, item_id)
        assert found is not None
        return found


def dispatcher(database_url: str, owner: str, *, clock=utcnow, notifier=None, governance=None):
    return Dispatcher(
        database_url=database_url,
        notifier=notifier,
        governance=governance,
        console_url="http://console.test",
        owner=owner,
        clock=clock,
    )


def in_threads(*passes) -> None:
    """Run each callable in its own thread, started together; re-raise any failure."""
    barrier = threading.Barrier(len(passes))
    failures: list[BaseException] = []

    def run(work) -> None:
        barrier.wait()
        try:
            work()
        except BaseException as error:  # noqa: BLE001 — reported to the test below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(work,)) for work in passes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def repeat(coroutine_function, times: int):
    return lambda: [asyncio.run(coroutine_function()) for _ in range(times)]


postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


# ------------------------------------------------------------------ the outbox


def test_two_outbox_workers_interleaved_claim_disjoint_items(database_url):
    texts = [f"消息{i}" for i in range(30)]
    for text in texts:
        queue(text)
    with db.session_scope() as session:
        first = outbox.claim_due(session=session, owner="host:1", limit=20)
    with db.session_scope() as session:
        second = outbox.claim_due(session=session, owner="host:2", limit=20)
    with db.session_scope() as session:
        assert outbox.claim_due(session=session, owner="host:1") == []  # all taken
    assert len(first) == 20 and len(second) == 10
    assert {c.id for c in first}.isdisjoint({c.id for c in second})
    with db.session_scope() as session:  # nobody finishes another's claim
        assert not outbox.mark_sent(session=session, item_id=first[0].id, owner="host:2")
        assert outbox.mark_sent(session=session, item_id=first[0].id, owner="host:1")
    assert get(OutboxItem, first[0].id).status == "sent"


@postgresql_only
def test_two_outbox_workers_in_threads_send_each_item_exactly_once(database_url):
    texts = [f"并发{i}" for i in range(60)]
    for i, text in enumerate(texts):
        queue(text, openid=f"o-{i % 7}")
    messenger = CountingMessenger()
    workers = [
        OutboxWorker(messenger, database_url=database_url, owner=f"host:{n}") for n in (1, 2)
    ]
    in_threads(*(repeat(w.deliver_due, 5) for w in workers))
    assert messenger.sent == Counter(texts)  # every one, once
    with db.session_scope() as session:
        statuses = session.execute(select(OutboxItem.status, OutboxItem.claimed_by)).all()
    assert set(statuses) == {("sent", None)}


def test_an_outbox_claim_is_taken_over_only_after_it_expires(database_url):
    item_id = queue("worker 崩溃")
    clock = Clock()  # started after the item was queued: it is due
    messenger = CountingMessenger()
    dead = OutboxWorker(messenger, database_url=database_url, owner="host:dead", clock=clock)
    alive = OutboxWorker(messenger, database_url=database_url, owner="host:alive", clock=clock)
    [claimed] = dead._claim()  # …and the process dies before sending
    clock.advance(seconds=claims.CLAIM_TTL.total_seconds() - 1)
    assert asyncio.run(alive.deliver_due()) == 0  # not stale yet
    assert (get(OutboxItem, item_id).status, get(OutboxItem, item_id).claimed_by) == (
        "sending",
        "host:dead",
    )
    clock.advance(seconds=2)
    assert asyncio.run(alive.deliver_due()) == 1
    assert messenger.sent == Counter({"worker 崩溃": 1})
    # the "dead" worker was only stalled: its late answer must not overwrite anything
    assert dead._finish(claimed.id, DeliveryError("-1", permanent=False)) == "lost"
    assert dead._finish(claimed.id, None) == "lost"
    final = get(OutboxItem, item_id)
    assert (final.status, final.attempts, final.last_error) == ("sent", 2, None)


def test_a_late_finisher_does_not_overwrite_the_new_owner(database_url):
    item_id = queue("接管中")
    clock = Clock()
    with db.session_scope() as session:
        outbox.claim_due(session=session, owner="host:slow", now=clock())
    clock.advance(minutes=6)
    with db.session_scope() as session:
        [taken] = outbox.claim_due(session=session, owner="host:new", now=clock())
    with db.session_scope() as session:
        assert (
            outbox.mark_failed(
                session=session, item_id=item_id, error="x", permanent=True, owner="host:slow"
            )
            == "lost"
        )
    still = get(OutboxItem, item_id)
    assert (still.status, still.claimed_by) == ("sending", "host:new")
    with db.session_scope() as session:
        assert outbox.mark_sent(session=session, item_id=taken.id, owner="host:new")
    assert get(OutboxItem, item_id).status == "sent"


# ------------------------------------------------------------------ governance tickets


def test_two_dispatchers_interleaved_send_each_ticket_once(database_url):
    ids = [new_ticket(n) for n in range(8)]
    governance = CountingGovernance()
    first = dispatcher(database_url, "host:1", governance=governance)
    second = dispatcher(database_url, "host:2", governance=governance)
    with db.session_scope() as session:  # the first worker has claimed, not yet sent
        claimed = dispatch.tickets_to_send(session=session, owner="host:1", limit=5)
    asyncio.run(second.run_once())  # the second sends only what is left
    assert set(governance.received) == set(ids) - {i for i, _ in claimed}
    for ticket_id, body in claimed:
        governance.send_ticket(body)
        first._ticket_sent(ticket_id, None, False)
    asyncio.run(first.run_once())
    asyncio.run(second.run_once())
    assert governance.received == Counter(ids)
    assert {get(Ticket, i).status for i in ids} == {"sent"}


@postgresql_only
def test_two_dispatchers_in_threads_send_each_ticket_exactly_once(database_url):
    ids = [new_ticket(n) for n in range(50)]
    governance = CountingGovernance()
    workers = [dispatcher(database_url, f"host:{n}", governance=governance) for n in (1, 2)]
    in_threads(*(repeat(w.run_once, 4) for w in workers))
    assert governance.received == Counter(ids)
    assert governance.attempts == 50
    with db.session_scope() as session:
        rows = session.execute(select(Ticket.status, Ticket.send_attempts, Ticket.claimed_by)).all()
    assert set(rows) == {("sent", 1, None)}


def test_a_ticket_claim_is_taken_over_only_after_it_expires(database_url):
    clock = Clock()
    ticket_id = new_ticket(1)
    with db.session_scope() as session:  # a worker claims it and dies
        assert [i for i, _ in dispatch.tickets_to_send(session=session, owner="host:dead")] == [
            ticket_id
        ]
    governance = CountingGovernance()
    alive = dispatcher(database_url, "host:alive", governance=governance, clock=clock)
    asyncio.run(alive.run_once())
    assert governance.attempts == 0
    clock.advance(seconds=claims.CLAIM_TTL.total_seconds() + 1)
    asyncio.run(alive.run_once())
    assert governance.received == Counter({ticket_id: 1})
    with db.session_scope() as session:
        late = dispatch.record_ticket_sent(
            session=session,
            ticket_id=ticket_id,
            error="HTTP 502",
            permanent=False,
            owner="host:dead",
        )
    assert late == "lost"
    assert (get(Ticket, ticket_id).status, get(Ticket, ticket_id).send_error) == ("sent", None)


def test_a_ten_minute_platform_outage_does_not_fail_tickets(database_url):
    clock = Clock()
    start = clock()
    ticket_id = new_ticket(1)
    governance = CountingGovernance()
    governance.down = True
    worker = dispatcher(database_url, "host:1", governance=governance, clock=clock)
    attempts_at = []
    while clock() < start + timedelta(minutes=10):
        before = governance.attempts
        asyncio.run(worker.run_once())  # one pass every 5 simulated seconds
        if governance.attempts > before:
            attempts_at.append((clock() - start).total_seconds())
        ticket = get(Ticket, ticket_id)
        assert ticket.status == "pending"
        clock.advance(seconds=5)
    # 0, 5, 15, 35, 75, 155, 315 s: the waits double (5 s, 10 s, 20 s …), no hammering
    assert attempts_at == [0, 5, 15, 35, 75, 155, 315]
    assert ticket.send_error == "HTTP 503" and ticket.send_attempts == 7
    governance.down = False
    while governance.received[ticket_id] == 0:
        asyncio.run(worker.run_once())
        clock.advance(seconds=5)
    assert (clock() - start).total_seconds() == 640  # the attempt due at 635 s
    assert get(Ticket, ticket_id).status == "sent"
    with db.session_scope() as session:  # nothing came back to officers
        assert session.execute(select(Case)).first() is None


def test_the_backoff_is_capped_and_gives_up_after_a_day():
    assert [claims.retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert claims.retry_delay(10) == claims.RETRY_CAP == timedelta(minutes=30)
    assert claims.retry_delay(10_000) == claims.RETRY_CAP
    first = utcnow()
    assert not claims.retries_exhausted(first, first + timedelta(hours=23, minutes=59))
    assert claims.retries_exhausted(first, first + timedelta(hours=24))
    assert not claims.retries_exhausted(None, first)


# ------------------------------------------------------------------ DingTalk announcements


def test_two_dispatchers_interleaved_announce_each_case_once(database_url):
    ids = [new_case(n) for n in range(6)]
    notifier = RecordingNotifier()
    with db.session_scope() as session:  # the first worker claimed three, not yet sent
        routed = dispatch.route_new_cases(session=session, can_notify=True, owner="host:1", limit=3)
    second = dispatcher(database_url, "host:2", notifier=notifier)
    asyncio.run(second.run_once())
    assert {n.case_id for n in notifier.sent} == set(ids) - {r.id for r in routed}
    first = dispatcher(database_url, "host:1", notifier=notifier)
    for case in routed:  # the first worker now sends what it had claimed
        notifier.send(build_notification(case, list(case.names), [], "http://console.test"))
        assert first._record_announcement(case.id, None, False) == "sent"
    asyncio.run(first.run_once())
    asyncio.run(second.run_once())
    assert Counter(n.case_id for n in notifier.sent) == Counter(ids)
    assert {get(Case, i).notify_status for i in ids} == {"sent"}


@postgresql_only
def test_two_dispatchers_in_threads_announce_each_case_exactly_once(database_url):
    ids = [new_case(n) for n in range(40)]
    notifier = RecordingNotifier()
    workers = [dispatcher(database_url, f"host:{n}", notifier=notifier) for n in (1, 2)]
    in_threads(*(repeat(w.run_once, 4) for w in workers))
    assert Counter(n.case_id for n in notifier.sent) == Counter(ids)
    assert notifier.attempts == 40
    assert {(get(Case, i).notify_status, get(Case, i).notify_claimed_by) for i in ids} == {
        ("sent", None)
    }


def test_a_notification_claimed_by_a_dead_worker_is_sent_after_the_claim_expires(database_url):
    clock = Clock()
    case_id = new_case(1)
    with db.session_scope() as session:  # routed and claimed; the process dies
        [routed] = dispatch.route_new_cases(
            session=session, can_notify=True, owner="host:dead", now=clock()
        )
    notifier = RecordingNotifier()
    alive = dispatcher(database_url, "host:alive", notifier=notifier, clock=clock)
    asyncio.run(alive.run_once())
    assert notifier.attempts == 0 and get(Case, case_id).notify_status == "pending"
    clock.advance(seconds=claims.CLAIM_TTL.total_seconds() + 1)
    asyncio.run(alive.run_once())
    assert [n.case_id for n in notifier.sent] == [case_id]
    assert get(Case, case_id).notify_status == "sent"
    with db.session_scope() as session:
        late = dispatch.record_announcement(
            session=session, case_id=routed.id, error="timeout", owner="host:dead"
        )
    assert late == "lost" and get(Case, case_id).notify_status == "sent"


def test_dingtalk_failures_are_retried_later_without_sleeping(database_url):
    clock = Clock()
    case_id = new_case(1)
    notifier = RecordingNotifier()
    notifier.fail_next(NotifyError("errcode -1 busy", permanent=False), times=2)
    worker = dispatcher(database_url, "host:1", notifier=notifier, clock=clock)
    asyncio.run(worker.run_once())
    waiting = get(Case, case_id)
    assert (waiting.notify_status, waiting.notify_error, waiting.notify_attempts) == (
        "pending",
        "errcode -1 busy",
        1,
    )
    assert waiting.notify_next_attempt_at is not None and waiting.notify_claimed_by is None
    asyncio.run(worker.run_once())  # same instant: not due yet, nobody is hammered
    assert notifier.attempts == 1
    clock.advance(seconds=5)
    asyncio.run(worker.run_once())
    assert notifier.attempts == 2 and get(Case, case_id).notify_status == "pending"
    clock.advance(seconds=5)
    asyncio.run(worker.run_once())  # the second wait is 10 s
    assert notifier.attempts == 2
    clock.advance(seconds=5)
    asyncio.run(worker.run_once())
    assert [n.case_id for n in notifier.sent] == [case_id]
    done = get(Case, case_id)
    assert (done.notify_status, done.notify_error, done.notify_attempts) == ("sent", None, 3)


def test_a_notification_failing_for_a_day_stays_visibly_failed(database_url):
    clock = Clock()
    start = clock()
    case_id = new_case(1)
    notifier = RecordingNotifier()
    notifier.fail_next(NotifyError("HTTP 502", permanent=False), times=1000)
    worker = dispatcher(database_url, "host:1", notifier=notifier, clock=clock)
    while get(Case, case_id).notify_status == "pending" or notifier.attempts == 0:
        asyncio.run(worker.run_once())
        clock.now = max(clock.now, get_next(case_id) or clock.now)
        assert clock() < start + timedelta(hours=25)
    failed = get(Case, case_id)
    assert (failed.notify_status, failed.notify_error) == ("failed", "HTTP 502")
    # 5 s doubling to 30 min over 24 h: about 55 attempts, not thousands
    assert 40 < notifier.attempts < 60
    attempts = notifier.attempts
    clock.advance(hours=1)
    asyncio.run(worker.run_once())
    assert notifier.attempts == attempts  # failed for good: in the queue for officers


def get_next(case_id: int) -> datetime | None:
    from casework.clock import aware

    return aware(get(Case, case_id).notify_next_attempt_at)


def test_a_transferred_case_is_announced_again(database_url):
    case_id = new_case(1)
    notifier = RecordingNotifier()
    worker = dispatcher(database_url, "host:1", notifier=notifier)
    asyncio.run(worker.run_once())
    with db.session_scope() as session:
        session.get(Case, case_id).notify_status = None  # what handling.transfer does
    asyncio.run(worker.run_once())
    assert [n.case_id for n in notifier.sent] == [case_id, case_id]
    assert get(Case, case_id).notify_attempts == 1  # a fresh announcement, fresh retries
