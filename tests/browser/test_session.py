"""Staying signed in as DingTalk's in-app browser does it (issue 12), in real Chromium.

DingTalk opens a notification's case link in an in-app browser that keeps cookies but
not `sessionStorage` from one opening to the next. A new Playwright context created from
the first context's `storage_state()` is exactly that: its cookies survive, its
sessionStorage starts empty. Screenshots go to tests/browser/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from casework import cases
from tests.browser.conftest import ARTIFACTS, PASSWORD, Gateway
from tests.browser.test_console import log_in

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) with the reason
    Page, expect = object, None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
SUMMARY = "【噪音投诉】楼上装修到深夜"


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def contexts(browser: Any, gateway: Gateway) -> Iterator[Any]:
    """new_context(**options) for this test, each closed afterwards, with its page's
    script errors collected in `page.js_errors`."""
    opened: list[Any] = []

    def new_page(**options: Any) -> Page:
        context = browser.new_context(base_url=gateway.url, locale="zh-CN", **options)
        context.set_default_timeout(15_000)
        opened.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.js_errors = errors  # type: ignore[attr-defined]
        return page

    yield new_page
    for context in opened:
        context.close()


def noise_case(gateway: Gateway) -> int:
    with gateway.session() as session:
        case = cases.open_case(
            session=session,
            sender_id="o-browser-session",
            category="noise_complaint",
            priority="normal",
            reason="resident_request",
            summary=SUMMARY,
        )
        case.street, case.community = "骆驼街道", "万景社区"
        session.flush()
        return int(case.id)


def test_a_case_link_opened_in_a_fresh_in_app_browser_keeps_the_session(
    gateway: Gateway, contexts: Any
) -> None:
    gateway.officer("li", "李警官", community="万景社区")
    case_id = noise_case(gateway)
    desk = contexts(viewport={"width": 1366, "height": 900})
    log_in(desk, "li")
    expect(desk).to_have_url(f"{gateway.url}/console")
    expect(desk.locator("#me")).to_contain_text("李警官")
    # The console keeps no credential a script can read: no token in sessionStorage,
    # the session cookie is HttpOnly.
    assert desk.evaluate("sessionStorage.length") == 0
    assert "jmt_session" not in desk.evaluate("document.cookie")
    [cookie] = [c for c in desk.context.cookies() if c["name"] == "jmt_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0

    # The DingTalk link, opened later in a new in-app browser on the phone.
    phone = contexts(viewport=PHONE, storage_state=desk.context.storage_state())
    phone.goto(f"/console/cases/{case_id}")
    expect(phone.locator("#case-summary")).to_have_text(SUMMARY)
    expect(phone).to_have_url(f"{gateway.url}/console/cases/{case_id}")
    assert phone.evaluate("sessionStorage.length") == 0
    shot(phone, "session-01-case-from-dingtalk-link")
    # It can act, too: claiming sends the CSRF token the page fetched for itself.
    phone.click("#claim")
    expect(phone.locator("#claim")).to_have_text("已由我处理")

    # Lost phone: 退出所有设备 on the desk computer ends every session.
    desk.click("#logout-all")
    dialog = desk.locator("#logout-all-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("包括本机")
    shot(desk, "session-02-logout-all-confirm")
    desk.click("#logout-all-cancel")
    expect(dialog).to_be_hidden()
    desk.click("#logout-all")
    desk.click("#logout-all-confirm")
    expect(desk).to_have_url(f"{gateway.url}/console/login")

    # The phone's next opening of the link goes to the login page, and back to the case.
    phone.goto(f"/console/cases/{case_id}")
    expect(phone).to_have_url(re.compile(rf"/console/login\?next=%2Fconsole%2Fcases%2F{case_id}$"))
    shot(phone, "session-03-signed-out-everywhere")
    log_in_here(phone, "li")
    expect(phone).to_have_url(f"{gateway.url}/console/cases/{case_id}")
    expect(phone.locator("#case-summary")).to_have_text(SUMMARY)
    assert desk.js_errors == [] and phone.js_errors == []


def log_in_here(page: Page, username: str) -> None:
    """Fill the login form the page is on (keeps its ?next=)."""
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")


def test_logout_ends_this_browser_only(gateway: Gateway, contexts: Any) -> None:
    gateway.officer("li", "李警官", community="万景社区")
    case_id = noise_case(gateway)
    phone, laptop = contexts(viewport=PHONE), contexts()
    log_in(phone, "li")
    log_in(laptop, "li")
    expect(phone.locator("#me")).to_contain_text("李警官")
    expect(laptop.locator("#me")).to_contain_text("李警官")
    kept = phone.context.storage_state()  # the cookie as it was before the logout

    phone.click("#logout")
    expect(phone).to_have_url(f"{gateway.url}/console/login")
    assert not [c for c in phone.context.cookies() if c["name"] == "jmt_session"]
    # Someone who copied the cookie before the logout gets nothing with it.
    copy = contexts(storage_state=kept)
    copy.goto(f"/console/cases/{case_id}")
    expect(copy).to_have_url(re.compile(r"/console/login\?next="))

    laptop.goto(f"/console/cases/{case_id}")
    expect(laptop.locator("#case-summary")).to_have_text(SUMMARY)
    assert phone.js_errors == [] and laptop.js_errors == []
