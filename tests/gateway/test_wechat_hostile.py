"""Hostile WeChat callbacks (issue 8): every signed-but-malformed callback is a 400 with
nothing stored, a replayed signature cannot carry another body, WECHAT_MODE decides which
callbacks are accepted, and the passive budget runs from the request's arrival — on
SQLite and PostgreSQL."""

from __future__ import annotations

import random
import time

import pytest
import xmltodict
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto

from casework import db
from casework.clock import aware
from casework.models import Message, OutboxItem, SeenNonce
from casework.settings import SettingsError
from gateway import wechat_fields
from gateway.app import create_app
from tests.gateway.conftest import (
    AES_KEY,
    APP_ID,
    TOKEN,
    StandInRasa,
    gateway_settings,
    sign,
    text_xml,
    xml_message,
)


def count(model, **where) -> int:
    with db.session_scope() as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return session.execute(query).scalar_one()


def signed_post(
    client: TestClient,
    body: str,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
    crypto: WeChatCrypto | None = None,
    sealed: str | None = None,
):
    """POST /wechat as WeChat signs it; with `crypto`, AES-encrypted (safe mode), or as the
    given `sealed` envelope (encryption is randomised: a retry resends the same one)."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(random.randrange(10**8, 10**9))
    params = {"signature": sign(timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    if crypto is not None and sealed is None:
        sealed = crypto.encrypt_message(body, nonce, timestamp)
    if sealed is not None:
        msg_signature = xmltodict.parse(sealed)["xml"]["MsgSignature"]
        params |= {"encrypt_type": "aes", "msg_signature": msg_signature}
        body = sealed
    return client.post(
        "/wechat", params=params, content=body.encode("utf-8"), headers={"Content-Type": "text/xml"}
    )


def reply_of(response, crypto: WeChatCrypto | None = None) -> str | None:
    assert response.status_code == 200, response.text
    if response.text == "success":
        return None
    xml = response.text
    if crypto is not None:
        sealed = xmltodict.parse(xml)["xml"]
        xml = crypto.decrypt_message(
            xml, sealed["MsgSignature"], sealed["TimeStamp"], sealed["Nonce"]
        )
    return xmltodict.parse(xml)["xml"]["Content"]


CRYPTO = WeChatCrypto(TOKEN, AES_KEY, APP_ID)


@pytest.fixture
def gateway_app(database_url, monkeypatch, rasa):
    """A factory: the gateway in a given WECHAT_MODE (None: the default for the key)."""
    started: list[TestClient] = []

    def start(mode: str | None, *, aes: bool = True) -> TestClient:
        if mode is None:
            monkeypatch.delenv("WECHAT_MODE", raising=False)
        else:
            monkeypatch.setenv("WECHAT_MODE", mode)
        settings = gateway_settings(database_url, monkeypatch, aes=aes)
        app = create_app(settings, start_outbox=False, rasa=rasa, probe_actions=False)
        client = TestClient(app)
        client.__enter__()
        started.append(client)
        return client

    yield start
    for client in started:
        client.__exit__(None, None, None)


@pytest.fixture
def compat(gateway_app) -> TestClient:
    return gateway_app(None)  # AES configured: compat by default


# ------------------------------------------------------------------ the issue's four cases


def location(openid: str, **fields) -> str:
    values = {"Location_X": 29.95, "Location_Y": 121.71, "Scale": 15, "Label": "镇海区"}
    values.update(fields)
    return xml_message(openid, "location", {k: v for k, v in values.items() if v is not None})


ISSUE_CASES = {
    "5000-character FromUserName": text_xml("o" * 5000, "你好"),
    "location without Location_X": location("o-loc", Location_X=None),
    "nested element inside Recognition": xml_message(
        "o-voice", "voice", {"MediaId": "m1", "Format": "amr", "Recognition": "RECOGNITION"}
    ).replace("<![CDATA[RECOGNITION]]>", "<a>被骗</a>"),
    "nested element inside CreateTime": text_xml("o-time", "你好").replace(
        f"<CreateTime>{int(time.time())}", f"<CreateTime><b>{int(time.time())}</b>", 1
    ),
}


@pytest.mark.parametrize("case", list(ISSUE_CASES))
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "safe"])
def test_the_issues_malformed_callbacks_are_400_and_nothing_is_stored(
    compat, rasa, case, encrypted
):
    body = ISSUE_CASES[case]
    assert {  # each mutation really happened
        "5000-character FromUserName": "o" * 5000 in body,
        "location without Location_X": "Location_X" not in body and "Location_Y" in body,
        "nested element inside Recognition": "<Recognition><a>被骗</a></Recognition>" in body,
        "nested element inside CreateTime": "<CreateTime><b>" in body,
    }[case]
    answer = signed_post(compat, body, crypto=CRYPTO if encrypted else None)
    assert answer.status_code == 400, answer.text
    assert len(answer.text) < 200 and "Traceback" not in answer.text
    assert count(Message) == 0 and count(SeenNonce) == 0 and rasa.calls == []


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (text_xml("o-long", "长" * 2049), "Content longer than 2048"),
        (text_xml("o-ctl\u0085", "你好"), "FromUserName is not of WeChat's form"),
        (text_xml("o-id", "你好").replace("<MsgId>", "<MsgId>-", 1), "MsgId out of range"),
        (text_xml("o-id", "你好", msg_id=2**64), "MsgId out of range"),
        (text_xml("o-old", "你好", created=12345), "CreateTime out of range"),
        (text_xml("o-nan", "你好").replace("</Content>", "</Content><MsgId>1</MsgId>"), "twice"),
        (location("o-lat", Location_X=90.5), "Location_X out of range"),
        (location("o-lng", Location_Y="nan"), "Location_Y is not a number"),
        (location("o-lng", Location_Y=-180.01), "Location_Y out of range"),
        (
            xml_message("o-link", "link", {"Title": "t", "Description": "d", "Url": "h" * 1025}),
            "Url",
        ),
        (xml_message("o-click", "event", {"Event": "CLICK"}), "EventKey is missing"),
        (xml_message("o-click", "event", {"Event": "CLICK", "EventKey": "k" * 129}), "EventKey"),
        (xml_message("o-img", "image", {"MediaId": "m"}), "PicUrl is missing"),
        (xml_message("o-evt", "event", {}), "Event is missing"),
        (xml_message("o-type", "text" * 5, {}), "MsgType longer than 16"),
        (text_xml("o-attr", "你好").replace("<Content>", '<Content a="1">'), "attributes"),
        ("<root><FromUserName>o</FromUserName></root>", "root element"),
        ("<xml><" + "A" * 5000 + ' a="1">1</' + "A" * 5000 + "></xml>", "field name"),
    ],
)
def test_each_field_is_checked_against_the_table(compat, xml, reason):
    answer = signed_post(compat, xml)
    assert answer.status_code == 400
    assert reason in answer.text and len(answer.text) <= 100
    assert count(Message) == 0


def test_what_wechat_sends_within_the_limits_is_accepted(compat, rasa):
    view = "https://example.org/" + "p" * 900  # a VIEW's EventKey is a URL: ≤ 1024
    assert (
        signed_post(
            compat, xml_message("o-view", "event", {"Event": "VIEW", "EventKey": view})
        ).status_code
        == 200
    )
    assert reply_of(signed_post(compat, text_xml("o" * 64, "长" * 2048))) == "收到：" + "长" * 2048
    extra = text_xml("o-extra", "你好").replace(
        "</xml>", "<MsgDataId>7</MsgDataId><Idx>1</Idx></xml>"
    )
    assert reply_of(signed_post(compat, extra)) == "收到：你好"
    assert count(Message, direction="in") == 3


def test_the_raw_xml_is_not_kept(compat):
    signed_post(compat, text_xml("o-raw", "我的手机13912345678"))
    with db.session_scope() as session:
        [raw] = session.execute(select(Message.raw).where(Message.direction == "in")).scalars()
    assert raw is None


# ------------------------------------------------------------------ replays


def test_a_replayed_signature_with_another_body_is_403_and_nothing_stored(compat, rasa):
    stamp, nonce = str(int(time.time())), "31415926"
    first = signed_post(compat, text_xml("o-victim", "你好"), timestamp=stamp, nonce=nonce)
    assert reply_of(first) == "收到：你好"
    forged = signed_post(compat, text_xml("o-other", "我要报案"), timestamp=stamp, nonce=nonce)
    assert (forged.status_code, forged.text) == (403, "replayed signature with another body")
    assert count(Message, direction="in") == 1
    assert [call[0] for call in rasa.calls] == ["o-victim"]


def test_the_same_body_under_the_same_signature_is_wechats_retry(compat, rasa):
    stamp, nonce = str(int(time.time())), "27182818"
    xml = text_xml("o-retry", "身份证怎么办", msg_id=8800000000000000101)
    first = signed_post(compat, xml, timestamp=stamp, nonce=nonce)
    again = signed_post(compat, xml, timestamp=stamp, nonce=nonce)
    assert reply_of(first) == reply_of(again) == "收到：身份证怎么办"
    assert count(Message, direction="in") == 1 and count(Message, direction="out") == 1
    assert len(rasa.calls) == 1


def test_a_retry_of_a_message_answered_later_is_success(compat, rasa):
    compat.app.state.inbound.passive_budget = 0.1
    rasa.delay = 0.4
    stamp, nonce = str(int(time.time())), "16180339"
    xml = text_xml("o-late", "我想问个事", msg_id=8800000000000000102)
    assert signed_post(compat, xml, timestamp=stamp, nonce=nonce).text == "success"
    assert signed_post(compat, xml, timestamp=stamp, nonce=nonce).text == "success"
    time.sleep(0.6)
    assert len(rasa.calls) == 1 and count(Message, direction="in") == 1


def test_in_safe_mode_a_tampered_envelope_under_the_same_signatures_is_refused(gateway_app, rasa):
    client = gateway_app("safe")
    stamp, nonce = str(int(time.time())), "14142135"
    sealed = CRYPTO.encrypt_message(text_xml("o-safe", "护照怎么办"), nonce, stamp)
    first = signed_post(client, "", timestamp=stamp, nonce=nonce, sealed=sealed)
    assert reply_of(first, CRYPTO) == "收到：护照怎么办"
    retry = signed_post(client, "", timestamp=stamp, nonce=nonce, sealed=sealed)
    assert reply_of(retry, CRYPTO) == "收到：护照怎么办"
    # msg_signature covers only <Encrypt>: another wrapper passes it, but is another body
    tampered = sealed.replace("<xml>", "<xml><ToUserName>gh_x</ToUserName>", 1)
    assert tampered != sealed
    answer = signed_post(client, "", timestamp=stamp, nonce=nonce, sealed=tampered)
    assert (answer.status_code, answer.text) == (403, "replayed signature with another body")
    assert count(Message, direction="in") == 1 and len(rasa.calls) == 1


def test_in_compat_mode_an_encrypted_callbacks_url_cannot_carry_a_plain_body(compat, rasa):
    stamp, nonce = str(int(time.time())), "17320508"
    first = signed_post(
        compat, text_xml("o-enc", "你好"), timestamp=stamp, nonce=nonce, crypto=CRYPTO
    )
    assert reply_of(first, CRYPTO) == "收到：你好"
    # the same timestamp, nonce and signature, without encrypt_type and msg_signature
    forged = signed_post(compat, text_xml("o-forger", "我要报案"), timestamp=stamp, nonce=nonce)
    assert forged.status_code == 403
    assert count(Message, direction="in") == 1 and [c[0] for c in rasa.calls] == ["o-enc"]


def test_nonces_are_remembered_until_their_timestamp_is_stale(compat):
    stamp = int(time.time()) - 200  # 100 s left of the 300 s window
    signed_post(compat, text_xml("o-window", "你好"), timestamp=str(stamp))
    with db.session_scope() as session:
        [expires] = session.execute(select(SeenNonce.expires_at)).scalars()
    left = aware(expires).timestamp() - time.time()
    assert 95 <= left <= 105


# ------------------------------------------------------------------ modes


def test_safe_mode_refuses_plain_callbacks_and_accepts_encrypted_ones(gateway_app, rasa):
    client = gateway_app("safe")
    plain = signed_post(client, text_xml("o-plain", "你好"))
    assert plain.status_code == 403 and count(Message) == 0
    assert (
        reply_of(signed_post(client, text_xml("o-aes", "你好"), crypto=CRYPTO), CRYPTO)
        == "收到：你好"
    )


def test_compat_mode_accepts_both(compat):
    assert reply_of(signed_post(compat, text_xml("o-p", "一"))) == "收到：一"
    assert reply_of(signed_post(compat, text_xml("o-e", "二"), crypto=CRYPTO), CRYPTO) == "收到：二"


def test_plain_mode_without_a_key_refuses_encrypted_callbacks(gateway_app):
    client = gateway_app(None, aes=False)
    assert client.app.state.settings.wechat_mode == "plain"
    answer = signed_post(client, text_xml("o-enc", "你好"), crypto=CRYPTO)
    assert answer.status_code == 400 and count(Message) == 0
    assert reply_of(signed_post(client, text_xml("o-plain", "你好"))) == "收到：你好"


@pytest.mark.parametrize(("mode", "aes"), [("secure", True), ("safe", False), ("compat", False)])
def test_an_unknown_mode_or_an_encrypted_mode_without_a_key_does_not_start(
    database_url, monkeypatch, mode, aes
):
    monkeypatch.setenv("WECHAT_MODE", mode)
    settings = gateway_settings(database_url, monkeypatch, aes=aes)
    with pytest.raises(SettingsError, match="WECHAT_MODE"):
        create_app(settings, start_outbox=False, rasa=StandInRasa(), probe_actions=False)


# ------------------------------------------------------------------ the passive budget


def test_the_passive_budget_runs_from_the_requests_arrival(compat, rasa, monkeypatch):
    """Storage that eats the budget leaves no time for a passive answer: `success`, and
    the bot's answer goes through the outbox (before, the budget started after storage)."""
    inbound = compat.app.state.inbound
    inbound.passive_budget = 0.3
    store = inbound._store

    def slow_store(*args, **kwargs):
        time.sleep(0.4)
        return store(*args, **kwargs)

    monkeypatch.setattr(inbound, "_store", slow_store)
    assert signed_post(compat, text_xml("o-slowdb", "你好")).text == "success"
    deadline = time.time() + 5
    while not count(OutboxItem) and time.time() < deadline:
        time.sleep(0.05)
    with db.session_scope() as session:
        assert list(session.execute(select(OutboxItem.text)).scalars()) == ["收到：你好"]


# ------------------------------------------------------------------ the table itself


def test_every_required_field_has_a_spec():
    named = {*wechat_fields.COMMON, *sum(wechat_fields.REQUIRED.values(), ())}
    named |= set(sum(wechat_fields.EVENT_REQUIRED.values(), ()))
    assert named <= set(wechat_fields.FIELDS)


@pytest.mark.parametrize(
    "xml",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><xml><a>&a;</a></xml>',
        "<xml><?pi x?><a>1</a></xml>",
        "<xml>text<a>1</a></xml>",
        "<xml><a>1</a></xml><xml/>",
        "<xml><a>&undefined;</a></xml>",
    ],
)
def test_the_reader_refuses_what_wechat_never_sends(xml):
    with pytest.raises(wechat_fields.InvalidCallback):
        wechat_fields.parse(xml)
