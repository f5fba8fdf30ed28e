"""What leaves us: no raw phone, ID-card or bank-card number of a resident reaches the
DingTalk group or the governance platform (their stand-ins, over real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from stdnum import luhn
from stdnum.cn import ric

from casework import tickets
from casework.models import Case, Ticket
from gateway.dispatcher import build_notification
from gateway.simulator import partners
from integrations.governance import GovernanceClient
from integrations.notify import DingTalkRobot
from tests.live_server import LiveServer

DINGTALK_SECRET = "SEC-outbound-test"
GOVERNANCE_SECRET = "gov-outbound-test"
PHONE = "13912345678"
ID_CARD = "33021119900307002" + ric.calc_check_digit("33021119900307002" + "0")
BANK_CARD = "622202123456789012" + luhn.calc_check_digit("622202123456789012")
OFFICER_MOBILE = "13800000002"
RAW = (PHONE, ID_CARD, BANK_CARD)
WORDS = f"骗子让我转到卡{BANK_CARD}，我的身份证{ID_CARD}，电话{PHONE}"


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[FastAPI, LiveServer]]:
    app = FastAPI()
    app.include_router(partners.router)
    app.state.settings = SimpleNamespace(
        dingtalk_secret=DINGTALK_SECRET, governance_secret=GOVERNANCE_SECRET
    )
    with LiveServer(app) as server:
        yield app, server


def _spaced(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def test_the_numbers_are_valid_so_nothing_passes_by_looking_wrong():
    assert ric.is_valid(ID_CARD) and luhn.is_valid(BANK_CARD)


def test_dingtalk_gets_a_masked_summary_and_the_officers_mobile(live):
    app, server = live
    app.state.dingtalk_standin = partners.DingTalkStandIn(DINGTALK_SECRET)
    case = Case(
        id=5,
        category="fraud_suspicion",
        priority="urgent",
        summary=f"【涉诈】已转账｜20000元：{WORDS}（{_spaced(BANK_CARD)}）",
        location=f"骆驼街道万景社区，联系{PHONE}",
        details={"scammer_accounts": [BANK_CARD], "first_message": WORDS, "phone": PHONE},
        street=None,
        community=None,
    )
    notification = build_notification(case, ["张警官"], [OFFICER_MOBILE], "http://console.test")
    robot = DingTalkRobot(
        f"{server.url}/simulator/dingtalk/robot/send?access_token=t", DINGTALK_SECRET, retries=0
    )
    robot.send(notification)
    [message] = app.state.dingtalk_standin.messages
    sent = message.title + message.text
    for number in RAW:
        assert number not in sent.replace(" ", ""), number
    assert "6222" in sent and "****" in sent  # masked, not dropped: officers see a hint
    assert f"@{OFFICER_MOBILE}" in message.text and message.at_mobiles == [OFFICER_MOBILE]
    assert "http://console.test/console/cases/5" in message.text
    assert "涉诈" in message.title


def test_the_governance_platform_gets_what_it_acts_on_and_no_numbers(live):
    app, server = live
    app.state.governance_standin = partners.GovernanceStandIn(GOVERNANCE_SECRET)
    ticket = Ticket(
        id=9,
        kind="noise",
        sender_id="o-resident-openid",
        summary=f"【噪音投诉】万景社区3幢｜装修：{WORDS}",
        location="骆驼街道万景社区3幢",
        street="骆驼街道",
        community="万景社区",
        details={
            "noise_source": "装修",
            "noise_ongoing": True,
            "event_time": "每天晚上十点",
            "first_message": WORDS,
            "scammer_phones": [PHONE],
            "scammer_accounts": [BANK_CARD],
            "note": f"居民电话{PHONE}",
        },
    )
    GovernanceClient(f"{server.url}/simulator/governance/tickets", GOVERNANCE_SECRET).send_ticket(
        tickets.payload(ticket)
    )
    [received] = app.state.governance_standin.tickets
    payload = received["payload"]
    flat = repr(payload)
    for number in RAW:
        assert number not in flat, number
    assert "o-resident-openid" not in flat
    assert payload["location"] == "骆驼街道万景社区3幢"
    assert (payload["kind"], payload["kind_label"], payload["community"]) == (
        "noise",
        "噪音",
        "万景社区",
    )
    assert payload["details"] == {
        "noise_source": "装修",
        "noise_ongoing": True,
        "event_time": "每天晚上十点",
        "note": "居民电话139****5678",
    }
    assert payload["summary"].startswith("【噪音投诉】万景社区3幢｜装修：骗子让我转到卡6222")


def test_only_the_rung_officers_mobiles_stay_whole():
    from integrations.notify import Notification, markdown_text

    text = f"- 摘要：居民{PHONE}\n@{OFFICER_MOBILE}"
    urgent = Notification(1, "t", text, "", urgent=True, mobiles=(OFFICER_MOBILE,))
    quiet = Notification(1, "t", text, "", urgent=False, mobiles=(OFFICER_MOBILE,))
    assert f"@{OFFICER_MOBILE}" in markdown_text(urgent)
    assert PHONE not in markdown_text(urgent)
    assert OFFICER_MOBILE not in markdown_text(quiet)  # nobody is rung: nothing to keep


def test_a_number_cut_by_the_summary_limit_does_not_leak():
    # The summary is cut to 200 characters: a card straddling the cut must be masked
    # before it is cut, or its first digits would pass as no card at all.
    summary = "甲" * 190 + BANK_CARD
    case = Case(id=6, category="other", priority="normal", summary=summary, location=None)
    text = build_notification(case, [], [], "http://console.test").text
    assert BANK_CARD[:10] not in text and "6222" in text
