"""Every console page at a phone's 390×844 and a desktop's 1366×900, in real headless
Chromium against the real gateway (see conftest.py): nothing wider than the screen,
nothing clipped by `overflow: hidden`, no Content-Security-Policy violation, and on the
phone the case page's controls — quick replies, reply box, send, claim, transfer,
divert, close — visible within the screen's width and working with a tap.

Screenshots: tests/browser/artifacts/layout-<size>-<page>.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from casework import broadcasts, cases, dissuasion, handling
from casework.broadcast_schemas import AudienceIn
from casework.dissuasion_schemas import LeadIn
from casework.models import User
from tests.browser.conftest import ARTIFACTS, PASSWORD, Gateway
from tests.browser.test_console import open_case
from tests.browser.test_nlu_console import parsed

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) with the reason
    Page, expect = object, None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.browser

SIZES = {"phone": (390, 844), "desktop": (1366, 900)}
RESIDENT = "o-layout-resident"

# Elements whose box clips what is inside it (overflow hidden/clip) while their content
# is larger than the box: content the officer cannot reach. Scrolling boxes are fine.
CLIPPED = """() => {
  const found = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!el.getClientRects().length) continue;  // not rendered
    const style = getComputedStyle(el);
    const clips = (value) => value === "hidden" || value === "clip";
    const wide = clips(style.overflowX) && el.scrollWidth > el.clientWidth + 1;
    const tall = clips(style.overflowY) && el.scrollHeight > el.clientHeight + 1;
    if (wide || tall) found.push(el.tagName + (el.id ? "#" + el.id : "") + "." + el.className);
  }
  return found;
}"""

# Rendered elements whose right edge lies beyond the screen, outside any scrolling box.
BEYOND = """(width) => {
  const found = [];
  const scrolls = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === "auto" || o === "scroll") return true;
    }
    return false;
  };
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (!box.width || getComputedStyle(el).position === "fixed") continue;
    if (box.right + window.scrollX > width + 1 && !scrolls(el)) {
      found.push(el.tagName + (el.id ? "#" + el.id : "") + " right=" + Math.round(box.right));
    }
  }
  return found.slice(0, 10);
}"""


def _seed(gateway: Gateway) -> dict[str, int]:
    """A commander, a 反诈 officer and a trainer; an open case (its id is returned) and a
    claimed one, a ticket, a dissuasion task, a scheduled warning and an NLU inbox item,
    so every page has rows to lay out."""
    gateway.officer("boss", "值班指挥长", role="commander")
    gateway.officer("wang", "王警官", desk="反诈")
    gateway.officer("chen", "陈训练师", role="trainer")
    gateway.resident_says(RESIDENT, "我被骗了，刚转了两万块")
    case_id = open_case(gateway, RESIDENT)
    claimed = open_case(
        gateway, "o-layout-other", summary="【涉诈】未转账｜冒充公检法：说我涉嫌洗钱"
    )
    with gateway.session() as session:
        wang = session.query(User).filter_by(username="wang").one()
        handling.claim(session=session, user=wang, case_id=claimed)  # a row in 民警统计
        cases.open_ticket(
            session=session,
            sender_id="o-layout-noise",
            kind="noise",
            summary="【噪音】楼上装修，每天早上七点开始电钻声，已持续一周，多次沟通无果",
            location="浙江省宁波市镇海区骆驼街道万景社区5幢",
            street="骆驼街道",
            community="万景社区",
        )
        dissuasion.ingest_leads(
            session=session,
            leads=[
                LeadIn.parse_obj(
                    {
                        "external_id": "96110-layout-1",
                        "phone": "13800001234",
                        "name": "王阿姨",
                        "address": "骆驼街道万景社区3幢201",
                        "risk_type": "刷单返利",
                        "risk_level": "high",
                        "warned_at": datetime.now(timezone.utc).isoformat(),
                        "source": "96110",
                    }
                )
            ],
            actor=None,
        )
        boss = session.query(User).filter_by(username="boss").one()
        broadcasts.compose(
            session=session,
            user=boss,
            topic="fraud",
            title="警惕冒充客服退款诈骗",
            text="近期有人冒充电商客服以退款为名诱导转账。客服不会要求您共享屏幕或转账。",
            audience=AudienceIn(district=True),
            send_at=datetime.now(timezone.utc) + timedelta(days=1),  # stays scheduled
        )
    parsed(gateway, "半夜楼上一直在拖椅子，吵得睡不着，怎么办", [("complain_noise", 0.52)], 2)
    return {"case": case_id}


@pytest.fixture
def seeded(gateway: Gateway) -> dict[str, int]:
    return _seed(gateway)


def _context(browser: Any, gateway: Gateway, size: str) -> Any:
    width, height = SIZES[size]
    phone = size == "phone"
    return browser.new_context(
        base_url=gateway.url,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        viewport={"width": width, "height": height},
        is_mobile=phone,  # the meta viewport applies, as on a phone
        has_touch=phone,
        device_scale_factor=2 if phone else 1,
    )


@pytest.fixture(params=list(SIZES))
def sized(request: pytest.FixtureRequest, browser: Any, gateway: Gateway) -> Iterator[Any]:
    """A page at one of SIZES; it records page errors and CSP violations."""
    context = _context(browser, gateway, request.param)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.size = request.param
    tab.problems = []
    tab.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    tab.on(
        "console",
        lambda message: (
            tab.problems.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        yield tab
    finally:
        context.close()


def log_in(page: Page, username: str) -> None:
    page.goto("/console/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).not_to_have_url(re.compile(r"/console/login"))


def check_fits(page: Page, name: str) -> None:
    """The document is no wider than the screen, nothing is clipped, and a screenshot."""
    width = SIZES[page.size][0]
    page.wait_for_load_state("networkidle")
    beyond = page.evaluate(BEYOND, width)
    # A phone widens its layout viewport to fit content wider than the screen.
    assert page.evaluate("window.innerWidth") == width, f"{name}: too wide: {beyond}"
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{name}: the page is {scroll_width}px wide on a {width}px screen"
    assert beyond == [], name
    assert page.evaluate(CLIPPED) == [], f"{name}: content clipped by overflow:hidden"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"layout-{page.size}-{name}.png"), full_page=True)
    assert page.problems == [], page.problems


def within_screen(page: Page, selector: str) -> None:
    """Visible, scrolled to, and entirely inside the screen's width."""
    target = page.locator(selector)
    expect(target).to_be_visible()
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    assert box is not None, selector
    width = SIZES[page.size][0]
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, f"{selector}: {box}"


