"""The WeChat simulator under issue 8's rules: it signs each message with a fresh nonce
(so replay memory never takes it for a replay, and its retries stay WeChat's retries),
encrypts everything in safe mode, and refuses to build what the gateway would refuse."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from casework import db
from casework.models import Message, SeenNonce
from gateway.app import create_app
from gateway.messages import WELCOME
from gateway.service import BOT_UNAVAILABLE
from gateway.wechat_fields import FIELDS
from tests.unit.test_simulator import AES_KEY, _settings


def _count(settings, model, *where) -> int:
    with db.session_scope(settings.database_url) as session:
        query = sa.select(sa.func.count()).select_from(model)
        return session.execute(query.where(*where) if where else query).scalar_one()


def test_each_message_has_a_fresh_nonce_and_a_retry_stays_a_retry(monkeypatch, tmp_path):
    settings = _settings(monkeypatch, tmp_path)
    with TestClient(create_app(settings, start_outbox=False)) as client:
        send = {"openid": "sim-retry", "content": "楼上太吵"}
        first = client.post("/simulator/api/send", json=send).json()
        again = client.post(
            "/simulator/api/send", json={**send, "retry_of": first["msg_id"]}
        ).json()
        other = client.post("/simulator/api/send", json={**send, "content": "还在吵"}).json()
    assert first["status"] == again["status"] == other["status"] == 200
    assert first["reply"] == again["reply"] == BOT_UNAVAILABLE
    assert _count(settings, SeenNonce) == 3  # three signatures, none taken for a replay
    assert _count(settings, Message, Message.direction == "in") == 2


def test_in_safe_mode_the_simulator_encrypts_every_message(monkeypatch, tmp_path):
    settings = _settings(monkeypatch, tmp_path, WECHAT_ENCODING_AES_KEY=AES_KEY, WECHAT_MODE="safe")
    assert settings.wechat_mode == "safe"
    with TestClient(create_app(settings, start_outbox=False)) as client:
        body = client.post(
            "/simulator/api/send",
            json={"openid": "sim-safe", "type": "event", "event": "subscribe"},
        ).json()
    assert (body["status"], body["encrypted"], body["reply"]) == (200, True, WELCOME)
    assert "<Encrypt>" in body["raw"]


def test_the_simulator_builds_nothing_the_gateway_would_refuse(monkeypatch, tmp_path):
    settings = _settings(monkeypatch, tmp_path)
    too_long = "长" * (FIELDS["Content"].max_length + 1)
    with TestClient(create_app(settings, start_outbox=False)) as client:
        for send in (
            {"openid": "sim-long", "content": too_long},
            {"openid": "居民", "content": "你好"},
            {"openid": "sim-loc", "type": "location", "lat": 91, "lng": 121.7},
            {"openid": "sim-key", "type": "event", "event": "CLICK", "key": "k" * 129},
        ):
            assert client.post("/simulator/api/send", json=send).status_code == 422, send
        longest = client.post(
            "/simulator/api/send", json={"openid": "s" * 64, "content": "长" * 2048}
        ).json()
    assert longest["status"] == 200
    assert _count(settings, Message, Message.direction == "in") == 1
