"""The outbox: delivery, retries with backoff on transient failures, give-ups on
permanent ones, and each item claimed by one worker only — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from casework import db, outbox
from casework.conversations import conversation_for
from casework.models import Message, OutboxItem, utcnow
from gateway.outbox_worker import OutboxWorker
from integrations.wechat import DeliveryError


class ScriptedMessenger:
    """Fails as scripted, then succeeds; records what it delivered."""

    def __init__(self, failures: list[DeliveryError] | None = None) -> None:
        self.failures = list(failures or [])
        self.delivered: list[tuple[str, str]] = []
        self.attempts = 0

    def send_text(self, openid: str, text: str) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append((openid, text))


def queue(text: str, openid: str = "o-out") -> int:
    with db.session_scope() as session:
        conversation = conversation_for(session=session, openid=openid)
        return outbox.enqueue(
            session=session, conversation_id=conversation.id, openid=openid, text=text, sender="bot"
        ).id


def item(item_id: int) -> OutboxItem:
    with db.session_scope() as session:
        found = session.get(OutboxItem, item_id)
        assert found is not None
        return found


def make_due(item_id: int) -> None:
    with db.session_scope() as session:
        found = session.get(OutboxItem, item_id)
        found.next_attempt_at = utcnow() - timedelta(seconds=1)


def run_pass(worker: OutboxWorker) -> int:
    return asyncio.run(worker.deliver_due())


def test_a_queued_message_is_delivered_once(database_url):
    item_id = queue("民警已收到您的情况")
    messenger = ScriptedMessenger()
    worker = OutboxWorker(messenger, database_url=database_url)
    assert run_pass(worker) == 1
    assert run_pass(worker) == 0
    assert messenger.delivered == [("o-out", "民警已收到您的情况")]
    sent = item(item_id)
    assert (sent.status, sent.attempts) == ("sent", 1)
    with db.session_scope() as session:
        message = session.execute(select(Message).where(Message.direction == "out")).scalar_one()
        assert (message.status, message.delivery) == ("sent", "outbox")


def test_transient_failures_are_retried_with_growing_backoff(database_url):
    item_id = queue("稍后回复")
    messenger = ScriptedMessenger(
        [DeliveryError("-1 系统繁忙", permanent=False), DeliveryError("HTTP 502", permanent=False)]
    )
    worker = OutboxWorker(messenger, database_url=database_url)
    run_pass(worker)
    first = item(item_id)
    assert (first.status, first.attempts, first.last_error) == ("pending", 1, "-1 系统繁忙")
    assert run_pass(worker) == 0  # not due yet: backoff
    make_due(item_id)
    run_pass(worker)
    second = item(item_id)
    assert (second.status, second.attempts) == ("pending", 2)
    assert second.next_attempt_at - first.next_attempt_at >= timedelta(seconds=1)
    make_due(item_id)
    run_pass(worker)
    assert item(item_id).status == "sent"
    assert messenger.delivered == [("o-out", "稍后回复")]


def test_permanent_failures_are_not_retried_and_are_surfaced(database_url):
    item_id = queue("超过48小时")
    messenger = ScriptedMessenger(
        [DeliveryError("45015 超出48小时客服消息回复时限", permanent=True)]
    )
    worker = OutboxWorker(messenger, database_url=database_url)
    run_pass(worker)
    make_due(item_id)
    assert run_pass(worker) == 0
    assert messenger.attempts == 1
    with db.session_scope() as session:
        [failed] = outbox.failed_items(session=session)
        assert (failed.id, failed.last_error) == (item_id, "45015 超出48小时客服消息回复时限")
        message = session.execute(select(Message).where(Message.direction == "out")).scalar_one()
        assert message.status == "failed"


def test_an_item_is_claimed_by_one_worker_only(database_url):
    queue("只发一次")
    with db.session_scope() as session:
        first = outbox.claim_due(session=session)
    with db.session_scope() as session:
        second = outbox.claim_due(session=session)
    assert [c.text for c in first] == ["只发一次"]
    assert second == []


def test_a_claim_abandoned_by_a_dead_worker_is_retried_later(database_url):
    item_id = queue("worker 崩溃")
    now = utcnow()
    with db.session_scope() as session:
        outbox.claim_due(session=session, owner="dead:1", now=now)
    with db.session_scope() as session:  # not before its claim expires
        later = now + outbox.CLAIM_TTL - timedelta(seconds=1)
        assert outbox.claim_due(session=session, owner="alive:2", now=later) == []
    with db.session_scope() as session:
        expired = now + outbox.CLAIM_TTL + timedelta(seconds=1)
        assert [c.id for c in outbox.claim_due(session=session, owner="alive:2", now=expired)] == [
            item_id
        ]


def test_gives_up_after_the_maximum_number_of_attempts(database_url):
    item_id = queue("一直失败")
    worker = OutboxWorker(
        ScriptedMessenger([DeliveryError("-1", permanent=False)] * 20), database_url=database_url
    )
    for _ in range(outbox.MAX_ATTEMPTS):
        make_due(item_id)
        run_pass(worker)
    assert (item(item_id).status, item(item_id).attempts) == ("failed", outbox.MAX_ATTEMPTS)
