"""A gateway worker killed mid-turn loses nothing (issue 10), on SQLite and PostgreSQL.

The message was stored (`received`) and WeChat's retries were answered `success` as
duplicates; the late answer lived in the dead worker's memory. The bot turn's claim
(`intake.store_inbound(turn_owner=…)`) lets another worker's dispatcher find it once the
claim expires: the resident gets the fallback through the outbox and officers get a case
— and Rasa is never asked a second time. Time moves by an injected clock, never sleeps.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy import select

from casework import claims, db, intake
from casework.clock import utcnow
from casework.conversations import conversation_for, hand_to_officers
from casework.models import Case, Message, OutboxItem
from gateway.service import BOT_UNAVAILABLE
from tests.gateway.conftest import text_xml
from tests.gateway.test_claims import Clock, dispatcher, in_threads, postgresql_only


def store(openid: str, key: str, *, owner: str | None = "dead-host:1", now=None) -> int:
    with db.session_scope() as session:
        return intake.store_inbound(
            session=session,
            signed=None,
            openid=openid,
            dedupe_key=key,
            msg_type="text",
            content=f"{openid} 的消息",
            media={},
            turn_owner=owner,
            now=now,
        ).message_id


def outbox_texts(openid: str) -> list[str]:
    with db.session_scope() as session:
        return list(
            session.execute(select(OutboxItem.text).where(OutboxItem.openid == openid)).scalars()
        )


def message(message_id: int) -> Message:
    with db.session_scope() as session:
        found = session.get(Message, message_id)
        assert found is not None
        return found


def open_cases(openid: str) -> list[Case]:
    with db.session_scope() as session:
        return list(
            session.execute(
                select(Case).where(Case.sender_id == openid, Case.status != "closed")
            ).scalars()
        )


def test_a_stalled_turn_is_answered_only_after_its_claim_expires(database_url):
    clock = Clock()
    message_id = store("o-stall", "k-stall", now=clock.now)
    assert message(message_id).claimed_by == "dead-host:1"
    sweeper = dispatcher(database_url, "live:2", clock=clock)

    clock.advance(seconds=claims.TURN_CLAIM_TTL.total_seconds() - 5)
    asyncio.run(sweeper.run_once())
    assert outbox_texts("o-stall") == []  # the owner may still be working on it
    assert message(message_id).status == "received"

    clock.advance(seconds=10)
    asyncio.run(sweeper.run_once())
    assert outbox_texts("o-stall") == [BOT_UNAVAILABLE]
    stored = message(message_id)
    assert (stored.status, stored.claimed_by) == ("answered", "live:2")
    [case] = open_cases("o-stall")
    assert case.reason == "bot_unavailable" and case.priority == "high"
    assert case.details["first_message"] == "o-stall 的消息"

    asyncio.run(sweeper.run_once())  # answered once, not on every pass
    assert outbox_texts("o-stall") == [BOT_UNAVAILABLE]


def test_messages_not_meant_for_the_bot_are_never_swept(database_url):
    clock = Clock()
    message_id = store("o-event", "k-event", owner=None, now=clock.now)
    clock.advance(hours=1)
    asyncio.run(dispatcher(database_url, "live:2", clock=clock).run_once())
    assert outbox_texts("o-event") == []
    assert message(message_id).status == "received"


def test_a_stalled_turn_an_officer_took_over_is_left_to_the_officer(database_url):
    clock = Clock()
    message_id = store("o-officer", "k-officer", now=clock.now)
    with db.session_scope() as session:
        hand_to_officers(session=session, openid="o-officer")
    clock.advance(minutes=5)
    asyncio.run(dispatcher(database_url, "live:2", clock=clock).run_once())
    assert outbox_texts("o-officer") == []
    assert message(message_id).status == "for_officer"


def test_a_slow_worker_outlived_by_its_claim_queues_nothing(database_url):
    clock = Clock()
    message_id = store("o-slow", "k-slow", owner="slow:1", now=clock.now)
    clock.advance(minutes=2)
    asyncio.run(dispatcher(database_url, "live:2", clock=clock).run_once())
    with db.session_scope() as session:
        conversation = conversation_for(session=session, openid="o-slow")
        queued = intake.answer_later(
            session=session,
            message_id=message_id,
            conversation_id=conversation.id,
            openid="o-slow",
            texts=["机器人迟到的回答"],
            sender="bot",
            owner="slow:1",
        )
    assert queued is False
    assert outbox_texts("o-slow") == [BOT_UNAVAILABLE]  # one answer, not two


def test_the_owner_still_queues_its_own_late_answer(database_url):
    message_id = store("o-late", "k-late", owner="me:1")
    with db.session_scope() as session:
        conversation = conversation_for(session=session, openid="o-late")
        assert intake.answer_later(
            session=session,
            message_id=message_id,
            conversation_id=conversation.id,
            openid="o-late",
            texts=["稍后的回答"],
            sender="bot",
            owner="me:1",
        )
    assert outbox_texts("o-late") == ["稍后的回答"]
    assert message(message_id).status == "answered"


@postgresql_only
def test_two_sweeping_workers_in_threads_answer_each_stalled_turn_once(database_url):
    clock = Clock()
    ids = [store(f"o-many{i}", f"k-many{i}", now=clock.now) for i in range(25)]
    clock.advance(minutes=2)
    first, second = (
        dispatcher(database_url, "a:1", clock=clock),
        dispatcher(database_url, "b:2", clock=clock),
    )
    in_threads(
        lambda: [asyncio.run(first.run_once()) for _ in range(4)],
        lambda: [asyncio.run(second.run_once()) for _ in range(4)],
    )
    for i, message_id in enumerate(ids):
        assert outbox_texts(f"o-many{i}") == [BOT_UNAVAILABLE]
        assert len(open_cases(f"o-many{i}")) == 1
        assert message(message_id).status == "answered"


def test_a_worker_killed_mid_turn_through_the_gateway(wechat, rasa, database_url):
    """The real path: the bot is too slow for the passive window, WeChat gets `success`,
    the worker "dies" (its late-delivery task is cancelled), WeChat's retry is answered
    `success` as a duplicate; another worker's sweep then answers the resident."""
    service = wechat.client.app.state.inbound
    service.passive_budget = 0.2
    rasa.delay = 30  # the turn outlives the passive window
    xml = text_xml("o-killed", "我的电动车被偷了", msg_id=424242)
    assert wechat.reply_text(wechat.post(xml)) is None
    deadline = time.monotonic() + 5
    while not service._background and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service._background  # the late delivery, in this worker's memory only

    async def die() -> None:
        for task in list(service._background):
            task.cancel()

    wechat.client.portal.call(die)
    assert wechat.reply_text(wechat.post(xml)) is None  # WeChat's retry: a duplicate
    assert outbox_texts("o-killed") == []
    assert len(rasa.calls) == 1

    clock = Clock()
    clock.now = utcnow() + claims.TURN_CLAIM_TTL + timedelta(seconds=1)
    asyncio.run(dispatcher(database_url, "other-worker:2", clock=clock).run_once())
    assert outbox_texts("o-killed") == [BOT_UNAVAILABLE]
    assert [c.reason for c in open_cases("o-killed")] == ["bot_unavailable"]
    assert len(rasa.calls) == 1  # the bot was not asked a second time
