"""The WeChat simulator: the API stand-in, the message sender, the chat page.

Runs the whole gateway app (TestClient, lifespan included) on SQLite with Rasa "down"
(an unused port), so every message to the bot gets the bot-unavailable reply.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from fastapi.testclient import TestClient

from casework import db, outbox
from casework.conversations import conversation_for
from casework.models import Conversation, Message
from casework.settings import Settings
from gateway.app import create_app
from gateway.messages import SERVICE_GUIDE, VOICE_NOT_RECOGNISED, WELCOME
from gateway.service import BOT_UNAVAILABLE
from gateway.simulator.standin import WeChatStandIn
from integrations.wechat import DeliveryError, SqlTokenStorage, WeChatApi, WeChatMessenger

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
API = "/simulator/wechat-api/cgi-bin"


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settings(monkeypatch, tmp_path, **env: str) -> Settings:
    values = {
        "JMT_ENV": "development",
        "JMT_SIMULATOR": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'jmt.sqlite3'}",
        "RASA_URL": f"http://127.0.0.1:{_unused_port()}",
        # "" means "use the development default" (and ignores any local .env)
        "WECHAT_TOKEN": "",
        "WECHAT_APP_ID": "",
        "WECHAT_APP_SECRET": "",
        "WECHAT_ENCODING_AES_KEY": "",
        "WECHAT_API_BASE_URL": "",
        **env,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


@pytest.fixture
def settings(monkeypatch, tmp_path) -> Settings:
    return _settings(monkeypatch, tmp_path)


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, start_outbox=False)) as client:
        yield client


def _standin(client: TestClient) -> WeChatStandIn:
    client.get("/simulator/api/inbox", params={"openid": "nobody"})  # creates it lazily
    return client.app.state.wechat_standin


def _token(client: TestClient, settings: Settings) -> str:
    answer = client.get(
        f"{API}/token",
        params={
            "grant_type": "client_credential",
            "appid": settings.wechat_app_id,
            "secret": settings.wechat_app_secret,
        },
    )
    return answer.json()["access_token"]


def _send_text(client: TestClient, token: str, openid: str, text: str):
    payload = {"touser": openid, "msgtype": "text", "text": {"content": text}}
    return client.post(f"{API}/message/custom/send", params={"access_token": token}, json=payload)


# ---------------------------------------------------------------------- the API stand-in


def test_token_with_the_configured_credentials(client, settings):
    answer = client.get(
        f"{API}/token",
        params={
            "grant_type": "client_credential",
            "appid": "wx-jmt-development",
            "secret": "jmt-development-secret",
        },
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["expires_in"] == 7200
    assert body["access_token"].startswith("SIMULATED-")
    assert _standin(client).token_fetches == 1


def test_token_refused_for_wrong_appid_or_secret(client):
    wrong_appid = client.get(
        f"{API}/token",
        params={"grant_type": "client_credential", "appid": "wx-other", "secret": "x"},
    ).json()
    assert wrong_appid == {"errcode": 40013, "errmsg": "invalid appid"}
    wrong_secret = client.get(
        f"{API}/token",
        params={
            "grant_type": "client_credential",
            "appid": "wx-jmt-development",
            "secret": "guess",
        },
    ).json()
    assert wrong_secret["errcode"] == 40125
    assert "access_token" not in wrong_secret
    assert _standin(client).token_fetches == 2


def test_custom_send_records_messages_per_openid(client, settings):
    token = _token(client, settings)
    assert _send_text(client, token, "o-a", "第一条").json() == {"errcode": 0, "errmsg": "ok"}
    assert _send_text(client, token, "o-b", "给别人").json()["errcode"] == 0
    assert _send_text(client, token, "o-a", "第二条").json()["errcode"] == 0

    inbox = client.get("/simulator/api/inbox", params={"openid": "o-a"}).json()
    assert [(m["id"], m["content"], m["msgtype"]) for m in inbox] == [
        (1, "第一条", "text"),
        (3, "第二条", "text"),
    ]
    after = client.get("/simulator/api/inbox", params={"openid": "o-a", "after": 1}).json()
    assert [m["content"] for m in after] == ["第二条"]
    assert _standin(client).send_attempts == 3


def test_custom_send_checks_the_token(client, settings):
    answer = _send_text(client, "forged", "o-a", "你好").json()
    assert answer["errcode"] == 40001
    standin = _standin(client)
    token = _token(client, settings)
    standin.expire_tokens()
    assert _send_text(client, token, "o-a", "你好").json()["errcode"] == 42001
    assert standin.messages == []


def test_custom_send_honours_queued_failures_in_order(client, settings):
    standin = _standin(client)
    token = _token(client, settings)
    standin.fail_next(errcode=-1)
    standin.fail_next(http_status=502)
    standin.fail_next(errcode=45015)
    assert standin.pending_failures == 3

    busy = _send_text(client, token, "o-a", "1")
    assert busy.status_code == 200
    assert busy.json() == {"errcode": -1, "errmsg": "system error"}
    bad_gateway = _send_text(client, token, "o-a", "2")
    assert bad_gateway.status_code == 502
    assert bad_gateway.text == "Bad Gateway"
    assert _send_text(client, token, "o-a", "3").json()["errcode"] == 45015
    assert _send_text(client, token, "o-a", "4").json()["errcode"] == 0

    assert [m.content for m in standin.messages] == ["4"]
    assert standin.send_attempts == 4
    assert standin.pending_failures == 0


def test_custom_send_rejects_malformed_messages(client, settings):
    token = _token(client, settings)
    url = f"{API}/message/custom/send"
    params = {"access_token": token}
    no_user = {"touser": "", "msgtype": "text", "text": {"content": "x"}}
    assert client.post(url, params=params, json=no_user).json()["errcode"] == 40003
    empty = {"touser": "o-a", "msgtype": "text", "text": {"content": ""}}
    assert client.post(url, params=params, json=empty).json()["errcode"] == 44004
    assert client.post(url, params=params, content=b"not json").json()["errcode"] == 47001
    assert client.get("/simulator/api/inbox", params={"openid": "o-a"}).json() == []


def test_fail_next_needs_exactly_one_kind_of_failure():
    standin = WeChatStandIn("wx", "secret")
    with pytest.raises(ValueError):
        standin.fail_next()
    with pytest.raises(ValueError):
        standin.fail_next(errcode=-1, http_status=500)


# ---------------------------------------------------------------------- the real adapter


class _ThroughTestClient(requests.adapters.BaseAdapter):
    """Routes wechatpy's `requests` calls into the app under test."""

    def __init__(self, client: TestClient) -> None:
        super().__init__()
        self.client = client

    def send(self, request, **kwargs):
        answer = self.client.request(
            request.method, request.url, content=request.body, headers=dict(request.headers)
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.content
        response.headers = requests.structures.CaseInsensitiveDict(answer.headers)
        response.url, response.request = request.url, request
        return response

    def close(self) -> None:
        pass


def _messenger(client: TestClient, settings: Settings) -> WeChatMessenger:
    api = WeChatApi(
        settings.wechat_app_id,
        settings.wechat_app_secret,
        base_url=settings.wechat_api_base_url,
        storage=SqlTokenStorage(settings.database_url),
    )
    api._http.mount("http://", _ThroughTestClient(client))
    return WeChatMessenger(api)


def test_the_wechat_adapter_delivers_to_the_standin_and_classifies_failures(client, settings):
    assert settings.wechat_api_base_url.endswith("/simulator/wechat-api")
    standin = _standin(client)
    messenger = _messenger(client, settings)

    messenger.send_text("o-a", "您好，民警已收到")
    messenger.send_text("o-a", "第二条")
    assert [m.content for m in standin.messages_for("o-a")] == ["您好，民警已收到", "第二条"]
    assert standin.token_fetches == 1  # the stored token is reused

    standin.fail_next(errcode=45015)
    with pytest.raises(DeliveryError) as window:
        messenger.send_text("o-a", "超时了")
    assert window.value.permanent is True
    standin.fail_next(http_status=502)
    with pytest.raises(DeliveryError) as bad_gateway:
        messenger.send_text("o-a", "网关错误")
    assert (str(bad_gateway.value), bad_gateway.value.permanent) == ("HTTP 502", False)
    standin.fail_next(errcode=-1)
    with pytest.raises(DeliveryError) as busy:
        messenger.send_text("o-a", "繁忙")
    assert busy.value.permanent is False

    standin.expire_tokens()  # wechatpy refetches the token and retries once
    messenger.send_text("o-a", "换了令牌")
    assert standin.token_fetches == 2
    assert standin.messages_for("o-a", after=2)[-1].content == "换了令牌"


def test_the_outbox_worker_reaches_the_inbox(client, settings):
    sent = client.post("/simulator/api/send", json={"openid": "o-out", "content": "你好"})
    assert sent.json()["status"] == 200
    with db.session_scope(settings.database_url) as session:
        conversation = conversation_for(session=session, openid="o-out")
        outbox.enqueue(
            session=session,
            conversation_id=conversation.id,
            openid="o-out",
            text="民警稍后联系您",
            sender="officer:张警官",
        )
    worker = client.app.state.outbox
    worker.messenger = _messenger(client, settings)
    assert client.portal.call(worker.deliver_due) == 1

    inbox = client.get("/simulator/api/inbox", params={"openid": "o-out"}).json()
    assert [m["content"] for m in inbox] == ["民警稍后联系您"]


# ---------------------------------------------------------------------- WeChat's side


def _stored(settings: Settings, openid: str) -> list[dict]:
    """The inbound messages the gateway stored for this resident."""
    with db.session_scope(settings.database_url) as session:
        rows = session.execute(
            sa.select(Message)
            .join(Conversation, Message.conversation_id == Conversation.id)
            .where(Conversation.openid == openid, Message.direction == "in")
            .order_by(Message.id)
        ).scalars()
        return [
            {"key": m.dedupe_key, "type": m.msg_type, "content": m.content, "raw": m.raw}
            for m in rows
        ]


def test_text_gets_the_passive_bot_unavailable_reply(client, settings):
    answer = client.post("/simulator/api/send", json={"openid": "sim-0001", "content": "被骗了"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == 200
    assert body["reply"] == BOT_UNAVAILABLE
    assert "暂时无法回复" in body["reply"]
    assert body["encrypted"] is False
    assert "<ToUserName><![CDATA[sim-0001]]></ToUserName>" in body["raw"]
    assert body["msg_id"].isdigit()

    [stored] = _stored(settings, "sim-0001")
    assert stored["key"] == f"msg:{body['msg_id']}"
    assert (stored["type"], stored["content"]) == ("text", "被骗了")
    assert stored["raw"] is None  # the XML is parsed, not kept (issue 8)


def test_a_retry_of_the_same_msgid_is_stored_once_and_answered_the_same(client, settings):
    first = client.post("/simulator/api/send", json={"openid": "o-r", "content": "楼上太吵"})
    msg_id = first.json()["msg_id"]
    retry = client.post(
        "/simulator/api/send", json={"openid": "o-r", "content": "楼上太吵", "retry_of": msg_id}
    )
    assert retry.json()["msg_id"] == msg_id
    assert retry.json()["reply"] == first.json()["reply"] == BOT_UNAVAILABLE
    assert [m["key"] for m in _stored(settings, "o-r")] == [f"msg:{msg_id}"]


def test_subscribe_event_gets_the_welcome(client, settings):
    body = client.post(
        "/simulator/api/send", json={"openid": "o-new", "type": "event", "event": "subscribe"}
    ).json()
    assert body["status"] == 200
    assert body["reply"] == WELCOME
    assert body["msg_id"] is None
    [stored] = _stored(settings, "o-new")
    assert (stored["type"], stored["content"]) == ("event", "[关注]")
    assert stored["key"].startswith("evt:o-new:") and stored["key"].endswith(":subscribe")
    assert stored["raw"] is None


def test_menu_click_and_unsubscribe(client):
    guide = client.post(
        "/simulator/api/send",
        json={"openid": "o-m", "type": "event", "event": "CLICK", "key": "service_guide"},
    ).json()
    assert guide["reply"] == SERVICE_GUIDE
    gone = client.post(
        "/simulator/api/send", json={"openid": "o-m", "type": "event", "event": "unsubscribe"}
    ).json()
    assert (gone["status"], gone["reply"], gone["raw"]) == (200, None, "success")


def test_voice_location_and_validation(client, settings):
    unheard = client.post(
        "/simulator/api/send", json={"openid": "o-v", "type": "voice", "recognition": ""}
    ).json()
    assert unheard["reply"] == VOICE_NOT_RECOGNISED
    heard = client.post(
        "/simulator/api/send",
        json={"openid": "o-v", "type": "voice", "recognition": "狗咬人了"},
    ).json()
    assert heard["reply"] == BOT_UNAVAILABLE
    place = client.post(
        "/simulator/api/send",
        json={
            "openid": "o-v",
            "type": "location",
            "lat": 29.9526,
            "lng": 121.7135,
            "label": "浙江省宁波市镇海区招宝山街道总浦桥社区",
        },
    ).json()
    assert place["status"] == 200
    contents = [m["content"] for m in _stored(settings, "o-v")]
    assert contents == [
        "[语音]",
        "狗咬人了",
        "[位置] 浙江省宁波市镇海区招宝山街道总浦桥社区 (29.9526, 121.7135)",
    ]
    no_place = client.post("/simulator/api/send", json={"openid": "o-v", "type": "location"})
    assert no_place.status_code == 422
    no_event = client.post("/simulator/api/send", json={"openid": "o-v", "type": "event"})
    assert no_event.status_code == 422


def test_encrypted_mode_round_trip(monkeypatch, tmp_path):
    settings = _settings(monkeypatch, tmp_path, WECHAT_ENCODING_AES_KEY=AES_KEY)
    with TestClient(create_app(settings, start_outbox=False)) as client:
        body = client.post(
            "/simulator/api/send",
            json={"openid": "o-aes", "content": "身份证丢了怎么补办", "encrypted": True},
        ).json()
        welcome = client.post(
            "/simulator/api/send",
            json={"openid": "o-aes", "type": "event", "event": "subscribe", "encrypted": True},
        ).json()
    assert body["encrypted"] is True
    assert body["status"] == 200
    assert body["reply"] == BOT_UNAVAILABLE
    assert "<Encrypt>" in body["raw"] and "暂时无法回复" not in body["raw"]
    assert welcome["reply"] == WELCOME
    stored = _stored(settings, "o-aes")
    assert stored[0]["content"] == "身份证丢了怎么补办"  # the gateway decrypted it


def test_encrypted_without_a_key_falls_back_to_plain(client):
    body = client.post(
        "/simulator/api/send", json={"openid": "o-p", "content": "你好", "encrypted": True}
    ).json()
    assert body["encrypted"] is False
    assert body["reply"] == BOT_UNAVAILABLE


def test_the_chat_page(client):
    answer = client.get("/simulator")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    for text in ("镇海警民通", "发送", "🎤", "📍", "加密(安全模式)", "关注"):
        assert text in page
    for key in ("contact_officer", "antifraud_tips", "my_community", "service_guide"):
        assert f'data-key="{key}"' in page
    assert "http://" not in page and "https://" not in page  # no CDN, no external fonts
    # The console's policy (one middleware): no inline script or style, so both are files.
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert not re.search(r"<[^>]+\son[a-z]+=", page)  # no inline event handlers
    script = client.get("/simulator/static/simulator.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "客服消息" in script.text
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert "document.write" not in script.text
    style = client.get("/simulator/static/simulator.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert 'src="/simulator/static/simulator.js"' in page
    assert 'href="/simulator/static/simulator.css"' in page
    assert client.get("/simulator/static/").status_code == 404  # never a listing


def test_simulator_is_absent_when_disabled(monkeypatch, tmp_path):
    settings = _settings(monkeypatch, tmp_path, JMT_SIMULATOR="0")
    with TestClient(create_app(settings, start_outbox=False)) as client:
        assert client.get("/simulator").status_code == 404
