"""End to end: real Rasa, action-server and gateway processes; conversations over Rasa's
REST channel and through /wechat exactly as WeChat sends them, and the records they leave.

Needs a trained model (`make train`); `make test` trains or reuses the cached one first.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import yaml
from sqlalchemy import select

from casework import db, demo
from casework.models import Case, Ticket
from jmt import launch, paths
from jmt.train import data_hash, model_path
from tests.gateway.conftest import TOKEN, sign, text_xml

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def bot(tmp_path_factory) -> Iterator[dict]:
    model = model_path(data_hash())
    if not model.exists():
        pytest.fail(f"no model for the current data ({model.name}); run `make train` first")
    database = f"sqlite:///{tmp_path_factory.mktemp('db') / 'jmt.sqlite3'}"
    rasa_port, actions_port, gateway_port = free_port(), free_port(), free_port()
    rasa_token, actions_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "RASA_TELEMETRY_ENABLED": "false",
        "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{actions_port}/webhook",
        "RASA_TRACKER_DB": str(tmp_path_factory.mktemp("tracker") / "rasa.sqlite3"),
        "RASA_URL": f"http://127.0.0.1:{rasa_port}",
        "ACTION_SERVER_URL": f"http://127.0.0.1:{actions_port}",
        "GATEWAY_PORT": str(gateway_port),
        "JMT_ENV": "development",
        "WECHAT_TOKEN": TOKEN,
        "RASA_TOKEN": rasa_token,  # Rasa's API and every caller (the gateway) use it
        "ACTIONS_TOKEN": actions_token,  # Rasa sends it to the action server
        "PYTHONPATH": str(paths.REPO_ROOT),  # the children import this checkout's code
    }
    for name in (
        "WECHAT_API_BASE_URL",
        "WECHAT_ENCODING_AES_KEY",
        "WECHAT_APP_ID",
        "WECHAT_APP_SECRET",
        "JMT_SIMULATOR",
    ):
        env.pop(name, None)  # development defaults: the simulator's WeChat stand-in
    db.migrate(database)
    with db.session_scope(database) as session:
        demo.load(session=session)  # officers to route hand-offs to
    logs = tmp_path_factory.mktemp("logs")
    actions = subprocess.Popen(
        launch.action_server(actions_port),
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=open(logs / "actions.log", "w"),
        stderr=subprocess.STDOUT,
    )
    server = subprocess.Popen(
        launch.rasa_server(rasa_port, model=model),
        cwd=paths.REPO_ROOT,
        env={**env, **launch.rasa_environment(rasa_token)},
        stdout=open(logs / "rasa.log", "w"),
        stderr=subprocess.STDOUT,
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "gateway.app:app", "--port", str(gateway_port)],
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=open(logs / "gateway.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{actions_port}/health", actions)
        wait_for(f"http://127.0.0.1:{rasa_port}/status?token={rasa_token}", server)
        wait_for(f"http://127.0.0.1:{gateway_port}/healthz", gateway)
        yield {
            "url": f"http://127.0.0.1:{rasa_port}",
            "token": rasa_token,
            "database": database,
            "gateway": f"http://127.0.0.1:{gateway_port}",
            "logs": logs,
        }
    finally:
        for process in (gateway, server, actions):
            process.terminate()
            process.wait(timeout=30)
        db.get_engine.cache_clear()


def say(bot: dict, sender: str, text: str) -> list[str]:
    body = json.dumps({"sender": sender, "message": text}).encode()
    request = urllib.request.Request(
        f"{bot['url']}/webhooks/rest/webhook", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return [m.get("text", "") for m in json.loads(response.read())]


def response(name: str) -> str:
    for file in paths.DOMAIN.glob("*.yml"):
        responses = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("responses", {})
        if name in responses:
            return responses[name][0]["text"]
    raise KeyError(name)


def cases(bot: dict, sender: str) -> list[Case]:
    with db.session_scope(bot["database"]) as session:
        return list(session.execute(select(Case).where(Case.sender_id == sender)).scalars())


def test_triage_api_returns_intent_and_confidence(bot):
    request = urllib.request.Request(
        f"{bot['url']}/model/parse?token={bot['token']}",
        json.dumps({"text": "我被刷单骗了两万"}).encode(),
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        parsed = json.loads(reply.read())
    assert parsed["intent"]["name"] == "report_fraud"
    assert any(e["entity"] == "amount" for e in parsed["entities"])


def test_fraud_with_money_gone_alerts_at_once_and_hands_off_urgently(bot):
    sender = f"e2e-{uuid.uuid4().hex[:8]}"
    first = say(bot, sender, "我昨天在抖音上刷单被骗了两万，用银行卡转给他的")
    assert response("utter_stop_payment_now") in first
    assert first[-1] == response("utter_ask_scammer_contact")
    [case] = cases(bot, sender)  # the urgent case exists before the intake is finished
    assert (case.priority, case.desk) == ("urgent", "反诈")
    second = say(bot, sender, "他的卡号是6222021234567890123")
    assert second == [response("utter_fraud_handed_over")]
    [case] = cases(bot, sender)
    assert case.details["amount_yuan"] == 20000
    assert case.details["payment_method"] == "银行卡转账"
    assert case.details["scammer_accounts"] == ["6222021234567890123"]
    assert say(bot, sender, "民警什么时候联系我") == []  # paused: officers own it now


def test_faq_is_answered_directly(bot):
    assert say(bot, "e2e-faq", "身份证丢了怎么补办") == [response("utter_faq/id_card_reissue")]


def test_noise_complaint_becomes_a_ticket(bot):
    sender = f"e2e-{uuid.uuid4().hex[:8]}"
    say(bot, sender, "楼上装修太吵了")
    say(bot, sender, "骆驼街道万景社区3幢")
    say(bot, sender, "电钻打墙")
    say(bot, sender, "是的还在吵")
    last = say(bot, sender, "早上七点就开始了")
    assert any("工单号" in text for text in last)
    with db.session_scope(bot["database"]) as session:
        [ticket] = session.execute(select(Ticket).where(Ticket.sender_id == sender)).scalars()
        assert (ticket.kind, ticket.details["street"]) == ("noise", "骆驼街道")


def test_emergency_gets_110_advice_before_any_question(bot):
    sender = f"e2e-{uuid.uuid4().hex[:8]}"
    first = say(bot, sender, "救命 有人拿刀在砍人")
    assert first[0] == response("utter_emergency_110")
    assert first[-1] == response("utter_ask_emergency_form_location")
    assert [c.priority for c in cases(bot, sender)] == ["urgent"]
    assert say(bot, sender, "招宝山街道车站路社区菜场门口") == [
        response("utter_emergency_handed_over")
    ]
    assert cases(bot, sender)[0].details["community"] == "车站路社区"


# ------------------------------------------------------------------ through /wechat


def wechat_post(bot: dict, xml: str, request_id: str | None = None) -> tuple[int, str | None]:
    """POST a message the way WeChat's servers do; returns (status, passive reply text)."""
    import xmltodict

    stamp, nonce = str(int(time.time())), uuid.uuid4().hex[:8]
    query = f"signature={sign(stamp, nonce)}&timestamp={stamp}&nonce={nonce}"
    headers = {"Content-Type": "text/xml"}
    if request_id:
        headers["X-Request-ID"] = request_id  # as a reverse proxy may set it
    request = urllib.request.Request(
        f"{bot['gateway']}/wechat?{query}", xml.encode("utf-8"), headers
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = reply.read().decode("utf-8")
        if body == "success":
            return reply.status, None
        return reply.status, xmltodict.parse(body)["xml"]["Content"]


def test_healthz_sees_database_rasa_and_action_server(bot):
    with urllib.request.urlopen(f"{bot['gateway']}/healthz", timeout=10) as reply:
        health = json.loads(reply.read())
    assert health == {"status": "ok", "database": "ok", "rasa": "ok", "action_server": "ok"}


def test_fraud_report_through_wechat_becomes_an_urgent_case_and_hands_over(bot):
    openid = f"o-e2e-{uuid.uuid4().hex[:8]}"
    status, first = wechat_post(bot, text_xml(openid, "我刚才被刷单骗了3万，扫码付的"))
    assert status == 200
    assert response("utter_stop_payment_now") in first
    assert first.endswith(response("utter_ask_scammer_contact"))
    status, second = wechat_post(bot, text_xml(openid, "对方手机13912345678"))
    assert second == response("utter_fraud_handed_over")
    [case] = cases(bot, openid)
    assert (case.priority, case.desk, case.details["amount_yuan"]) == ("urgent", "反诈", 30000)
    assert case.details["payment_method"] == "扫码支付"
    # now an officer owns the conversation: the bot stays quiet, the message is kept
    status, third = wechat_post(bot, text_xml(openid, "民警什么时候联系我"))
    assert (status, third) == (200, None)
    with db.session_scope(bot["database"]) as session:
        from casework.models import Conversation, Message

        conversation = session.execute(
            select(Conversation).where(Conversation.openid == openid)
        ).scalar_one()
        assert conversation.owner == "officer"
        kept = (
            session.execute(
                select(Message).where(
                    Message.conversation_id == conversation.id, Message.direction == "in"
                )
            )
            .scalars()
            .all()
        )
        assert [m.status for m in kept] == ["answered", "answered", "for_officer"]
        assert kept[0].intent == "report_fraud"


def test_a_retried_message_is_answered_once(bot):
    openid = f"o-e2e-{uuid.uuid4().hex[:8]}"
    msg_id = int(time.time() * 1000)
    xml = text_xml(openid, "护照怎么办理", msg_id=msg_id)
    first = wechat_post(bot, xml)
    assert first == (200, response("utter_faq/passport"))

    def reply_recorded() -> bool:
        # The passive reply's record is written just after the reply is sent (it is not
        # what the resident waits for); WeChat only retries 5 s after a request, by when
        # it is there. A retry sent in the very same instant would get `success`.
        with db.session_scope(bot["database"]) as session:
            from casework.models import Message

            return bool(
                session.execute(
                    select(Message.reply).where(Message.dedupe_key == f"msg:{msg_id}")
                ).scalar_one_or_none()
            )

    wait_until(reply_recorded, timeout=10)
    assert wechat_post(bot, xml) == first  # the stored reply, no second turn
    with db.session_scope(bot["database"]) as session:
        from casework.models import Message

        stored = session.execute(
            select(Message).where(
                Message.dedupe_key.like("msg:%"), Message.content == "护照怎么办理"
            )
        ).scalars()
        assert len(list(stored)) == 1


# ------------------------------------------------------------------ officers take over


def get_json(url: str, headers: dict | None = None) -> object:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def post_json(url: str, body: dict, headers: dict) -> tuple[int, object]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {**headers, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.status, json.loads(reply.read())


def wait_until(check, timeout: float = 20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("timed out waiting")


def test_money_gone_fraud_reaches_the_antifraud_desk_and_the_officer_answers_in_wechat(bot):
    gateway = bot["gateway"]
    openid = f"o-e2e-{uuid.uuid4().hex[:8]}"
    wechat_post(bot, text_xml(openid, "我被骗了，刚转了两万块给一个刷单的"))
    wechat_post(bot, text_xml(openid, "他的卡号是6222021234567890123"))
    [case] = cases(bot, openid)
    assert (case.priority, case.desk, case.details["amount_yuan"]) == ("urgent", "反诈", 20000)

    # the DingTalk stand-in receives the notification for the 反诈 desk
    notices = wait_until(
        lambda: [
            m for m in get_json(f"{gateway}/simulator/api/dingtalk") if f"#{case.id}" in m["title"]
        ]
    )
    assert "【紧急】" in notices[0]["title"] and "反诈民警" in notices[0]["text"]

    # the officer signs in, claims and replies; the reply reaches WeChat through the outbox
    login = urllib.request.Request(
        f"{gateway}/api/auth/token",
        f"username=fanzha&password={demo.DEMO_PASSWORD}".encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(login, timeout=30) as reply:
        headers = {"Authorization": "Bearer " + json.loads(reply.read())["access_token"]}
    queue = get_json(f"{gateway}/api/cases", headers)
    assert case.id in [c["id"] for c in queue]  # the 反诈 desk sees it (and earlier ones)
    post_json(f"{gateway}/api/cases/{case.id}/claim", {}, headers)
    post_json(
        f"{gateway}/api/cases/{case.id}/reply",
        {"text": "您好，我是反诈民警，已联系银行紧急止付。"},
        headers,
    )
    inbox = f"{gateway}/simulator/api/inbox?openid={openid}"
    wait_until(lambda: any("已联系银行紧急止付" in m["content"] for m in get_json(inbox)))

    # closing hands the conversation back to the bot and brings the rating question
    post_json(f"{gateway}/api/cases/{case.id}/close", {"resolution": "已止付"}, headers)
    wait_until(lambda: any("打分" in m["content"] for m in get_json(inbox)))
    status, thanks = wechat_post(bot, text_xml(openid, "5"))
    assert thanks.startswith("感谢您的评价")
    assert cases(bot, openid)[0].rating == 5
    status, answer = wechat_post(bot, text_xml(openid, "护照怎么办理"))
    assert answer == response("utter_faq/passport")  # the bot is back


def test_one_grep_follows_a_message_through_the_gateway_and_the_actions(bot):
    """The request id of a /wechat message is on the gateway's lines and on the action
    server's (it came in Rasa's metadata); Rasa logs in the same format; no process
    prints the resident's phone number."""
    openid = f"o-e2e-{uuid.uuid4().hex[:8]}"
    request_id = f"e2e-trace-{uuid.uuid4().hex[:8]}"
    wechat_post(bot, text_xml(openid, "我刚才被刷单骗了2万，转账给他的"))
    status, _ = wechat_post(bot, text_xml(openid, "对方手机13987654321"), request_id)
    assert status == 200
    line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+ \[[^\]]+\] ")
    deadline = time.monotonic() + 20
    while True:
        logs = {name: (bot["logs"] / f"{name}.log").read_text() for name in ("gateway", "actions")}
        tagged = {
            name: [row for row in text.splitlines() if f"[{request_id}]" in row]
            for name, text in logs.items()
        }
        if (tagged["actions"] and tagged["gateway"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any(" INFO gateway.service " in row for row in tagged["gateway"]), tagged
    assert any("uvicorn.access" in row and "/wechat?" in row for row in tagged["gateway"])
    assert any(
        " run validate_fraud_form" in row or " run action_" in row for row in tagged["actions"]
    )
    assert all(line.match(row) for rows in tagged.values() for row in rows)
    rasa_log = (bot["logs"] / "rasa.log").read_text()
    assert any(line.match(row) and " rasa." in row for row in rasa_log.splitlines())
    assert "  - " not in rasa_log  # coloredlogs' format never prints (bot/logging.yml)
    for text in (*logs.values(), rasa_log):
        assert "13987654321" not in text


def test_a_tracker_left_paused_without_an_officer_is_resumed_when_the_resident_writes(bot):
    """One owner, really: a restore left Rasa's tracker paused while the database says the
    bot owns the conversation. The resident's next message is answered, and the tracker
    holds one turn for it: Rasa 3.6 logs a message on a paused tracker without running a
    turn, and the gateway reverts that entry before asking again."""
    from integrations.rasa import user_turns

    sender = f"e2e-{uuid.uuid4().hex[:8]}"
    answer = response("utter_faq/id_card_reissue")
    assert wechat_post(bot, text_xml(sender, "身份证丢了怎么补办"))[1] == answer
    request = urllib.request.Request(
        f"{bot['url']}/conversations/{sender}/tracker/events?token={bot['token']}",
        json.dumps([{"event": "pause"}]).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass
    assert wechat_post(bot, text_xml(sender, "身份证丢了怎么补办"))[1] == answer
    tracker = get_json(f"{bot['url']}/conversations/{sender}/tracker?token={bot['token']}")
    assert isinstance(tracker, dict) and tracker["paused"] is False
    events = tracker["events"]
    assert [e["event"] for e in events].count("user") == 3  # one of them reverted …
    assert user_turns(events) == 2  # … so two turns, one per message
    assert cases(bot, sender) == []


def test_a_lead_for_a_registered_resident_mentions_the_officer_warns_the_resident_and_counts(
    bot,
):
    """精准劝阻 end to end (issue 11): the warning platform's signed lead for a resident who
    registered their mobile → a DingTalk @-mention of the community officer, a WeChat
    warning to the resident, and the officer's 劝阻成功 in the metrics."""
    from casework import residents
    from integrations.signed_webhooks import signed_headers

    secret = os.environ.get("DISSUASION_SECRET") or "jmt-development-dissuasion"  # dev default

    gateway = bot["gateway"]
    openid = f"o-e2e-{uuid.uuid4().hex[:8]}"
    wechat_post(bot, text_xml(openid, "你好"))  # a resident, active in the last 48 hours
    mobile = f"139{uuid.uuid4().int % 10**8:08d}"
    with db.session_scope(bot["database"]) as session:  # the resident-facing step: later
        residents.set_profile(session=session, openid=openid, mobile=mobile, consent=True)

    body = json.dumps(
        {
            "leads": [
                {
                    "external_id": f"e2e-{openid}",
                    "phone": mobile,
                    "address": "骆驼街道万景社区12幢",
                    "risk_type": "刷单返利",
                    "risk_level": "high",
                    "warned_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                    "source": "96110",
                }
            ]
        },
        ensure_ascii=False,
    ).encode()
    path = "/api/dissuasion/leads"
    headers = signed_headers(secret=secret, method="POST", path=path, body=body)
    status, accepted = post_json_raw(f"{gateway}{path}", body, headers)
    assert status == 202
    [task_id] = accepted["task_ids"]

    # the community officer (万景社区's demo officer) is @-mentioned on DingTalk
    officer = next(a for a in demo.demo_accounts() if a.get("community") == "万景社区")
    notice = wait_until(
        lambda: [
            m
            for m in get_json(f"{gateway}/simulator/api/dingtalk")
            if "精准劝阻" in m["title"] and officer["mobile"] in m["at_mobiles"]
        ]
    )[0]
    assert mobile not in notice["title"] + notice["text"]  # the number is masked there

    # the resident gets a WeChat warning for that scam type at once
    inbox = f"{gateway}/simulator/api/inbox?openid={openid}"
    warning = wait_until(lambda: [m for m in get_json(inbox) if "刷单" in m["content"]])[0]
    assert warning["content"].startswith("【反诈预警】")

    # the officer reaches the person in person and records 劝阻成功; the metrics count it
    login = urllib.request.Request(
        f"{gateway}/api/auth/token",
        f"username={officer['username']}&password={demo.DEMO_PASSWORD}".encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(login, timeout=30) as reply:
        auth = {"Authorization": "Bearer " + json.loads(reply.read())["access_token"]}
    tasks = f"{gateway}/api/dissuasion/tasks/{task_id}"
    post_json(f"{tasks}/attempts", {"channel": "visit", "reached": True, "note": "已见本人"}, auth)
    post_json(f"{tasks}/outcome", {"outcome": "dissuaded", "amount_protected": "5000"}, auth)
    numbers = get_json(f"{gateway}/api/metrics?days=1", auth)["dissuasion"]
    assert numbers["dissuaded"] >= 1 and numbers["amount_protected_yuan"] >= 5000
    assert numbers["reached_in_person"] >= 1


def post_json_raw(url: str, body: bytes, headers: dict) -> tuple[int, object]:
    request = urllib.request.Request(url, body, {**headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.status, json.loads(reply.read())


# ------------------------------------------------------------------ answered from DingTalk


def test_an_officer_answers_from_dingtalk_and_the_resident_reads_it_in_wechat(bot):
    """The 反诈 desk officer replies `#<case> text` to the DingTalk robot (a signed outgoing
    callback, as DingTalk sends it): the reply claims the case and reaches the resident
    through the outbox and the simulator's WeChat API stand-in."""
    from gateway.routes.dingtalk import dingtalk_sign

    gateway = bot["gateway"]
    openid = f"o-e2e-{uuid.uuid4().hex[:8]}"
    wechat_post(bot, text_xml(openid, "我被骗了，刚转了三万块给一个刷单的"))
    wechat_post(bot, text_xml(openid, "他的卡号是6222021234567890123"))
    [case] = cases(bot, openid)
    assert (case.desk, case.status) == ("反诈", "open")

    # the gateway runs with JMT_ENV=development: its DINGTALK_APP_SECRET default
    secret = os.environ.get("DINGTALK_APP_SECRET") or "jmt-development-dingtalk-app"
    stamp = str(int(time.time() * 1000))
    message = {
        "msgtype": "text",
        "text": {
            "content": f" #{case.id} 您好，我是反诈民警，已通知银行紧急止付，请保持电话畅通。"
        },
        "msgId": f"msg-e2e-{uuid.uuid4().hex[:12]}",
        "conversationType": "1",
        "senderStaffId": "demo-dt-fanzha",  # casework/demo.py binds it to `fanzha`
        "senderNick": "反诈民警",
        "isInAtList": True,
    }
    headers = {"timestamp": stamp, "sign": dingtalk_sign(stamp, secret)}
    status, answer = post_json(f"{gateway}/api/dingtalk/callback", message, headers)
    assert status == 200
    assert isinstance(answer, dict) and answer["msgtype"] == "text"
    assert answer["text"]["content"].startswith(f"已答复案件 #{case.id}，该案件已由您认领")

    inbox = f"{gateway}/simulator/api/inbox?openid={openid}"
    wait_until(lambda: any("已通知银行紧急止付" in m["content"] for m in get_json(inbox)))
    [claimed] = cases(bot, openid)
    assert claimed.status == "claimed" and claimed.first_reply_at is not None

    # DingTalk delivers the same message again: the same answer, no second message
    status, again = post_json(f"{gateway}/api/dingtalk/callback", message, headers)
    assert (status, again) == (200, answer)
    time.sleep(2)  # give a wrongly queued second message time to arrive
    received = [m for m in get_json(inbox) if "已通知银行紧急止付" in m["content"]]
    assert len(received) == 1