def test_every_page_fits_the_screen(sized: Page, gateway: Gateway, seeded: dict) -> None:
    page = sized
    page.goto("/console/login")
    expect(page.locator("#login-submit")).to_be_visible()
    check_fits(page, "login")

    log_in(page, "boss")
    expect(page.locator("#queue-body tr")).to_have_count(2)
    check_fits(page, "queue")
    nav = page.locator(".topbar nav a")
    expect(nav).to_have_count(6)
    if page.size == "phone":  # a strip under the brand that scrolls sideways
        strip = page.locator(".topbar nav")
        assert strip.evaluate("n => getComputedStyle(n).overflowX") == "auto"
        assert page.locator(".brand").bounding_box()["y"] < strip.bounding_box()["y"]
        page.locator(".topbar nav a", has_text="数据统计").tap()
        expect(page).to_have_url(re.compile(r"/console/metrics$"))
        current = page.locator(".topbar nav a[aria-current=page]")
        expect(current).to_have_text("数据统计")
        within_screen(page, ".topbar nav a[aria-current=page]")  # scrolled into view
    else:  # one row, as before
        boxes = [nav.nth(i).bounding_box() for i in range(6)]
        assert len({round(b["y"]) for b in boxes}) == 1
        assert page.locator(".topbar").bounding_box()["height"] == 52

    page.goto(f"/console/cases/{seeded['case']}")
    expect(page.locator("#case-title")).to_contain_text(f"案件 #{seeded['case']}")
    expect(page.locator("#transcript .msg").first).to_be_visible()
    expect(page).to_have_title(re.compile(f"案件 #{seeded['case']}"))
    check_fits(page, "case")
    main = page.locator(".case-transcript").bounding_box()
    side = page.locator(".case-side .actions").bounding_box()
    if page.size == "desktop":  # the actions beside the conversation, one under another
        assert side["x"] > main["x"] + main["width"]
        claim = page.locator("#claim").bounding_box()
        close = page.locator("#close-box summary").bounding_box()
        assert claim["width"] > side["width"] * 0.8 and close["y"] > claim["y"] + claim["height"]
    else:  # one column, the actions before the conversation
        assert side["x"] == main["x"] and side["y"] < main["y"]

    page.goto("/console/tickets")
    expect(page.locator("#tickets-body tr")).to_have_count(1)
    cell = page.locator("#tickets-body td").nth(3)
    expect(cell).to_contain_text("楼上装修")
    check_fits(page, "tickets")
    headers = page.locator("#tickets thead")
    if page.size == "phone":  # a card: the column's header labels each value
        expect(headers).to_be_hidden()
        expect(cell).to_have_attribute("data-label", "摘要")
        label = cell.evaluate("td => getComputedStyle(td, '::before').content")
        assert label == '"摘要"'
    else:
        expect(headers).to_be_visible()

    page.goto("/console/dissuasion")
    task = page.locator("#tasks-body tr").first
    expect(task).to_contain_text("刷单返利")
    task.click()
    expect(page.locator("#task-panel")).to_be_visible()
    check_fits(page, "dissuasion")

    page.goto("/console/broadcasts")
    expect(page.locator("#bc-body tr")).to_have_count(1)
    page.locator("#bc-body tr").first.click()
    expect(page.locator("#bc-detail")).to_be_visible()
    check_fits(page, "broadcasts")

    page.goto("/console/metrics")
    expect(page.locator("#tiles .tile").first).to_be_visible()
    expect(page.locator("#table-officers table")).to_be_visible()
    check_fits(page, "metrics")

    page.evaluate("sessionStorage.clear()")
    log_in(page, "chen")  # the trainer's page
    page.goto("/console/nlu")
    expect(page.locator("#nlu-body tr")).to_have_count(1)
    check_fits(page, "nlu")

    page.goto("/simulator")
    expect(page.locator("#send")).to_be_visible()
    page.fill("#text", "你好")
    page.click("#send")
    expect(page.locator("#chat .row.me .bubble")).to_have_text("你好")
    expect(page.locator("#chat .row.them").first).to_be_visible()  # the gateway's answer
    check_fits(page, "simulator")


