"""/wechat over several Rasa replicas (simulated replicas on real local sockets), and one
owner for real: a tracker left paused while the database says the bot owns the
conversation — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from wechatpy.crypto import WeChatCrypto

from casework import db
from casework.conversations import hand_to_officers
from casework.models import Case, Message
from gateway import service
from gateway.app import create_app
from integrations.rasa import RasaClient, user_turns
from tests.gateway.conftest import (
    AES_KEY,
    APP_ID,
    TOKEN,
    WeChatServer,
    gateway_settings,
    text_xml,
)
from tests.rasa_replicas import DyingReplica, refused_url, sender_first_on, served


def rows(model, **where):
    with db.session_scope() as session:
        query = select(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return list(session.execute(query).scalars())


@pytest.fixture
def gateway_over(database_url, monkeypatch) -> Iterator:
    """`gateway_over(urls)`: the gateway on a real RasaClient over these replica URLs."""
    clients: list[TestClient] = []

    def start(urls: list[str]) -> WeChatServer:
        settings = gateway_settings(database_url, monkeypatch, aes=True)
        client = RasaClient(urls, timeout=10, cool_down=60)
        app = create_app(settings, start_outbox=False, rasa=client, probe_actions=False)
        test_client = TestClient(app)
        test_client.__enter__()
        clients.append(test_client)
        return WeChatServer(test_client, WeChatCrypto(TOKEN, AES_KEY, APP_ID))

    yield start
    for test_client in clients:
        test_client.__exit__(None, None, None)


def test_a_dead_replica_is_skipped_and_the_resident_answered(gateway_over):
    seen: list[dict] = []
    dead = refused_url()
    with served("b", seen) as live:
        openid = sender_first_on(dead, [dead, live.url])
        wechat = gateway_over([dead, live.url])
        assert wechat.reply_text(wechat.post(text_xml(openid, "你好"))) == "b: 你好"
    assert rows(Case) == []


def test_a_replica_dying_mid_turn_means_fallback_and_a_case_never_a_second_turn(gateway_over):
    seen: list[dict] = []
    dying = DyingReplica()
    try:
        with served("b", seen) as live:
            openid = sender_first_on(dying.url, [dying.url, live.url])
            wechat = gateway_over([dying.url, live.url])
            reply = wechat.reply_text(wechat.post(text_xml(openid, "有人冒充警察让我转账")))
    finally:
        dying.close()
    assert reply == service.BOT_UNAVAILABLE
    [case] = rows(Case, sender_id=openid)
    assert (case.reason, case.status) == ("bot_unavailable", "open")
    assert len([r for r in dying.received if b"/webhooks/rest/webhook" in r]) == 1
    assert [s for s in seen if s["path"] == "/webhooks/rest/webhook"] == []


def test_all_replicas_down_means_fallback_and_a_case(gateway_over):
    wechat = gateway_over([refused_url(), refused_url()])
    reply = wechat.reply_text(wechat.post(text_xml("o-nobody", "我的电动车被偷了")))
    assert reply == service.BOT_UNAVAILABLE
    [case] = rows(Case, sender_id="o-nobody")
    assert case.reason == "bot_unavailable"


# ------------------------------------------------------------------ one owner, really


def test_a_paused_tracker_is_resumed_when_the_bot_owns_the_conversation(wechat, rasa):
    """A restore or a purge left Rasa's tracker paused with the bot owning the conversation
    in the database: the resident is answered, and the tracker holds one turn, not two."""
    rasa.paused.add("o-restored")
    reply = wechat.reply_text(wechat.post(text_xml("o-restored", "请问户口怎么迁")))
    assert reply == "收到：请问户口怎么迁"
    assert rasa.resumed == ["o-restored"]
    assert "o-restored" not in rasa.paused
    assert [e["event"] for e in rasa.events["o-restored"]] == [
        "user",
        "rewind",
        "resume",
        "action",  # action_listen: the bot listens again
        "user",
    ]
    assert user_turns(rasa.events["o-restored"]) == 1
    assert rows(Case) == []
    # The next message goes straight through.
    assert wechat.reply_text(wechat.post(text_xml("o-restored", "谢谢"))) == "收到：谢谢"
    assert rasa.resumed == ["o-restored"]


def test_a_paused_tracker_stays_paused_when_an_officer_took_over_meanwhile(wechat, rasa):
    wechat.post(text_xml("o-taken", "你好"))
    rasa.paused.add("o-taken")
    original = rasa.send

    async def send_then_officer_takes_over(sender, text, metadata=None):
        answer = await original(sender, text, metadata)
        with db.session_scope() as session:
            hand_to_officers(session=session, openid=sender)
        return answer

    rasa.send = send_then_officer_takes_over
    assert wechat.post(text_xml("o-taken", "民警在吗")).text == "success"
    assert rasa.resumed == [] and "o-taken" in rasa.paused
    assert len(rasa.calls) == 2


def test_a_bot_that_chose_silence_is_not_asked_again(wechat, rasa):
    rasa.answers["嗯"] = []
    assert wechat.post(text_xml("o-quiet", "嗯")).text == "success"
    assert rasa.resumed == [] and len(rasa.calls) == 1
    assert rows(Message, direction="in")[-1].status == "answered"


def test_a_paused_tracker_whose_latest_message_is_another_is_left_alone(wechat, rasa):
    rasa.paused.add("o-other")
    original = rasa.send

    async def another_message_arrives_after(sender, text, metadata=None):
        answer = await original(sender, text, metadata)
        await original(sender, "另一条", {"gateway_message_id": -1})
        return answer

    rasa.send = another_message_arrives_after
    assert wechat.post(text_xml("o-other", "你好")).text == "success"
    assert rasa.resumed == []  # a rewind now would revert the other message


def test_a_paused_tracker_that_cannot_be_resumed_means_fallback_and_a_case(wechat, rasa):
    rasa.paused.add("o-stuck")

    async def cannot_resume(sender, *, revert_latest=False):
        return False

    rasa.resume = cannot_resume
    reply = wechat.reply_text(wechat.post(text_xml("o-stuck", "有人在吗")))
    assert reply == service.BOT_UNAVAILABLE
    assert len(rasa.calls) == 1  # not asked again while still paused
    [case] = rows(Case, sender_id="o-stuck")
    assert case.reason == "bot_unavailable"


# ------------------------------------------------------------------ records after the reply


def test_a_passive_answer_is_recorded_after_sending_in_conversation_order(wechat, rasa):
    """The reply's transcript record and parse are written once the reply is sent (not
    what the resident waits for), dated when the answer was given."""
    from casework.conversations import messages_of

    for text in ("你好", "身份证丢了怎么补办"):
        assert wechat.reply_text(wechat.post(text_xml("o-order", text))) == f"收到：{text}"
    [inbound, *_] = rows(Message, direction="in")
    with db.session_scope() as session:
        transcript = messages_of(session=session, conversation_id=inbound.conversation_id)
        lines = [(m.direction, m.content, m.delivery) for m in transcript]
    assert lines == [
        ("in", "你好", None),
        ("out", "收到：你好", "passive"),
        ("in", "身份证丢了怎么补办", None),
        ("out", "收到：身份证丢了怎么补办", "passive"),
    ]
    assert [m.intent for m in rows(Message, direction="in")] == ["faq", "faq"]
    assert [m.reply for m in rows(Message, direction="in")] == [
        "收到：你好",
        "收到：身份证丢了怎么补办",
    ]
