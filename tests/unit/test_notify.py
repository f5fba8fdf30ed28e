"""Officer notifications: DingTalk's 加签, and `DingTalkRobot` against the simulator's
DingTalk stand-in served over real HTTP (uvicorn on a free local port)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import socket
import time
import urllib.parse
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from fastapi import FastAPI

from gateway.simulator import partners
from integrations.notify import (
    DingTalkRobot,
    Notification,
    NotifyError,
    RecordingNotifier,
    dingtalk_sign,
    markdown_text,
    notifier_from_settings,
)
from tests.live_server import LiveServer

SECRET = "SEC-jmt-test-0123456789"
TIMESTAMP = 1764324000003  # its signature has "+", "/" and "=", which must be URL-encoded


@pytest.fixture(scope="module")
def app() -> FastAPI:
    app = FastAPI()
    app.include_router(partners.router)
    app.state.settings = SimpleNamespace(dingtalk_secret=SECRET, governance_secret="unused")
    return app


@pytest.fixture(scope="module")
def live(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def standin(app, live) -> partners.DingTalkStandIn:
    """A fresh stand-in for each test."""
    app.state.settings = SimpleNamespace(dingtalk_secret=SECRET, governance_secret="unused")
    app.state.dingtalk_standin = partners.DingTalkStandIn(SECRET)
    return app.state.dingtalk_standin


def webhook(live: LiveServer, token: str = "robot-token") -> str:
    query = f"?access_token={token}" if token else ""
    return f"{live.url}/simulator/dingtalk/robot/send{query}"


def notification(**changes: Any) -> Notification:
    base = Notification(
        case_id=42,
        title="新案件：楼道电动车充电",
        text="#### 新案件 #42\n\n- 类别：治安\n- 社区：万景社区",
        url="http://console.example/console/cases/42",
        urgent=False,
    )
    return dataclasses.replace(base, **changes)


# ---------------------------------------------------------------------- signing


def test_sign_matches_dingtalks_recipe_and_a_fixed_vector():
    digest = hmac.new(
        SECRET.encode("utf-8"), f"{TIMESTAMP}\n{SECRET}".encode(), hashlib.sha256
    ).digest()
    by_hand = urllib.parse.quote(base64.b64encode(digest).decode("ascii"), safe="")
    assert dingtalk_sign(SECRET, TIMESTAMP) == by_hand
    assert dingtalk_sign(SECRET, TIMESTAMP) == "%2BjIC0fNnuPxU6H4M3gCgp5YgxSlPbvFVUpVZT%2FU8X3c%3D"
    assert dingtalk_sign(SECRET, TIMESTAMP + 1) != by_hand
    assert dingtalk_sign(SECRET + "x", TIMESTAMP) != by_hand


def test_signed_url_appends_timestamp_and_sign():
    robot = DingTalkRobot("https://oapi.dingtalk.com/robot/send?access_token=abc", SECRET)
    assert robot.signed_url(TIMESTAMP) == (
        "https://oapi.dingtalk.com/robot/send?access_token=abc"
        f"&timestamp={TIMESTAMP}&sign=%2BjIC0fNnuPxU6H4M3gCgp5YgxSlPbvFVUpVZT%2FU8X3c%3D"
    )
    bare = DingTalkRobot("https://robot.example/send", SECRET)
    assert bare.signed_url(TIMESTAMP).startswith(
        f"https://robot.example/send?timestamp={TIMESTAMP}&"
    )
    unsigned = DingTalkRobot("https://robot.example/send?access_token=abc", None)
    assert unsigned.signed_url(TIMESTAMP) == "https://robot.example/send?access_token=abc"


def test_payload_is_markdown_with_link_and_no_mentions_when_not_urgent():
    robot = DingTalkRobot("https://robot.example/send", SECRET)
    payload = robot.payload(notification(mobiles=("13800000001",)))
    assert payload["msgtype"] == "markdown"
    assert payload["markdown"]["title"] == "新案件：楼道电动车充电"
    assert payload["markdown"]["text"] == (
        "#### 新案件 #42\n\n- 类别：治安\n- 社区：万景社区\n\n"
        "[在控制台查看案件 #42](http://console.example/console/cases/42)"
    )
    assert payload["at"] == {"atMobiles": [], "isAtAll": False}


def test_urgent_text_mentions_each_mobile_once():
    urgent = notification(urgent=True, mobiles=("13800000001", "13900000002", "13800000001"))
    text = markdown_text(urgent)
    assert text.endswith("\n\n@13800000001 @13900000002")
    assert text.count("@13800000001") == 1


# ---------------------------------------------------------------------- over HTTP


def test_robot_message_reaches_the_standin(standin, live):
    DingTalkRobot(webhook(live), SECRET, backoff=0).send(notification())
    [message] = standin.messages
    assert message.title == "新案件：楼道电动车充电"
    assert message.text.startswith("#### 新案件 #42")
    assert "(http://console.example/console/cases/42)" in message.text
    assert message.at_mobiles == []
    assert message.is_at_all is False
    assert standin.attempts == 1
    listed = requests.get(f"{live.url}/simulator/api/dingtalk", timeout=5).json()
    assert [(m["id"], m["title"], m["at_mobiles"]) for m in listed] == [
        (1, "新案件：楼道电动车充电", [])
    ]
    assert set(listed[0]) >= {"id", "title", "text", "at_mobiles", "received_at"}
    assert abs(listed[0]["received_at"] - time.time()) < 60


def test_urgent_message_carries_at_mobiles(standin, live):
    urgent = notification(
        title="【紧急】涉诈已转账",
        text="#### 【紧急】涉诈已转账 20000 元",
        urgent=True,
        mobiles=("13800000001", "13900000002"),
    )
    DingTalkRobot(webhook(live), SECRET, backoff=0).send(urgent)
    [message] = standin.messages
    assert message.at_mobiles == ["13800000001", "13900000002"]
    assert "@13800000001" in message.text and "@13900000002" in message.text
    assert message.title == "【紧急】涉诈已转账"


def test_transient_errcodes_are_retried_with_doubling_backoff(standin, live):
    standin.fail_next(errcode=130101, times=2)  # send too fast
    waits: list[float] = []
    DingTalkRobot(webhook(live), SECRET, backoff=0.5, sleep=waits.append).send(notification())
    assert waits == [0.5, 1.0]
    assert standin.attempts == 3
    assert len(standin.messages) == 1
    assert standin.pending_failures == 0


def test_http_errors_are_retried_then_succeed(standin, live):
    standin.fail_next(http_status=502)
    DingTalkRobot(webhook(live), SECRET, backoff=0).send(notification())
    assert standin.attempts == 2
    assert [m.title for m in standin.messages] == ["新案件：楼道电动车充电"]


def test_gives_up_after_the_retries(standin, live):
    standin.fail_next(errcode=-1, times=10)
    with pytest.raises(NotifyError) as caught:
        DingTalkRobot(webhook(live), SECRET, retries=3, backoff=0).send(notification())
    assert caught.value.permanent is False
    assert caught.value.errcode == -1
    assert standin.attempts == 4  # the first attempt and 3 retries
    assert standin.pending_failures == 6
    assert standin.messages == []


def test_wrong_secret_is_permanent_and_not_retried(standin, live):
    with pytest.raises(NotifyError) as caught:
        DingTalkRobot(webhook(live), "SEC-wrong", backoff=0).send(notification())
    assert caught.value.permanent is True
    assert caught.value.errcode == 310000
    assert "sign not match" in str(caught.value)
    assert standin.attempts == 1
    assert standin.messages == []


def test_unsigned_request_is_refused_when_the_robot_has_a_secret(standin, live):
    with pytest.raises(NotifyError) as caught:
        DingTalkRobot(webhook(live), None, backoff=0).send(notification())
    assert (caught.value.permanent, caught.value.errcode) == (True, 310000)
    assert standin.attempts == 1


def test_stale_timestamp_is_refused(standin, live):
    hour_ago = int(time.time() * 1000) - 3601 * 1000
    url = DingTalkRobot(webhook(live), SECRET).signed_url(hour_ago)
    answer = requests.post(url, json={"msgtype": "text", "text": {"content": "x"}}, timeout=5)
    assert answer.json()["errcode"] == 310000
    assert standin.messages == []


def test_invalid_token_is_permanent(standin, live):
    with pytest.raises(NotifyError) as caught:
        DingTalkRobot(webhook(live, token=""), SECRET, backoff=0).send(notification())
    assert (caught.value.permanent, caught.value.errcode) == (True, 300001)
    assert standin.attempts == 1


def test_timeouts_are_retried(standin, live):
    standin.fail_next(delay=1.0)
    DingTalkRobot(webhook(live), SECRET, timeout=0.3, retries=1, backoff=0).send(notification())
    assert standin.attempts == 2
    assert len(standin.messages) >= 1  # the late first attempt may land too, as on DingTalk


def test_refused_connections_are_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        robot = DingTalkRobot(f"http://127.0.0.1:{port}/send", SECRET, retries=2, backoff=0)
        with pytest.raises(NotifyError) as caught:
            robot.send(notification())
    assert caught.value.permanent is False
    assert str(caught.value) == "network: ConnectionError"


def test_logs_never_carry_the_secret_or_the_signature(standin, live, caplog):
    caplog.set_level(logging.DEBUG, logger="integrations.notify")
    standin.fail_next(errcode=-1)
    robot = DingTalkRobot(webhook(live), SECRET, backoff=0)
    robot.send(notification(urgent=True, mobiles=("13800000001",)))
    with pytest.raises(NotifyError):
        DingTalkRobot(webhook(live), "SEC-other-secret", backoff=0).send(notification())
    text = caplog.text
    assert "case 42" in text and "errcode -1" in text and "errcode 310000" in text
    for secret in (SECRET, "SEC-other-secret", "robot-token", "sign=", "13800000001"):
        assert secret not in text


# ---------------------------------------------------------------------- wiring and fake


def test_notifier_from_settings():
    unset = SimpleNamespace(dingtalk_webhook_url=None, dingtalk_secret=SECRET)
    assert notifier_from_settings(unset) is None
    settings = SimpleNamespace(
        dingtalk_webhook_url="https://oapi.dingtalk.com/robot/send?access_token=t",
        dingtalk_secret=SECRET,
    )
    robot = notifier_from_settings(settings)
    assert isinstance(robot, DingTalkRobot)
    assert robot.webhook_url == "https://oapi.dingtalk.com/robot/send?access_token=t"
    assert robot.secret == SECRET
    assert robot.retries == 0  # the dispatcher retries later with backoff: no sleep in a pass


def test_recording_notifier_fails_on_demand_then_records():
    fake = RecordingNotifier()
    fake.fail_next(NotifyError("errcode -1", permanent=False))
    with pytest.raises(NotifyError):
        fake.send(notification())
    fake.send(notification(case_id=7))
    assert fake.attempts == 2
    assert [n.case_id for n in fake.sent] == [7]
