"""Storing an inbound message in few statements (issue 10) keeps every guarantee.

`intake.store_inbound` is one `INSERT … ON CONFLICT` for the nonce and one for the
message. On PostgreSQL the races are played for real: the first request's transaction
is held open until the second one is seen waiting on its lock (`pg_stat_activity`), then
committed or rolled back — no sleeps. Statement counts are machine-independent; the
timings are `bench/store_inbound.py`'s business.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from casework import conversations, db, intake, replay
from casework.clock import aware, utcnow
from casework.models import Conversation, Message, Resident, SeenNonce
from tests.gateway.test_claims import postgresql_only

WINDOW = timedelta(minutes=10)


def store(
    session: Session, openid: str, msg_id: int, nonce: str, body: bytes | None = None
) -> intake.StoredInbound:
    content = f"{openid} 的第 {msg_id} 条消息"
    return intake.store_inbound(
        session=session,
        signed=intake.SignedCallback(nonce_key=nonce, body=body or content.encode(), window=WINDOW),
        openid=openid,
        dedupe_key=f"msg:{msg_id}",
        msg_type="text",
        content=content,
        media={},
        turn_owner="me:1",
    )


def store_now(openid: str, msg_id: int, nonce: str, body: bytes | None = None):
    with db.session_scope() as session:
        return store(session, openid, msg_id, nonce, body)


def count(model, **where: Any) -> int:
    with db.session_scope() as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return session.execute(query).scalar_one()


class Abort(Exception):
    """Makes the first request's transaction roll back."""


def race(
    first: Callable[[Session], Any], second: Callable[[Session], Any], *, commit: bool = True
) -> tuple[Any, Any]:
    """`first` runs and keeps its transaction open; `second` starts in another
    transaction and is waited for until PostgreSQL shows it blocked on a lock held by
    the first; then the first commits (or rolls back). Returns both results (an
    exception is returned as the result)."""
    results: dict[str, Any] = {}
    first_done, release, second_pid = threading.Event(), threading.Event(), []

    def run_first() -> None:
        try:
            with db.session_scope() as session:
                results["first"] = first(session)
                first_done.set()
                assert release.wait(20)
                if not commit:
                    raise Abort
        except Abort:
            pass
        except Exception as error:  # noqa: BLE001 — reported to the test
            results["first"] = error
            first_done.set()

    def run_second() -> None:
        try:
            with db.session_scope() as session:
                second_pid.append(session.execute(text("select pg_backend_pid()")).scalar())
                results["second"] = second(session)
        except Exception as error:  # noqa: BLE001 — reported to the test
            results["second"] = error

    one = threading.Thread(target=run_first)
    one.start()
    assert first_done.wait(20)
    two = threading.Thread(target=run_second)
    two.start()
    deadline, waiting = time.monotonic() + 20, None
    while time.monotonic() < deadline and waiting != "Lock":
        if second_pid:
            with db.session_scope() as session:
                waiting = session.execute(
                    text("select wait_event_type from pg_stat_activity where pid = :pid"),
                    {"pid": second_pid[0]},
                ).scalar()
        time.sleep(0.01)
    blocked = waiting == "Lock"
    release.set()
    one.join(20)
    two.join(20)
    assert blocked, "the second request never waited for the first one's lock"
    return results["first"], results["second"]


# ------------------------------------------------------------------ both databases


def test_first_message_retry_and_replay(database_url):
    first = store_now("o-a", 1, "n-1")
    assert first.new and first.reply is None and first.owner == "bot"
    retry = store_now("o-a", 1, "n-1-retry")  # WeChat's retry: a new signature
    assert (retry.new, retry.message_id, retry.conversation_id) == (
        False,
        first.message_id,
        first.conversation_id,
    )
    with pytest.raises(intake.Replayed):
        store_now("o-a", 2, "n-1", body=b"another body")
    later = store_now("o-a", 3, "n-3")
    assert later.new and later.conversation_id == first.conversation_id
    assert count(Message, direction="in") == 2 and count(Resident) == 1
    assert count(SeenNonce) == 3  # the replay left nothing
    with db.session_scope() as session:
        stored = session.get(Message, later.message_id)
        assert stored is not None
        assert (stored.status, stored.claimed_by, stored.conversation_id) == (
            "received",
            "me:1",
            first.conversation_id,
        )
        assert aware(stored.claim_expires_at) > utcnow()


