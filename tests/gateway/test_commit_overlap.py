"""The bot is asked while a later message's commit runs — on PostgreSQL only — and a
message is still never answered unless it is stored (issue 10: the gateway's own time).

The commit is held up on purpose (a wrapper around `InboundService._store` sleeps
between the statements and the commit), and the stand-in Rasa looks, from a connection
of its own, whether the message it is asked about is committed yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from casework import db
from casework.intake import StoredInbound
from casework.models import Message
from gateway.service import InboundService
from tests.gateway.conftest import StandInRasa, text_xml

HOLD = 0.3  # seconds the commit is held up after the statements ran


class VisibilityRasa(StandInRasa):
    """Notes, for each message it is asked about, whether another connection sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.committed_when_asked: list[bool] = []

    async def send(self, sender: str, text: str, metadata: dict | None = None) -> list[dict]:
        message_id = (metadata or {}).get("gateway_message_id")
        self.committed_when_asked.append(await asyncio.to_thread(_visible, message_id))
        return await super().send(sender, text, metadata)


def _visible(message_id: int | None) -> bool:
    with db.session_scope() as session:
        return session.get(Message, message_id) is not None


def _stored(dedupe_key_part: str) -> list[Message]:
    with db.session_scope() as session:
        return list(
            session.execute(
                select(Message).where(Message.dedupe_key.contains(dedupe_key_part))
            ).scalars()
        )


@pytest.fixture
def rasa() -> VisibilityRasa:
    return VisibilityRasa()


def _hold_commits(monkeypatch, hold: dict[str, bool]) -> None:
    """Hold every early-ready commit up; `hold["fail"]` makes it fail after the hold."""
    original = InboundService._store

    def held(self, incoming, signed, ready: Callable[[StoredInbound], None] | None = None):
        def then_wait(stored: StoredInbound) -> None:
            assert ready is not None
            ready(stored)
            time.sleep(HOLD)
            if hold["fail"]:
                raise ConnectionError("simulated: the database went away before the commit")

        return original(self, incoming, signed, then_wait if ready is not None else None)

    monkeypatch.setattr(InboundService, "_store", held)


def test_a_later_message_is_asked_before_its_commit_only_on_postgresql(
    wechat, rasa: VisibilityRasa, database_url: str, monkeypatch
) -> None:
    _hold_commits(monkeypatch, {"fail": False})
    first = wechat.post(text_xml("o-overlap", "你好", msg_id=7001))
    assert wechat.reply_text(first, encrypted=False) == "收到：你好"
    later = wechat.post(text_xml("o-overlap", "身份证丢了怎么补办", msg_id=7002))
    assert wechat.reply_text(later, encrypted=False) == "收到：身份证丢了怎么补办"

    postgresql = database_url.startswith("postgresql")
    # The first message created the resident and the conversation: always committed first.
    # A later one is asked about while its commit runs — on PostgreSQL.
    assert rasa.committed_when_asked == [True, not postgresql]
    # Either way the answer left only once the message was stored, with its reply.
    stored = {m.dedupe_key: m for m in _stored("700")}
    assert len(stored) == 2
    assert all(m.reply and m.reply.startswith("收到：") for m in stored.values())


def test_a_commit_that_fails_answers_503_and_the_retry_is_stored_and_answered(
    wechat, rasa: VisibilityRasa, database_url: str, monkeypatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite commits before the bot is asked: nothing to fail in between")
    hold = {"fail": True}
    _hold_commits(monkeypatch, hold)
    assert wechat.reply_text(wechat.post(text_xml("o-lost", "你好", msg_id=7101)))  # first contact
    refused = wechat.post(text_xml("o-lost", "我的快递被冒领了", msg_id=7102))
    assert refused.status_code == 503  # WeChat retries the same MsgId
    assert [m.dedupe_key for m in _stored("7102")] == []  # nothing half-stored
    hold["fail"] = False
    retried = wechat.post(text_xml("o-lost", "我的快递被冒领了", msg_id=7102))
    assert wechat.reply_text(retried) == "收到：我的快递被冒领了"
    (message,) = _stored("7102")
    assert message.reply == "收到：我的快递被冒领了"
