"""The queue page (issue 12) in real headless Chromium against the real gateway: filters,
search, pages, unread badges, keyboard shortcuts and the alert for a new urgent case at
1366×900; the list as cards at 390×844. Screenshots go to tests/browser/artifacts/.

Sound and desktop notifications cannot be heard or seen by a test: an init script stands
in for `Notification` and counts the oscillators WebAudio starts, and the page exposes
its own counter (`<body data-urgent-alerts>`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest

from casework import cases
from casework.conversations import record_inbound
from casework.models import Case
from tests.browser.conftest import ARTIFACTS, Gateway
from tests.browser.test_console import log_in, wait_for

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) with the reason
    Page, expect = object, None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.browser

WANJING, QINGSHUI = "万景社区", "清水湖社区"
KEYS = itertools.count(1)

# Stands in for what a test cannot observe: the desktop notification and the tone.
OBSERVE_ALERTS = """
window.__notices = [];
window.__tones = 0;
class StandInNotification {
  constructor(title, options) { window.__notices.push({ title, body: options && options.body }); }
}
StandInNotification.permission = "granted";
StandInNotification.requestPermission = () => Promise.resolve("granted");
window.Notification = StandInNotification;
if (window.AudioContext) {
  const Real = window.AudioContext;
  window.AudioContext = class extends Real {
    createOscillator() { window.__tones += 1; return super.createOscillator(); }
  };
}
"""


def shot(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def a_case(
    gateway: Gateway,
    openid: str,
    *,
    category: str = "other",
    priority: str = "normal",
    community: str = WANJING,
    summary: str | None = None,
) -> int:
    place = {"street": "骆驼街道", "community": community}
    with gateway.session() as session:
        case = cases.open_case(
            session=session,
            sender_id=openid,
            category=category,
            priority=priority,
            reason="resident_request",
            summary=summary or f"【测试】{openid}",
            details=place,
        )
        case.street, case.community = place["street"], community
        session.flush()
        return int(case.id)


def resident_wrote(gateway: Gateway, openid: str, text: str) -> None:
    with gateway.session() as session:
        record_inbound(
            session=session,
            openid=openid,
            dedupe_key=f"browser-queue-{next(KEYS)}",
            msg_type="text",
            content=text,
        )


def row(page: Page, case_id: int) -> Any:
    return page.locator(f'#queue-body tr[data-case-id="{case_id}"]')


@pytest.fixture
def desk_page(browser: Any, gateway: Gateway) -> Iterator[Page]:
    """A 1366×900 tab whose notifications and tones are observed."""
    context = browser.new_context(
        base_url=gateway.url, locale="zh-CN", viewport={"width": 1366, "height": 900}
    )
    context.add_init_script(OBSERVE_ALERTS)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.js_errors = errors
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def phone_page(browser: Any, gateway: Gateway) -> Iterator[Page]:
    context = browser.new_context(
        base_url=gateway.url,
        locale="zh-CN",
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.js_errors = errors
    try:
        yield tab
    finally:
        context.close()


def test_filters_search_pages_unread_and_shortcuts_on_the_desktop(
    gateway: Gateway, desk_page: Page
) -> None:
    page = desk_page
    gateway.officer("zhang", "张警官", community=WANJING)
    ordinary = [a_case(gateway, f"o-q-{n}") for n in range(52)]
    fight = a_case(gateway, "o-q-fight", category="emergency", priority="urgent")
    noise = a_case(gateway, "o-q-noise", category="noise_complaint", summary="【噪音】楼上装修")
    drugs = a_case(gateway, "o-q-drugs", summary="【其他】群众反映可疑情况")
    elsewhere = a_case(gateway, "o-q-far", community=QINGSHUI, summary="【其他】假药线索")
    resident_wrote(gateway, "o-q-drugs", "楼下小卖部偷偷卖假药")
    resident_wrote(gateway, "o-q-drugs", "很多老人买了")
    visible = len(ordinary) + 3

    log_in(page, "zhang")
    expect(page).to_have_url(f"{gateway.url}/console")
    rows = page.locator("#queue-body tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#queue-page")).to_have_text(f"第 1 / 2 页 · 共 {visible} 件")
    expect(page.locator("#queue-stats")).to_contain_text(f"共 {visible} 件")
    assert rows.first.get_attribute("data-case-id") == str(fight)  # urgent first
    expect(page.locator("#queue-prev")).to_be_disabled()
    # The filter bar's labels come from the vocabulary.
    expect(page.locator('.chip[data-filter="mine"]')).to_have_text("我的")
    expect(page.locator('.chip[data-filter="unclaimed"]')).to_have_text("待认领")
    expect(page.locator('.chip[data-filter="urgent"]')).to_have_text("紧急")
    expect(page.locator("#queue-category option").first).to_have_text("分类")
    expect(page.locator("#queue-community option").first).to_have_text("社区")
    # Unread: the resident's two messages on a case never opened.
    badge = row(page, drugs).locator(".unread-badge")
    page.click("#queue-next")
    expect(rows).to_have_count(visible - 50)
    expect(page.locator("#queue-page")).to_have_text(f"第 2 / 2 页 · 共 {visible} 件")
    expect(page.locator("#queue-next")).to_be_disabled()
    expect(page).to_have_url(re.compile(r"\?offset=50$"))
    page.click("#queue-prev")
    expect(rows).to_have_count(50)

    # Filters narrow on the server; the address bar remembers them.
    page.click('.chip[data-filter="urgent"]')
    expect(rows).to_have_count(1)
    expect(row(page, fight)).to_be_visible()
    expect(page.locator("#queue-pager")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"\?urgent=1$"))
    page.click('.chip[data-filter="urgent"]')
    page.select_option("#queue-category", "noise_complaint")
    expect(rows).to_have_count(1)
    expect(row(page, noise)).to_be_visible()
    page.select_option("#queue-category", "")
    page.select_option("#queue-community", QINGSHUI)
    expect(page.locator("#queue-empty")).to_have_text("没有符合条件的案件。")
    page.select_option("#queue-community", "")
    expect(rows).to_have_count(50)

    # Search: the resident's own words find the case; another community's never appears.
    page.fill("#queue-search", "假药")
    expect(rows).to_have_count(1)
    expect(row(page, drugs)).to_be_visible()
    expect(row(page, elsewhere)).to_have_count(0)
    expect(badge).to_have_text("2")
    expect(row(page, drugs)).to_have_class(re.compile(r"\bhas-unread\b"))
    shot(page, "queue12-desktop-search-unread")

    # Opening the case reads it: back in the queue (the search kept), no badge.
    row(page, drugs).locator("a").click()
    expect(page).to_have_url(f"{gateway.url}/console/cases/{drugs}")
    expect(page.locator("#transcript")).to_contain_text("卖假药")
    page.go_back()
    expect(page.locator("#queue-search")).to_have_value("假药")
    expect(row(page, drugs)).to_be_visible()
    expect(row(page, drugs).locator(".unread-badge")).to_have_count(0)
    page.fill("#queue-search", "")
    expect(rows).to_have_count(50)

    # Keyboard: j/k move, Enter opens, / searches, u toggles 待认领, ? lists the shortcuts.
    page.locator("h1").click()  # focus on the page, not a control
    page.keyboard.press("j")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bkbd-selected\b"))
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(rows.nth(1)).to_have_class(re.compile(r"\bkbd-selected\b"))
    expect(page.locator("tr.kbd-selected")).to_have_count(1)
    second = rows.nth(1).get_attribute("data-case-id")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{gateway.url}/console/cases/{second}")
    page.go_back()
    expect(rows).to_have_count(50)
    page.keyboard.press("/")
    expect(page.locator("#queue-search")).to_be_focused()
    page.keyboard.type("u")  # typing in the box is text, not a shortcut
    expect(page.locator('.chip[data-filter="unclaimed"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    page.fill("#queue-search", "")
    page.keyboard.press("Escape")
    expect(page.locator("#queue-search")).not_to_be_focused()
    expect(rows).to_have_count(50)
    page.keyboard.press("u")
    expect(page.locator('.chip[data-filter="unclaimed"]')).to_have_attribute("aria-pressed", "true")
    expect(page).to_have_url(re.compile(r"\?unclaimed=1$"))
    page.keyboard.press("?")
    expect(page.locator("#queue-help")).to_be_visible()
    expect(page.locator("#queue-help")).to_contain_text("打开选中的案件")
    shot(page, "queue12-desktop-shortcuts")
    page.keyboard.press("Escape")
    expect(page.locator("#queue-help")).to_be_hidden()
    page.keyboard.press("u")
    expect(page.locator('.chip[data-filter="unclaimed"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    assert page.js_errors == []


def test_a_new_urgent_case_sounds_notifies_and_can_be_muted(
    gateway: Gateway, desk_page: Page
) -> None:
    page = desk_page
    gateway.officer("zhang", "张警官", community=WANJING)
    already = a_case(gateway, "o-alert-old", category="emergency", priority="urgent")
    log_in(page, "zhang")
    expect(row(page, already)).to_be_visible()
    expect(page.locator("#live")).to_have_text("实时")
    page.locator("h1").click()  # a gesture: the page may make sound from now on
    expect(page.locator("#queue-mute")).to_contain_text("紧急提醒：开")

    # An ordinary case arrives: it shows, nothing sounds.
    calm = a_case(gateway, "o-alert-calm")
    expect(row(page, calm)).to_be_visible()
    assert page.evaluate("document.body.dataset.urgentAlerts") == "0"

    # An urgent case arrives through the live stream: banner, tone, notification — once,
    # however often the case changes afterwards (the dispatcher announces it, ...).
    urgent = a_case(gateway, "o-alert-new", category="emergency", priority="urgent")
    expect(page.locator("body")).to_have_attribute("data-urgent-alerts", "1")
    expect(page.locator("body")).to_have_attribute("data-last-urgent-case", str(urgent))
    expect(page.locator("body")).to_have_attribute("data-alert-sound", "played")
    expect(page.locator("#queue-alert")).to_be_visible()
    expect(page.locator("#queue-alert")).to_contain_text(f"#{urgent}")
    expect(row(page, urgent)).to_be_visible()
    assert page.evaluate("window.__tones") > 0
    notices = page.evaluate("window.__notices")
    assert [n["title"] for n in notices] == [f"新的紧急案件 #{urgent}"]
    shot(page, "queue12-desktop-urgent-alert")
    with gateway.session() as session:  # the case changes again: no second alert
        session.get(Case, urgent).summary = "【紧急警情】更新"
    expect(row(page, urgent)).to_contain_text("更新")
    assert page.evaluate("document.body.dataset.urgentAlerts") == "1"

    # Muted: remembered across a reload; the next urgent case shows but stays silent.
    page.click("#queue-mute")
    expect(page.locator("#queue-mute")).to_contain_text("静音")
    page.reload()
    expect(page.locator("#queue-mute")).to_contain_text("静音")
    expect(page.locator("#live")).to_have_text("实时")
    tones_before = page.evaluate("window.__tones")
    quiet = a_case(gateway, "o-alert-quiet", category="emergency", priority="urgent")
    expect(page.locator("body")).to_have_attribute("data-last-urgent-case", str(quiet))
    expect(page.locator("body")).to_have_attribute("data-alert-sound", "muted")
    expect(page.locator("#queue-alert")).to_contain_text(f"#{quiet}")
    assert page.evaluate("window.__notices") == []
    assert page.evaluate("window.__tones") == tones_before
    page.click("#queue-mute")
    expect(page.locator("#queue-mute")).to_contain_text("紧急提醒：开")
    assert page.evaluate("localStorage.getItem('jmtQueueMuted')") is None
    assert page.js_errors == []


def test_on_a_phone_the_queue_is_a_list_of_cards(gateway: Gateway, phone_page: Page) -> None:
    page = phone_page
    gateway.officer("zhang", "张警官", community=WANJING)
    fight = a_case(gateway, "o-phone-fight", category="emergency", priority="urgent",
                   summary="【紧急警情】有人在楼道里打架，声音很大，好像还有人受伤了")  # fmt: skip
    noise = a_case(gateway, "o-phone-noise", category="noise_complaint", summary="【噪音】楼上装修")
    resident_wrote(gateway, "o-phone-noise", "现在还在敲")

    log_in(page, "zhang")
    expect(page).to_have_url(f"{gateway.url}/console")
    card = row(page, fight)
    expect(card).to_be_visible()
    expect(page.locator("#queue thead")).to_be_hidden()
    expect(card).to_have_css("display", "grid")
    expect(row(page, noise).locator(".unread-badge")).to_have_text("1")
    expect(page.locator("#queue-search")).to_be_visible()

    def within_the_screen(locator: Any, min_width: float = 0) -> bool:
        box = locator.bounding_box()
        return bool(box and box["x"] >= 0 and box["x"] + box["width"] <= 390) and (
            box["width"] >= min_width
        )

    # Each card, and the search box above them, fits the phone's width (the layout is
    # polled: the filter bar and the rows arrive in their own time).
    for case_id in (fight, noise):
        wait_for(lambda c=case_id: within_the_screen(row(page, c)), what=f"card {case_id} fits")
    summary = card.locator("td.summary-cell")
    wait_for(lambda: within_the_screen(summary, 250), what="the summary spans the card")
    wait_for(lambda: within_the_screen(page.locator("#queue-search")), what="search fits")
    page.locator('.chip[data-filter="urgent"]').tap()
    expect(page.locator("#queue-body tr")).to_have_count(1)
    shot(page, "queue12-phone-cards")
    page.locator('.chip[data-filter="urgent"]').tap()
    expect(page.locator("#queue-body tr")).to_have_count(2)
    # No keyboard shortcuts on a phone; a tap on a card opens the case.
    page.keyboard.press("j")
    expect(page.locator("tr.kbd-selected")).to_have_count(0)
    row(page, noise).locator("td").nth(1).tap()
    expect(page).to_have_url(f"{gateway.url}/console/cases/{noise}")
    assert page.js_errors == []


def test_the_tickets_page_is_paged_too(gateway: Gateway, desk_page: Page) -> None:
    page = desk_page
    gateway.officer("zhang", "张警官", community=WANJING)
    with gateway.session() as session:
        for n in range(53):
            cases.open_ticket(
                session=session,
                sender_id=f"o-ticket-{n}",
                kind=("noise", "dog", "dispute")[n % 3],
                summary=f"工单 {n}",
                location=f"万景社区{n}幢",
                street="骆驼街道",
                community=WANJING,
            )
    log_in(page, "zhang")
    expect(page).to_have_url(f"{gateway.url}/console")
    page.click("nav >> text=工单")
    rows = page.locator("#tickets-body tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#tickets-page")).to_have_text("第 1 / 2 页 · 共 53 件")
    expect(page.locator("#ticket-stats")).to_contain_text("共 53 件")
    newest = rows.first.get_attribute("data-ticket-id")
    page.click("#tickets-next")
    expect(rows).to_have_count(3)
    expect(page.locator("#tickets-next")).to_be_disabled()
    assert rows.first.get_attribute("data-ticket-id") != newest
    shot(page, "queue12-tickets-page-2")
    page.click("#tickets-prev")
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-ticket-id", newest or "")
    assert page.js_errors == []
