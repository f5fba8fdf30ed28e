"""Gateway test harness: the real app and database, a stand-in Rasa, WeChat-style requests."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from wechatpy.crypto import WeChatCrypto

from casework.settings import Settings
from gateway.app import create_app
from integrations.rasa import ParseResult, RasaUnavailable, TrackerState

TOKEN = "jmt-test-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx-jmt-test"


class StandInRasa:
    """Stands in for Rasa's REST channel: scripted answers, delays and outages, and a
    tracker that can be paused as Rasa 3.6's is (the message is logged, no turn is run)."""

    def __init__(self) -> None:
        # (sender, text, metadata) per message sent; the gateway's own message id and the
        # request id, which travel in the metadata, are kept apart in `message_ids` and
        # `request_ids`.
        self.calls: list[tuple[str, str, dict]] = []
        self.message_ids: list[int | None] = []
        self.request_ids: list[str | None] = []
        self.answers: dict[str, list[str]] = {}
        self.delay = 0.0
        self.down = False
        self.resumed: list[str] = []
        self.paused: set[str] = set()
        self.events: dict[str, list[dict]] = {}  # per sender, as Rasa's tracker keeps them
        self.parses: dict[str, tuple[str, float]] = {}  # /model/parse answers by text
        self.parsed: list[str] = []

    async def send(self, sender: str, text: str, metadata: dict | None = None) -> list[dict]:
        metadata = dict(metadata or {})
        self.request_ids.append(metadata.pop("request_id", None))
        self.message_ids.append(metadata.pop("gateway_message_id", None))
        self.calls.append((sender, text, metadata))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise RasaUnavailable("ConnectError: connection refused")
        self.events.setdefault(sender, []).append(
            {
                "event": "user",
                "text": text,
                "metadata": {**metadata, "gateway_message_id": self.message_ids[-1]},
            }
        )
        if sender in self.paused:
            return []  # logged, but a paused tracker predicts nothing
        return [
            {"recipient_id": sender, "text": t} for t in self.answers.get(text, [f"收到：{text}"])
        ]

    async def latest_parse(self, sender: str) -> ParseResult:
        return ParseResult("faq", 0.93)

    async def parse(self, text: str) -> ParseResult | None:
        """Rasa's /model/parse: scripted per text in `parses`, else a plain inform."""
        self.parsed.append(text)
        if self.down:
            return None
        intent, confidence = self.parses.get(text, ("inform", 0.5))
        return ParseResult(intent, confidence)

    async def tracker_state(self, sender: str) -> TrackerState | None:
        if self.down:
            return None
        users = [e for e in self.events.get(sender, []) if e["event"] == "user"]
        latest = {"text": users[-1]["text"], "metadata": users[-1]["metadata"]} if users else {}
        return TrackerState(sender in self.paused, latest)

    async def healthy(self) -> bool:
        return not self.down

    async def resume(self, sender: str, *, revert_latest: bool = False) -> bool:
        self.resumed.append(sender)
        if self.down:
            return False
        if revert_latest:
            self.events.setdefault(sender, []).append({"event": "rewind"})
        self.events.setdefault(sender, []).append({"event": "resume"})
        self.events[sender].append({"event": "action", "name": "action_listen"})
        self.paused.discard(sender)
        return True

    async def close(self) -> None:
        return None


def sign(timestamp: str, nonce: str, token: str = TOKEN) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def text_xml(
    openid: str, content: str, msg_id: int | None = None, created: int | None = None
) -> str:
    msg_id = msg_id or random.randrange(10**18, 10**19)
    return (
        f"<xml><ToUserName><![CDATA[gh_jmt]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{created or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


def xml_message(
    openid: str, msg_type: str, fields: dict[str, Any], msg_id: int | None = None
) -> str:
    body = "".join(
        f"<{k}><![CDATA[{v}]]></{k}>" if isinstance(v, str) else f"<{k}>{v}</{k}>"
        for k, v in fields.items()
    )
    ident = (
        ""
        if msg_type == "event"
        else f"<MsgId>{msg_id or random.randrange(10**18, 10**19)}</MsgId>"
    )
    return (
        f"<xml><ToUserName><![CDATA[gh_jmt]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>"
        f"{body}{ident}</xml>"
    )


class WeChatServer:
    """Sends requests to /wechat the way WeChat's servers do."""

    def __init__(self, client: TestClient, crypto: WeChatCrypto | None = None) -> None:
        self.client = client
        self.crypto = crypto

    def post(
        self,
        xml: str,
        *,
        encrypted: bool = False,
        timestamp: str | None = None,
        signature: str | None = None,
    ):
        timestamp = timestamp or str(int(time.time()))
        nonce = str(random.randrange(10**8))
        params = {
            "signature": signature or sign(timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        body = xml
        if encrypted:
            assert self.crypto is not None
            envelope = self.crypto.encrypt_message(xml, nonce, timestamp)
            import xmltodict

            msg_signature = xmltodict.parse(envelope)["xml"]["MsgSignature"]
            params |= {"encrypt_type": "aes", "msg_signature": msg_signature}
            body = envelope
        return self.client.post(
            "/wechat",
            params=params,
            content=body.encode("utf-8"),
            headers={"Content-Type": "text/xml"},
        )

    def reply_text(self, response, *, encrypted: bool = False) -> str | None:
        assert response.status_code == 200, response.text
        if response.text == "success":
            return None
        xml = response.text
        if encrypted:
            import xmltodict

            envelope = xmltodict.parse(xml)["xml"]
            xml = self.crypto.decrypt_message(
                xml, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
            )
        import xmltodict

        return xmltodict.parse(xml)["xml"]["Content"]


def gateway_settings(database_url: str, monkeypatch, *, aes: bool = False) -> Settings:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JMT_ENV", "development")
    monkeypatch.setenv("WECHAT_TOKEN", TOKEN)
    monkeypatch.setenv("WECHAT_APP_ID", APP_ID)
    monkeypatch.setenv("WECHAT_APP_SECRET", "jmt-test-secret")
    monkeypatch.setenv("JMT_SIMULATOR", "0")
    monkeypatch.setenv("ACTION_SERVER_URL", "http://127.0.0.1:9")  # nothing listens there
    if aes:
        monkeypatch.setenv("WECHAT_ENCODING_AES_KEY", AES_KEY)
    else:
        monkeypatch.delenv("WECHAT_ENCODING_AES_KEY", raising=False)
    return Settings.from_env()


@pytest.fixture
def rasa() -> StandInRasa:
    return StandInRasa()


@pytest.fixture
def wechat(database_url, monkeypatch, rasa) -> Iterator[WeChatServer]:
    """The gateway on a real database (SQLite and PostgreSQL) with AES configured."""
    settings = gateway_settings(database_url, monkeypatch, aes=True)
    app = create_app(settings, start_outbox=False, rasa=rasa, probe_actions=False)
    with TestClient(app) as client:
        yield WeChatServer(client, WeChatCrypto(TOKEN, AES_KEY, APP_ID))
