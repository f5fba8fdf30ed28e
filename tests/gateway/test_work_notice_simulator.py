"""The development wiring of personal work notifications (issue 12): the gateway in
development, with the simulator mounted and served over real HTTP; the dispatcher's
adapter built from the development settings (`work_notice_from_settings`) fetches a token
from the SIMULATED DingTalk API and each bound officer's notification shows up in
`GET /simulator/api/dingtalk/work-notices`, masked and ending with the reply hint."""

from __future__ import annotations

import asyncio
import dataclasses

import requests

from casework import accounts, db
from casework.cases import open_case
from gateway.app import create_app
from gateway.dispatcher import Dispatcher
from integrations.dingtalk_work_notice import DingTalkWorkNotice, work_notice_from_settings
from tests.gateway.conftest import gateway_settings
from tests.live_server import LiveServer


def test_a_case_reaches_each_bound_officer_in_the_simulator(database_url, monkeypatch):
    settings = dataclasses.replace(
        gateway_settings(database_url, monkeypatch), simulator_enabled=True
    )
    app = create_app(settings, start_outbox=False, probe_actions=False)
    with db.session_scope() as session:
        for name, staff in (("zhang", "dt-zhang"), ("li", None)):
            accounts.create_user(
                session=session,
                username=name,
                password="correct-horse",
                role="officer",
                community="万景社区",
                dingtalk_id=staff,
            )
        case_id = open_case(
            session=session,
            sender_id="o-sim-1",
            category="noise_complaint",
            priority="normal",
            reason="test",
            summary="楼上装修，联系电话 13812345678",
            details={"street": "骆驼街道", "community": "万景社区"},
        ).id
    with LiveServer(app) as live:
        api = f"{live.url}/simulator/dingtalk"
        work = work_notice_from_settings(dataclasses.replace(settings, dingtalk_api_url=api))
        assert isinstance(work, DingTalkWorkNotice)
        dispatcher = Dispatcher(
            database_url=database_url,
            notifier=None,
            personal=work,
            governance=None,
            console_url="http://console.test",
        )
        asyncio.run(dispatcher.run_once())
        received = requests.get(f"{live.url}/simulator/api/dingtalk/work-notices", timeout=5)
    [notice] = received.json()
    assert notice["userid"] == "dt-zhang" and notice["msgtype"] == "action_card"
    assert notice["single_url"] == f"http://console.test/console/cases/{case_id}"
    assert "13812345678" not in notice["text"] and "138****5678" in notice["text"]
    assert notice["text"].endswith(f"发送“#{case_id} 回复内容”。")
    assert app.state.work_notice_standin.token_fetches == 1