def test_a_retry_repeats_the_passive_reply(database_url):
    first = store_now("o-b", 10, "n-10")
    with db.session_scope() as session:
        intake.answer_passively(
            session=session,
            message_id=first.message_id,
            conversation_id=first.conversation_id,
            text="您好",
            sender="bot",
        )
    assert store_now("o-b", 10, "n-10-retry").reply == "您好"


def test_a_nonce_whose_window_passed_is_new_again_and_pruned(database_url, monkeypatch):
    monkeypatch.setattr(replay, "_sightings", itertools.count(1))  # no prune on the way
    with db.session_scope() as session:
        session.add(
            SeenNonce(
                scope="wechat",
                nonce_key="n-old",
                body_hash=replay.body_hash(b"old"),
                expires_at=utcnow() - timedelta(seconds=1),
            )
        )
        session.add(
            SeenNonce(
                scope="governance",
                nonce_key="n-gone",
                body_hash=replay.body_hash(b"gone"),
                expires_at=utcnow() - timedelta(seconds=1),
            )
        )
    # not yet pruned: the expired entry is taken over, not taken for a replay
    assert store_now("o-c", 20, "n-old", body=b"new").new
    with db.session_scope() as session:
        entry = session.get(SeenNonce, ("wechat", "n-old"))
        assert entry.body_hash == replay.body_hash(b"new")
        assert aware(entry.expires_at) > utcnow()
        assert replay.prune_expired(session=session, scope="wechat") == 0
        assert replay.prune_expired(session=session) == 1  # n-gone, of another scope
    assert count(SeenNonce) == 1


def test_every_hundredth_sighting_prunes_expired_nonces(database_url, monkeypatch):
    with db.session_scope() as session:
        session.add(
            SeenNonce(
                scope="dissuasion",
                nonce_key="n-stale",
                body_hash=replay.body_hash(b"stale"),
                expires_at=utcnow() - timedelta(seconds=1),
            )
        )
    monkeypatch.setattr(replay, "_sightings", itertools.count(1))
    for n in range(replay.PRUNE_EVERY - 1):
        store_now("o-p", 100 + n, f"n-p{n}")
    assert count(SeenNonce, nonce_key="n-stale") == 1
    store_now("o-p", 99, "n-p-last")  # the hundredth
    assert count(SeenNonce, nonce_key="n-stale") == 0
    assert count(SeenNonce) == replay.PRUNE_EVERY


def test_last_seen_is_written_once_a_minute_not_per_message(database_url):
    store_now("o-d", 30, "n-30")
    with db.session_scope() as session:
        resident = session.execute(select(Resident).where(Resident.openid == "o-d")).scalar_one()
        resident.last_seen_at = utcnow() - timedelta(seconds=30)
    store_now("o-d", 31, "n-31")
    with db.session_scope() as session:
        seen = session.execute(
            select(Resident.last_seen_at).where(Resident.openid == "o-d")
        ).scalar_one()
        assert utcnow() - aware(seen) >= timedelta(seconds=29)  # within the step: kept
        session.execute(
            Resident.__table__.update()
            .where(Resident.openid == "o-d")
            .values(last_seen_at=utcnow() - timedelta(minutes=5))
        )
    store_now("o-d", 32, "n-32")
    with db.session_scope() as session:
        seen = session.execute(
            select(Resident.last_seen_at).where(Resident.openid == "o-d")
        ).scalar_one()
        assert utcnow() - aware(seen) < timedelta(seconds=10)


def test_events_locations_and_images_still_recorded(database_url):
    with db.session_scope() as session:
        intake.store_inbound(
            session=session,
            signed=None,
            openid="o-e",
            dedupe_key="o-e:1:unsubscribe",
            msg_type="event",
            content="",
            media={},
            event="unsubscribe",
        )
        intake.store_inbound(
            session=session,
            signed=None,
            openid="o-e",
            dedupe_key="msg:40",
            msg_type="location",
            content="人民路",
            media={"location": {"label": "人民路", "lat": 29.9, "lng": 121.6}},
        )
    with db.session_scope() as session:
        conversation = conversations.conversation_for(session=session, openid="o-e")
        assert (conversation.location_label, conversation.location_lat) == ("人民路", 29.9)
        resident = session.get(Resident, conversation.resident_id)
        assert resident is not None and resident.subscribed is False