def test_the_case_page_works_with_one_thumb(browser: Any, gateway: Gateway, seeded: dict) -> None:
    context = _context(browser, gateway, "phone")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.size = "phone"
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    try:
        log_in(page, "wang")
        page.goto(f"/console/cases/{seeded['case']}")
        expect(page.locator("#case-title")).to_contain_text(f"案件 #{seeded['case']}")

        for selector in (
            "#claim",
            "#transfer-box summary",
            "#divert-box summary",
            "#close-box summary",
            "#transcript",
            "#canned",
            "#reply-text",
            "#reply-send",
            "#case-details",
        ):
            within_screen(page, selector)

        within_screen(page, "#claim")
        page.locator("#claim").tap()
        expect(page.locator("#claim")).to_have_text("已由我处理")

        expect(page.locator("#canned option")).not_to_have_count(1)  # the quick replies
        canned = page.locator("#canned option").nth(1).get_attribute("value")
        page.select_option("#canned", canned)
        expect(page.locator("#reply-text")).to_have_value(canned)
        within_screen(page, "#reply-text")
        page.fill("#reply-text", "您好，我是反诈民警，请保留好转账记录。")
        within_screen(page, "#reply-send")
        page.locator("#reply-send").tap()
        expect(page.locator("#transcript .msg.officer").last).to_contain_text("请保留好转账记录")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "layout-phone-case-replied.png"), full_page=False)

        within_screen(page, "#close-box summary")
        page.locator("#close-box summary").tap()
        within_screen(page, "#close-resolution")
        page.fill("#close-resolution", "已指导群众止付并报案。")
        within_screen(page, "#close-submit")
        page.locator("#close-submit").tap()
        expect(page.locator("#closed-note")).to_be_visible()
        expect(page.locator("#reply-form")).to_be_hidden()
        check_fits(page, "case-closed")
    finally:
        context.close()


@pytest.mark.parametrize("width", [761, 900, 1100, 1101])
def test_the_top_bar_fits_between_phone_and_desktop(
    browser: Any, gateway: Gateway, width: int
) -> None:
    """Tablets and narrow windows: brand, nav and the officer's name never overlap."""
    gateway.officer("boss", "值班指挥长", role="commander")
    context = _context(browser, gateway, "desktop")
    page = context.new_page()
    try:
        page.set_viewport_size({"width": width, "height": 900})
        log_in(page, "boss")
        expect(page.locator("#me")).to_contain_text("值班指挥长")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        boxes = {
            name: page.locator(selector).bounding_box()
            for name, selector in (("brand", ".brand"), ("nav", ".topbar nav"), ("who", ".who"))
        }

        def overlap(a: dict, b: dict) -> bool:
            return (
                a["x"] < b["x"] + b["width"]
                and b["x"] < a["x"] + a["width"]
                and a["y"] < b["y"] + b["height"]
                and b["y"] < a["y"] + a["height"]
            )

        assert not overlap(boxes["nav"], boxes["who"]), boxes
        assert not overlap(boxes["brand"], boxes["nav"]), boxes
        assert boxes["who"]["x"] + boxes["who"]["width"] <= width
        links = page.locator(".topbar nav a")
        last = links.nth(5).bounding_box()
        assert last["x"] + last["width"] <= width  # every link in view, no strip to scroll
        one_row = width >= 1101
        assert (page.locator(".topbar").bounding_box()["height"] == 52) == one_row
    finally:
        context.close()
