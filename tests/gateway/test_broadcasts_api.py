"""Warnings over HTTP (SQLite and PostgreSQL): compose, list, preview, figures, pause /
resume / cancel, officer scope (403), bad input (422), WeChat's TEMPLATESENDJOBFINISH and
MASSSENDJOBFINISH events on /wechat, and the real wechatpy client against the SIMULATED
stand-in (template messages, user tags, mass send)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from casework import accounts, db, subscriptions
from casework.models import BroadcastDelivery
from gateway.simulator import routes as simulator
from gateway.simulator.standin import WeChatStandIn
from integrations.wechat import SqlTokenStorage, WeChatApi, WeChatMessenger
from tests.gateway.conftest import xml_message
from tests.live_server import LiveServer
from tests.unit.broadcast_helpers import make_resident, worker

PASSWORD = "correct-horse-battery"
A, B = "万景社区", "盛兴社区"


def body(**changes: Any) -> dict[str, Any]:
    return {
        "topic": "fraud",
        "title": "警惕冒充客服诈骗",
        "text": "凡是自称客服要求转账的都是诈骗。",
        "audience": {"communities": [A], "streets": [], "openids": []},
        **changes,
    }


@pytest.fixture
def client(wechat):
    with db.session_scope() as session:
        for name, role, where in (
            ("officer_a", "officer", {"community": A}),
            ("officer_b", "officer", {"community": B}),
            ("commander", "commander", {}),
            ("trainer", "trainer", {}),
        ):
            accounts.create_user(
                session=session, username=name, password=PASSWORD, role=role, **where
            )
    return wechat.client


def bearer(client, name: str) -> dict[str, str]:
    answer = client.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_compose_send_and_read_the_figures(client, database_url):
    make_resident("o-a1", A)
    make_resident("o-a2", A)
    make_resident("o-out", A)
    with db.session_scope() as session:
        subscriptions.opt_out(session=session, openid="o-out")
    commander = bearer(client, "commander")
    created = client.post("/api/broadcasts", json=body(), headers=commander)
    assert created.status_code == 200, created.text
    broadcast_id = created.json()["id"]
    assert created.json()["status"] == "scheduled"
    assert "【电诈预警】警惕冒充客服诈骗" in created.json()["preview"]["text"]
    asyncio.run(worker(_Recorder(), database_url).run_once())
    shown = client.get(f"/api/broadcasts/{broadcast_id}", headers=commander).json()
    assert {k: shown[k] for k in ("targeted", "sent", "failed", "opted_out")} == {
        "targeted": 3,
        "sent": 2,
        "failed": 0,
        "opted_out": 1,
    }
    assert shown["status"] == "done"


def test_a_draft_is_kept_edited_and_sent_later(client, database_url):
    """草稿: composed but not released — the queue leaves it alone; its author edits it
    (every field checked as at composing), then sends it; a sent draft is no longer
    editable (409), and an officer cannot release a draft beyond their community."""
    make_resident("o-d1", A)
    make_resident("o-d2", B)
    commander, officer_a = bearer(client, "commander"), bearer(client, "officer_a")
    created = client.post("/api/broadcasts", json=body(draft=True), headers=commander)
    assert created.status_code == 200, created.text
    draft_id = created.json()["id"]
    assert created.json()["status"] == "draft"
    asyncio.run(worker(_Recorder(), database_url).run_once())  # nothing to send
    assert client.get(f"/api/broadcasts/{draft_id}", headers=commander).json()["targeted"] == 0
    edit = body(
        title="台风“海葵”预警",
        text="今晚有强风暴雨，请减少外出。",
        topic="weather",
        audience={"communities": [A, B]},
    )
    edited = client.put(f"/api/broadcasts/{draft_id}", json=edit, headers=commander)
    assert edited.status_code == 200, edited.text
    assert (edited.json()["status"], edited.json()["title"]) == ("draft", "台风“海葵”预警")
    assert edited.json()["audience"]["communities"] == [A, B]
    bad = client.put(f"/api/broadcasts/{draft_id}", json=body(topic="nonsense"), headers=commander)
    assert bad.status_code == 422
    # a two-community draft is not officer_a's to see, let alone release
    refused = client.post(f"/api/broadcasts/{draft_id}/send", headers=officer_a)
    assert refused.status_code == 404
    beyond = client.put(f"/api/broadcasts/{draft_id}", json=edit, headers=officer_a)
    assert beyond.status_code == 404
    sent = client.post(f"/api/broadcasts/{draft_id}/send", json={}, headers=commander)
    assert sent.status_code == 200 and sent.json()["status"] == "scheduled", sent.text
    asyncio.run(worker(_Recorder(), database_url).run_once())
    shown = client.get(f"/api/broadcasts/{draft_id}", headers=commander).json()
    assert (shown["status"], shown["targeted"], shown["sent"]) == ("done", 2, 2)
    assert (
        client.put(f"/api/broadcasts/{draft_id}", json=edit, headers=commander).status_code == 409
    )
    assert client.post(f"/api/broadcasts/{draft_id}/send", headers=commander).status_code == 409


def test_a_draft_is_scheduled_for_a_time_or_discarded(client):
    commander = bearer(client, "commander")
    later = (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat()
    first = client.post("/api/broadcasts", json=body(draft=True), headers=commander).json()
    scheduled = client.post(
        f"/api/broadcasts/{first['id']}/send", json={"send_at": later}, headers=commander
    )
    assert scheduled.json()["status"] == "scheduled"
    assert datetime.fromisoformat(scheduled.json()["send_at"]) == datetime.fromisoformat(later)
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    second = client.post("/api/broadcasts", json=body(draft=True), headers=commander).json()
    late = client.post(
        f"/api/broadcasts/{second['id']}/send", json={"send_at": past}, headers=commander
    )
    assert late.status_code == 422
    unknown = client.post(
        f"/api/broadcasts/{second['id']}/send", json={"when": "now"}, headers=commander
    )
    assert unknown.status_code == 422
    discarded = client.post(f"/api/broadcasts/{second['id']}/cancel", headers=commander)
    assert discarded.json()["status"] == "cancelled"
    assert client.get("/api/broadcasts?status=draft", headers=commander).json()["total"] == 0
    own = client.post("/api/broadcasts", json=body(draft=True), headers=bearer(client, "officer_a"))
    wider = body(audience={"communities": [A, B]})  # an officer's draft stays in her community
    assert (
        client.put(
            f"/api/broadcasts/{own.json()['id']}", json=wider, headers=bearer(client, "officer_a")
        ).status_code
        == 403
    )
    officer_b = bearer(client, "officer_b")  # not her community: like a missing one
    assert (
        client.put(f"/api/broadcasts/{first['id']}", json=body(), headers=officer_b).status_code
        == 404
    )


def test_list_is_paginated_and_scoped(client):
    commander, officer_a = bearer(client, "commander"), bearer(client, "officer_a")
    for n in range(3):
        client.post("/api/broadcasts", json=body(title=f"提醒{n}"), headers=commander)
    client.post("/api/broadcasts", json=body(audience={"communities": [B]}), headers=commander)
    page = client.get("/api/broadcasts", params={"limit": 2}, headers=commander).json()
    assert (page["total"], len(page["items"]), page["limit"]) == (4, 2, 2)
    rest = client.get("/api/broadcasts", params={"limit": 2, "offset": 2}, headers=commander)
    assert len(rest.json()["items"]) == 2
    mine = client.get("/api/broadcasts", headers=officer_a).json()
    assert mine["total"] == 3 and all(i["audience"]["communities"] == [A] for i in mine["items"])


def test_preview_shows_the_template_and_the_text(client):
    shown = client.get(
        "/api/broadcasts/preview",
        params={"topic": "weather", "title": "台风预警", "text": "请减少外出。"},
        headers=bearer(client, "officer_a"),
    )
    assert shown.status_code == 200
    assert "预警类型：灾害天气" in shown.json()["template"]
    assert shown.json()["text"].startswith("【灾害天气】台风预警\n请减少外出。")
    bad = client.get(
        "/api/broadcasts/preview",
        params={"topic": "nope", "title": "x", "text": "y"},
        headers=bearer(client, "officer_a"),
    )
    assert bad.status_code == 422


def test_officers_send_to_their_own_community_only(client):
    officer_a = bearer(client, "officer_a")
    assert client.post("/api/broadcasts", json=body(), headers=officer_a).status_code == 200
    for audience in ({"communities": [B]}, {"district": True}, {"streets": ["骆驼街道"]}):
        refused = client.post("/api/broadcasts", json=body(audience=audience), headers=officer_a)
        assert refused.status_code == 403, audience
    trainer = bearer(client, "trainer")
    assert client.post("/api/broadcasts", json=body(), headers=trainer).status_code == 403


@pytest.mark.parametrize(
    "changes",
    [
        {"topic": "lottery"},
        {"title": "长" * 65},
        {"text": "长" * 601},
        {"title": ""},
        {"send_at": "2020-01-01T00:00:00+08:00"},
        {"send_at": (datetime.now() + timedelta(hours=1)).isoformat()},  # no time zone
        {"audience": {}},
        {"audience": {"communities": ["不存在社区"]}},
        {"audience": {"reported": {"category": "fraud_suspicion", "days": 0}}},
        {"audience": {"communities": [A], "everyone": True}},
        {"extra": 1},
    ],
)
def test_bad_input_is_a_422(client, changes):
    answer = client.post(
        "/api/broadcasts", json=body(**changes), headers=bearer(client, "commander")
    )
    assert answer.status_code == 422, answer.text


def test_pause_resume_cancel_over_http(client):
    commander = bearer(client, "commander")
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    broadcast_id = client.post(
        "/api/broadcasts", json=body(send_at=later), headers=commander
    ).json()["id"]
    base = f"/api/broadcasts/{broadcast_id}"
    assert client.post(f"{base}/pause", headers=commander).json()["status"] == "paused"
    assert client.post(f"{base}/pause", headers=commander).status_code == 409
    assert client.post(f"{base}/resume", headers=commander).json()["status"] == "scheduled"
    assert client.post(f"{base}/cancel", headers=commander).json()["status"] == "cancelled"
    assert client.post(f"{base}/resume", headers=commander).status_code == 409
    officer_b = bearer(client, "officer_b")
    assert client.post(f"{base}/cancel", headers=officer_b).status_code == 404


def test_job_events_on_wechat_update_the_figures(wechat, client, database_url):
    make_resident("o-a1", A)
    make_resident("o-a2", A)
    commander = bearer(client, "commander")
    broadcast_id = client.post("/api/broadcasts", json=body(), headers=commander).json()["id"]
    asyncio.run(worker(_Recorder(), database_url).run_once())
    with db.session_scope() as session:
        msgid = (
            session.execute(select(BroadcastDelivery.wechat_msgid).order_by(BroadcastDelivery.id))
            .scalars()
            .first()
        )
    event = xml_message(
        "o-a1",
        "event",
        {"Event": "TEMPLATESENDJOBFINISH", "MsgID": int(msgid), "Status": "failed:user block"},
    )
    for _ in range(2):  # WeChat retries: the same result, recorded once
        assert wechat.post(event).text == "success"
    shown = client.get(f"/api/broadcasts/{broadcast_id}", headers=commander).json()
    assert (shown["sent"], shown["failed"]) == (1, 1)
    assert shown["failed_by_reason"] == {"模板消息未送达：failed:user block": 1}
    malformed = xml_message(
        "o-a1", "event", {"Event": "TEMPLATESENDJOBFINISH", "MsgID": "12ab", "Status": "x"}
    )
    assert wechat.post(malformed).status_code == 400  # signed, but MsgID is not a number


def test_mass_job_event_and_the_stand_in_through_wechatpy(wechat, client, database_url):
    """The real adapter (wechatpy) against the SIMULATED WeChat: community tags are
    synced, each community gets one mass send, the others template messages."""
    make_resident("o-a1", A)
    make_resident("o-a2", A)
    make_resident("o-b1", B)
    make_resident("o-home")  # no community: a template message
    standin = WeChatStandIn("wx-sim", "sim-secret")
    fake_wechat = FastAPI()
    fake_wechat.include_router(simulator.router)
    fake_wechat.state.wechat_standin = standin
    with LiveServer(fake_wechat) as server:
        api = WeChatApi(
            "wx-sim",
            "sim-secret",
            base_url=f"{server.url}/simulator/wechat-api",
            storage=SqlTokenStorage(database_url),
        )
        commander = bearer(client, "commander")
        created = client.post(
            "/api/broadcasts", json=body(audience={"district": True}), headers=commander
        )
        loop = worker(WeChatMessenger(api), database_url, mass_send=True)
        asyncio.run(loop.run_once())
        asyncio.run(loop.run_once())
    assert standin.tag_members("jmt-" + A) == {"o-a1", "o-a2"}
    assert sorted(m.recipients for m in standin.mass_sends) == [("o-a1", "o-a2"), ("o-b1",)]
    assert [t.touser for t in standin.templates] == ["o-home"]
    assert standin.templates[0].data["keyword1"]["value"] == "电诈预警"
    mass = standin.mass_sends[0]
    finished = xml_message(
        "mphelper",
        "event",
        {
            "Event": "MASSSENDJOBFINISH",
            "MsgID": mass.msg_id,
            "Status": "send success",
            "TotalCount": 2,
            "FilterCount": 2,
            "SentCount": 2,
            "ErrorCount": 0,
        },
    )
    assert wechat.post(finished).text == "success"
    shown = client.get(f"/api/broadcasts/{created.json()['id']}", headers=commander).json()
    assert (shown["sent"], shown["status"]) == (4, "done")
    job = next(j for j in shown["mass_jobs"] if j["msg_id"] == str(mass.msg_id))
    assert (job["status"], job["total"], job["sent"], job["errors"]) == ("send success", 2, 2, 0)


class _Recorder:
    """A messenger that accepts every template (ids 1, 2, …) and text."""

    def __init__(self) -> None:
        self.sent = 0

    def send_text(self, openid: str, text: str) -> None:
        self.sent += 1

    def send_template(self, openid: str, template_id: str, data: dict) -> str:
        self.sent += 1
        return str(self.sent)


def test_a_mass_job_event_with_its_structured_results_is_read(wechat, client):
    """WeChat's MASSSENDJOBFINISH carries CopyrightCheckResult / ArticleUrlResult with
    elements inside: those two are skipped, anything else nested is still refused."""
    xml = (
        "<xml><ToUserName><![CDATA[gh_jmt]]></ToUserName>"
        "<FromUserName><![CDATA[mphelper]]></FromUserName><CreateTime>1764900000</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event>"
        "<MsgID>1000001625</MsgID><Status><![CDATA[err(30003)]]></Status>"
        "<TotalCount>0</TotalCount><FilterCount>0</FilterCount><SentCount>0</SentCount>"
        "<ErrorCount>0</ErrorCount><CopyrightCheckResult><Count>2</Count><ResultList><item>"
        "<ArticleIdx>1</ArticleIdx><UserDeclareState>0</UserDeclareState></item></ResultList>"
        "<CheckState>2</CheckState></CopyrightCheckResult>"
        "<ArticleUrlResult><Count>1</Count><ResultList><item><ArticleIdx>1</ArticleIdx>"
        "<ArticleUrl><![CDATA[https://mp.weixin.qq.com/s?x]]></ArticleUrl></item></ResultList>"
        "</ArticleUrlResult></xml>"
    )
    assert wechat.post(xml).text == "success"
    nested_elsewhere = xml.replace("<SentCount>0</SentCount>", "<SentCount><a>0</a></SentCount>")
    assert wechat.post(nested_elsewhere).status_code == 400