def statements_of(database_url: str, work: Callable[[], Any]) -> list[str]:
    sent: list[str] = []

    def log(_conn, _cursor, statement, *_args) -> None:
        sent.append(statement)

    engine = db.get_engine(database_url)
    event.listen(engine, "before_cursor_execute", log)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", log)
    return sent


def test_statements_per_stored_message(database_url, monkeypatch):
    """The round trips of the passive reply's path (issue 10): 12 statements a message
    before; now the nonce, the conversation and the message. Prunes are every 100th."""
    monkeypatch.setattr(replay, "_sightings", itertools.count(1))  # no prune here
    first = statements_of(database_url, lambda: store_now("o-f", 50, "n-50"))
    later = statements_of(database_url, lambda: store_now("o-f", 51, "n-51"))
    retry = statements_of(database_url, lambda: store_now("o-f", 51, "n-51-retry"))
    assert len(later) == 3, later
    assert len(retry) == 4, retry
    assert len(first) == 7, first  # + the savepoint that creates resident and conversation
    assert not any("SAVEPOINT" in s for s in later + retry)


# ------------------------------------------------------------------ PostgreSQL races


@postgresql_only
def test_two_concurrent_retries_of_one_msgid_store_one_message(database_url):
    store_now("o-r", 60, "n-60")  # the resident exists: the race is on the message
    first, second = race(
        lambda s: store(s, "o-r", 61, "n-61"), lambda s: store(s, "o-r", 61, "n-61-retry")
    )
    assert first.new and not second.new and first.message_id == second.message_id
    assert count(Message, dedupe_key="msg:61") == 1


@postgresql_only
def test_a_retry_racing_a_store_that_rolls_back_stores_it(database_url):
    store_now("o-s", 70, "n-70")
    first, second = race(
        lambda s: store(s, "o-s", 71, "n-71"),
        lambda s: store(s, "o-s", 71, "n-71-retry"),
        commit=False,
    )
    assert first.new and second.new  # the first one never happened
    assert count(Message, dedupe_key="msg:71") == 1


@postgresql_only
def test_two_first_messages_of_a_new_resident_at_once_make_one_conversation(database_url):
    first, second = race(
        lambda s: store(s, "o-new", 80, "n-80"), lambda s: store(s, "o-new", 81, "n-81")
    )
    assert first.new and second.new and first.conversation_id == second.conversation_id
    assert count(Conversation, openid="o-new") == 1 and count(Resident, openid="o-new") == 1
    assert count(Message, conversation_id=first.conversation_id) == 2


@postgresql_only
def test_one_signature_twice_at_once_is_a_retry_or_a_replay(database_url):
    store_now("o-t", 90, "n-90")
    body = "o-t 的第 91 条消息".encode()
    first, second = race(
        lambda s: store(s, "o-t", 91, "n-91", body), lambda s: store(s, "o-t", 91, "n-91", body)
    )
    assert first.new and not second.new and first.message_id == second.message_id
    first, second = race(
        lambda s: store(s, "o-t", 92, "n-92"),
        lambda s: store(s, "o-t", 93, "n-92", b"forged"),
    )
    assert first.new and isinstance(second, intake.Replayed)
    assert count(Message, dedupe_key="msg:93") == 0


def test_a_shared_location_in_a_community_becomes_the_residents_community_once(database_url):
    """Issue 11: where a resident lives, from a location they shared — never overwriting
    a community they already have."""

    def share(key: str, label: str) -> None:
        with db.session_scope() as session:
            intake.store_inbound(
                session=session,
                signed=None,
                openid="o-loc",
                dedupe_key=key,
                msg_type="location",
                content=label,
                media={"location": {"label": label, "lat": 29.95, "lng": 121.71}},
            )

    def community() -> str | None:
        with db.session_scope() as session:
            return session.execute(
                select(Resident.community).where(Resident.openid == "o-loc")
            ).scalar_one()

    share("msg:50", "浙江省宁波市镇海区中山西路")  # no community named: nothing
    assert community() is None
    share("msg:51", "浙江省宁波市镇海区骆驼街道万景社区东门")
    assert community() == "万景社区"
    share("msg:52", "镇海区招宝山街道总浦桥社区")  # passing through elsewhere
    assert community() == "万景社区"
