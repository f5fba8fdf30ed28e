"""预警推送 in the console (issue 11), in real headless Chromium against the real gateway
and the SIMULATED WeChat API: a commander composes a warning for one community, sees how
it looks in WeChat, sends it, and follows its figures until the resident has it; an
officer can address only their own community. Screenshots in tests/browser/artifacts/."""

from __future__ import annotations

import httpx
import pytest

from casework import residents
from tests.browser.conftest import Gateway
from tests.browser.test_console import log_in, shot, wait_for

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) with the reason
    Page, expect = object, None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.browser

RESIDENT = "o-browser-broadcast-1"


def test_a_commander_composes_previews_sends_and_follows_a_warning(
    gateway: Gateway, page: Page
) -> None:
    gateway.officer("boss", "值班指挥长", role="commander")
    gateway.resident_says(RESIDENT, "你好")  # a WeChat resident, active in the last 48 h
    with gateway.session() as session:
        residents.set_profile(session=session, openid=RESIDENT, community="万景社区")

    log_in(page, "boss")
    page.click("nav >> text=预警推送")
    page.select_option("#bc-topic", "fraud")
    page.fill("#bc-title", "警惕冒充客服退款诈骗")
    page.fill("#bc-text", "近期有人冒充电商客服以退款为名诱导转账。客服不会要求您共享屏幕或转账。")
    page.check('input[name="aud-kind"][value="communities"]')
    page.fill("#aud-communities", "万景社区")
    page.click("#bc-preview")
    expect(page.locator("#preview-text")).to_contain_text("警惕冒充客服退款诈骗")
    expect(page.locator("#preview-template")).to_contain_text("冒充电商客服")
    shot(page, "11-broadcast-compose")
    page.click("#bc-send")
    first = page.locator("#bc-body tr").first
    expect(first).to_contain_text("警惕冒充客服退款诈骗")
    expect(page.locator("#bc-detail")).to_be_visible()
    expect(page.locator('#bc-figures .tile[data-metric="targeted"] .value')).to_have_text("1")

    def delivered() -> bool:
        inbox = httpx.get(f"{gateway.url}/simulator/api/inbox", params={"openid": RESIDENT})
        return any("冒充客服" in m["content"] for m in inbox.json())

    wait_for(delivered, timeout=30, what="the warning in the resident's WeChat")
    expect(page.locator('#bc-figures .tile[data-metric="sent"] .value')).to_have_text(
        "1", timeout=30_000
    )
    shot(page, "12-broadcast-figures")
    page.click("nav >> text=数据统计")
    tile = page.locator('.tile[data-metric="warnings"]')
    expect(tile.locator(".value")).to_have_text("100.0%")
    expect(tile.locator(".sub")).to_contain_text("送达 1 / 目标 1")
    assert page.js_errors == []


def test_an_officer_can_only_address_their_own_community(gateway: Gateway, page: Page) -> None:
    gateway.officer("chen", "陈警官", community="万景社区")
    log_in(page, "chen")
    page.click("nav >> text=预警推送")
    expect(page.locator("#aud-communities")).to_have_value("万景社区")
    expect(page.locator('input[name="aud-kind"][value="district"]')).to_be_disabled()
    expect(page.locator("#aud-communities")).to_have_attribute("readonly", "")
    assert page.js_errors == []


def test_a_commander_saves_a_draft_edits_it_and_sends_it(gateway: Gateway, page: Page) -> None:
    """草稿: a warning prepared ahead is saved unsent, loaded back into the form, changed,
    and sent from there; the queue only delivers it then."""
    gateway.officer("boss", "值班指挥长", role="commander")
    gateway.resident_says(RESIDENT, "你好")
    with gateway.session() as session:
        residents.set_profile(session=session, openid=RESIDENT, community="万景社区")

    log_in(page, "boss")
    page.click("nav >> text=预警推送")
    page.select_option("#bc-topic", "weather")
    page.fill("#bc-title", "台风预警（待定稿）")
    page.fill("#bc-text", "台风预计明晚登陆，请提前做好防范。")
    page.check('input[name="aud-kind"][value="communities"]')
    page.fill("#aud-communities", "万景社区")
    page.click("#bc-save-draft")
    first = page.locator("#bc-body tr").first
    expect(first).to_contain_text("台风预警（待定稿）")
    expect(first).to_contain_text("草稿")
    expect(page.locator("#bc-detail-status")).to_have_text("草稿")
    expect(page.locator('#bc-figures .tile[data-metric="targeted"] .value')).to_have_text("0")
    expect(page.locator("#bc-title")).to_have_value("")  # the form is free again

    page.click("#bc-edit")
    expect(page.locator("#bc-editing")).to_be_visible()
    expect(page.locator("#bc-title")).to_have_value("台风预警（待定稿）")
    expect(page.locator("#aud-communities")).to_have_value("万景社区")
    page.fill("#bc-title", "台风“海葵”预警")
    page.click("#bc-send")
    expect(first).to_contain_text("台风“海葵”预警")
    expect(page.locator("#bc-detail-status")).not_to_have_text("草稿")
    expect(page.locator("#bc-editing")).to_be_hidden()
    expect(page.locator("#bc-body tr")).to_have_count(1)  # the draft itself was sent

    def delivered() -> bool:
        inbox = httpx.get(f"{gateway.url}/simulator/api/inbox", params={"openid": RESIDENT})
        return any("海葵" in m["content"] for m in inbox.json())

    wait_for(delivered, timeout=30, what="the edited draft in the resident's WeChat")
    assert page.js_errors == []
