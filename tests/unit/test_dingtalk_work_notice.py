"""Personal DingTalk work notifications (issue 12): `DingTalkWorkNotice` against the
simulator's stand-in of DingTalk's server API (SIMULATED), served over real HTTP —
the token fetched, cached and fetched again when it expires or DingTalk drops it; the
message each officer receives; permanent vs transient errors; nothing personal in what
leaves or in the logs. Time moves by an injected clock, never by sleeping."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from fastapi import FastAPI

from casework import logsafe
from casework.clock import utcnow
from gateway.simulator import partners
from integrations.dingtalk_work_notice import (
    TOKEN_MARGIN,
    DingTalkWorkNotice,
    MemoryTokenCache,
    SharedTokenCache,
    work_notice_from_settings,
)
from integrations.notify import Notification, NotifyError
from tests.live_server import LiveServer

APP_KEY, APP_SECRET, AGENT_ID = "ding-test-app", "app-secret-0123456789-abcdef", "2233445566"
PHONE, ID_CARD, BANK_CARD = "13812345678", "330206199001011237", "6222021234567890128"


def settings(**changes: Any) -> SimpleNamespace:
    values = {
        "dingtalk_app_key": APP_KEY,
        "dingtalk_app_secret": APP_SECRET,
        "dingtalk_agent_id": AGENT_ID,
        "dingtalk_secret": "SEC-unused",
        "governance_secret": "unused",
    }
    return SimpleNamespace(**{**values, **changes})


@pytest.fixture(scope="module")
def app() -> FastAPI:
    app = FastAPI()
    app.include_router(partners.router)
    app.state.settings = settings()
    return app


@pytest.fixture(scope="module")
def live(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def standin(app, live) -> partners.WorkNoticeStandIn:
    """A fresh stand-in for each test."""
    app.state.work_notice_standin = partners.WorkNoticeStandIn(APP_KEY, APP_SECRET, AGENT_ID)
    return app.state.work_notice_standin


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def adapter(live: LiveServer, clock: Clock | None = None, **changes: Any) -> DingTalkWorkNotice:
    values: dict[str, Any] = {"app_key": APP_KEY, "app_secret": APP_SECRET, "agent_id": AGENT_ID}
    values.update(changes)
    clock = clock or Clock()
    return DingTalkWorkNotice(
        f"{live.url}/simulator/dingtalk",
        values["app_key"],
        values["app_secret"],
        values["agent_id"],
        token_cache=values.get("token_cache") or MemoryTokenCache(clock),
        timeout=values.get("timeout", 5.0),
        clock=clock,
    )


def notification(**changes: Any) -> Notification:
    base = Notification(
        case_id=42,
        title="【紧急】涉诈案件 #42",
        text=(
            "### 【紧急】涉诈案件 #42\n- 地点：骆驼街道万景社区\n- 摘要：刚转账两万\n"
            "[打开案件](http://console.example/console/cases/42)\n"
            "回复方式：在群里 @机器人 发送“#42 回复内容”。"
        ),
        url="http://console.example/console/cases/42",
        urgent=True,
        user_ids=("dt-zhang",),
    )
    return dataclasses.replace(base, **changes)


# ------------------------------------------------------------------ delivery


def test_each_officer_receives_the_card_with_the_console_link(standin, live):
    adapter(live).send(notification(user_ids=("dt-zhang", "dt-li")))
    notices = standin.notices
    assert [n.userid for n in notices] == ["dt-zhang", "dt-li"]
    first = notices[0]
    assert (first.msgtype, first.title) == ("action_card", "【紧急】涉诈案件 #42")
    assert first.single_url == "http://console.example/console/cases/42"
    assert first.text.splitlines()[-1] == "回复方式：在群里 @机器人 发送“#42 回复内容”。"
    listed = requests.get(
        f"{live.url}/simulator/api/dingtalk/work-notices", params={"userid": "dt-li"}, timeout=5
    ).json()
    assert [(n["userid"], n["title"]) for n in listed] == [("dt-li", "【紧急】涉诈案件 #42")]


def test_the_payload_has_dingtalks_field_names():
    work = DingTalkWorkNotice("https://oapi.dingtalk.com", APP_KEY, APP_SECRET, AGENT_ID)
    payload = work.payload(notification(user_ids=("a", "b", "a")))
    assert payload["agent_id"] == int(AGENT_ID)  # a number, as DingTalk documents it
    assert payload["userid_list"] == "a,b"  # a comma-separated string
    card = payload["msg"]["action_card"]
    assert payload["msg"]["msgtype"] == "action_card"
    assert set(card) == {"title", "markdown", "single_title", "single_url"}
    plain = work.payload(notification(url=""))
    assert plain["msg"]["msgtype"] == "markdown" and set(plain["msg"]["markdown"]) == {
        "title",
        "text",
    }


def test_a_long_message_is_cut_to_dingtalks_limit_keeping_the_reply_hint(standin, live):
    hint = "回复方式：在群里 @机器人 发送“#42 回复内容”。"
    long = notification(text="### 案件 #42\n" + "很长的摘要" * 400 + "\n" + hint)
    work = adapter(live)
    size = len(json.dumps(work.payload(long)["msg"], ensure_ascii=False).encode())
    assert size <= 2048
    work.send(long)
    [notice] = standin.notices
    assert notice.text.endswith("…\n" + hint)


def test_nothing_personal_leaves(standin, live):
    personal = notification(
        title=f"案件 #42 {PHONE}",
        text=f"- 摘要：电话 {PHONE}，身份证 {ID_CARD}，卡号 {BANK_CARD}\n@{PHONE}",
    )
    adapter(live).send(personal)
    [notice] = standin.notices
    for number in (PHONE, ID_CARD, BANK_CARD):
        assert number not in notice.title and number not in notice.text
    assert "138****5678" in notice.text and "6222***********0128" in notice.text


def test_a_notification_without_recipients_is_refused_without_calling(standin, live):
    with pytest.raises(NotifyError) as caught:
        adapter(live).send(notification(user_ids=()))
    assert caught.value.permanent is True
    assert standin.attempts == 0 and standin.token_fetches == 0


# ------------------------------------------------------------------ the access token


def test_the_token_is_fetched_once_and_reused(standin, live):
    work = adapter(live)
    for n in range(3):
        work.send(notification(case_id=n))
    assert standin.token_fetches == 1
    assert len(standin.notices) == 3


def test_the_token_is_fetched_again_once_it_expires(standin, live):
    clock = Clock()
    work = adapter(live, clock)
    work.send(notification())
    lifetime = timedelta(seconds=partners.WORK_NOTICE_TOKEN_LIFETIME)
    clock.advance(seconds=(lifetime - TOKEN_MARGIN).total_seconds() - 1)
    work.send(notification())
    assert standin.token_fetches == 1  # still valid
    clock.advance(seconds=2)
    work.send(notification())
    assert standin.token_fetches == 2  # expired (a minute early): fetched anew
    assert len(standin.notices) == 3


def test_a_token_dingtalk_dropped_early_is_fetched_again_and_the_send_retried_once(standin, live):
    work = adapter(live)
    work.send(notification())
    standin.expire_tokens()  # DingTalk: 40014 for the cached token
    work.send(notification(case_id=43))
    assert standin.token_fetches == 2
    assert standin.attempts == 3  # one refused, one retried
    assert [n.title for n in standin.notices][-1] == "【紧急】涉诈案件 #42"


def test_a_token_still_refused_after_a_fresh_one_is_transient(standin, live, monkeypatch):
    work = adapter(live)
    monkeypatch.setattr(standin, "check_token", lambda token, now: 42001)
    with pytest.raises(NotifyError) as caught:
        work.send(notification())
    assert (caught.value.errcode, caught.value.permanent) == (42001, False)
    assert standin.token_fetches == 2  # refetched once, not in a loop


def test_workers_share_one_token_through_the_database(standin, live, sqlite_url):
    clock = Clock()
    workers = [
        adapter(live, clock, token_cache=SharedTokenCache(sqlite_url, APP_KEY, clock))
        for _ in range(2)
    ]
    for n, work in enumerate(workers * 2):
        work.send(notification(case_id=n))
    assert standin.token_fetches == 1 and len(standin.notices) == 4
    clock.advance(seconds=partners.WORK_NOTICE_TOKEN_LIFETIME)
    workers[1].send(notification())
    workers[0].send(notification())
    assert standin.token_fetches == 2


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "changes, errcode",
    [
        ({"app_secret": "wrong-secret"}, 40089),
        ({"app_key": "another-app"}, 40089),
        ({"agent_id": "999"}, 40056),
    ],
    ids=["secret", "app-key", "agent-id"],
)
def test_a_wrong_app_is_permanent(standin, live, changes, errcode):
    with pytest.raises(NotifyError) as caught:
        adapter(live, **changes).send(notification())
    assert (caught.value.errcode, caught.value.permanent) == (errcode, True)
    assert standin.notices == []


@pytest.mark.parametrize(
    "failure, expected",
    [
        ({"errcode": -1}, "errcode -1"),
        ({"errcode": 90018}, "errcode 90018"),  # unknown: tried again later
        ({"http_status": 502}, "HTTP 502"),
        ({"delay": 1.0}, "network: ReadTimeout"),
    ],
    ids=["busy", "unknown", "http", "timeout"],
)
def test_transient_failures_are_not_permanent(standin, live, failure, expected):
    standin.fail_next(**failure)
    with pytest.raises(NotifyError) as caught:
        adapter(live, timeout=0.3).send(notification())
    assert caught.value.permanent is False
    assert str(caught.value).startswith(expected)


def test_a_malformed_message_is_permanent(standin, live):
    work = adapter(live)
    bad = work.payload(notification())
    bad["msg"] = {"msgtype": "action_card", "action_card": {"title": "x"}}
    token = work.access_token()
    with pytest.raises(NotifyError) as caught:
        work._call("POST", "/topapi/message/corpconversation/asyncsend_v2", token=token, json=bad)
    assert (caught.value.errcode, caught.value.permanent) == (40035, True)


def test_refused_connections_are_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening
        work = DingTalkWorkNotice(f"http://127.0.0.1:{port}", APP_KEY, APP_SECRET, AGENT_ID)
        with pytest.raises(NotifyError) as caught:
            work.send(notification())
    assert caught.value.permanent is False and str(caught.value) == "network: ConnectionError"


def test_logs_never_carry_the_secret_the_token_or_the_text(standin, live, caplog):
    caplog.set_level(logging.DEBUG, logger="integrations.dingtalk_work_notice")
    work = adapter(live)
    work.send(notification(text=f"电话 {PHONE}"))
    token = work.tokens.get()
    standin.fail_next(errcode=-1)
    with pytest.raises(NotifyError):
        work.send(notification())
    text = caplog.text
    assert "case 42" in text and "errcode -1" in text
    assert token and token not in text
    for secret in (APP_SECRET, PHONE, "138****5678", "appsecret="):
        assert secret not in text
    # …and the URLs HTTP libraries log at DEBUG are scrubbed by every process's formatter
    url = f"GET /gettoken?appkey={APP_KEY}&appsecret={APP_SECRET} HTTP/1.1"
    assert APP_SECRET not in logsafe.scrub(url) and APP_KEY in logsafe.scrub(url)
    assert token not in logsafe.scrub(f"POST /topapi/x?access_token={token} HTTP/1.1")


# ------------------------------------------------------------------ wiring


def test_work_notice_from_settings(sqlite_url):
    assert work_notice_from_settings(settings(dingtalk_app_key=None)) is None
    assert work_notice_from_settings(settings(dingtalk_agent_id=None)) is None
    configured = settings(dingtalk_api_url="https://oapi.dingtalk.com/", database_url=sqlite_url)
    work = work_notice_from_settings(configured)
    assert isinstance(work, DingTalkWorkNotice)
    assert work.api_url == "https://oapi.dingtalk.com"
    assert isinstance(work.tokens, SharedTokenCache)  # one token for every worker
