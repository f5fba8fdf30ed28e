"""The officer console in real headless Chromium against the real gateway (see conftest.py).

Screenshots of every page go to tests/browser/artifacts/.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from casework import cases, handling
from casework.models import Case, User
from tests.browser.conftest import ARTIFACTS, PASSWORD, Gateway

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) with the reason
    Page, expect = object, None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.browser

RESIDENT = "o-browser-resident-1"
FRAUD_DETAILS = {
    "money_lost": True,
    "amount": "两万",
    "amount_yuan": 20000,
    "event_time": "今天上午十点",
    "payment_method": "银行卡转账",
    "scammer_contact": "对方手机17012345678",
    "scammer_phones": ["17012345678"],
    "fraud_type": "冒充客服",
    "first_message": "我被骗了，刚转了两万块",
}


def shot(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/console/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")


def open_case(gateway: Gateway, openid: str, **fields) -> int:
    """A hand-off as the action server records it (the dispatcher routes and notifies)."""
    values = {
        "category": "fraud_suspicion",
        "priority": "urgent",
        "reason": "money_lost",
        "summary": "【涉诈】已转账｜20000元｜冒充客服：我被骗了，刚转了两万块",
        "details": FRAUD_DETAILS,
    } | fields
    with gateway.session() as session:
        return int(cases.open_case(session=session, sender_id=openid, **values).id)


def wait_for(check, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_officer_takes_a_fraud_case_from_arrival_to_rating(gateway: Gateway, page: Page) -> None:
    gateway.officer("wang", "王警官", desk="反诈")
    gateway.officer("zhang", "张警官", desk="反诈")

    # Not signed in: the queue sends the officer to the login page, which shows API errors.
    page.goto("/console")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole$"))
    page.fill("#username", "wang")
    page.fill("#password", "wrong-password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    shot(page, "01-login")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{gateway.url}/console")
    expect(page.locator("#me")).to_contain_text("王警官")
    expect(page.locator("#live")).to_have_text("实时")
    expect(page.locator("#queue-empty")).to_be_visible()

    # The resident talks to the bot, shares a location; the bot hands off: the case
    # arrives in the open queue without a reload, flashing, routed to an officer.
    gateway.resident_says(RESIDENT, "我被骗了，刚转了两万块")
    gateway.resident_says(
        RESIDENT, type="location", lat=29.989, lng=121.61, label="浙江省宁波市镇海区骆驼街道"
    )
    case_id = open_case(gateway, RESIDENT)
    row = page.locator(f'#queue-body tr[data-case-id="{case_id}"]')
    expect(row).to_be_visible()
    expect(row).to_have_class(re.compile(r"\bflash\b"))
    expect(row.locator(".prio")).to_have_text("紧急")
    expect(row.locator(".prio")).to_have_class(re.compile(r"prio-urgent"))
    expect(row).to_contain_text("涉诈")
    expect(row).to_contain_text("指派：王警官")  # the dispatcher routed it to the 反诈 desk
    expect(row.locator("td.countdown")).to_have_text(re.compile(r"^[45]分\d\d秒$"))
    expect(row).to_contain_text("已通知")  # DingTalk (the simulator's robot) was told
    shot(page, "02-queue")

    # The case view: details, money, map link, transcript, Beijing time.
    row.locator("a").click()
    expect(page).to_have_url(f"{gateway.url}/console/cases/{case_id}")
    expect(page.locator("#case-title")).to_have_text(f"案件 #{case_id} · 涉诈")
    details = page.locator("#case-details")
    expect(details).to_contain_text("¥20,000.00")
    expect(details).to_contain_text("17012345678")
    expect(details).to_contain_text("冒充客服")
    expect(page.locator("a.map-link")).to_have_attribute(
        "href", re.compile(r"^https://uri\.amap\.com/marker\?position=121\.61,29\.989")
    )
    expect(page.locator("#transcript .msg.in").first).to_contain_text("我被骗了")
    with gateway.session() as session:
        created = session.get(Case, case_id).created_at.replace(tzinfo=timezone.utc)
    beijing = created.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    expect(page.locator("#case-meta")).to_contain_text(beijing)

    # Claim, reply with a canned phrase plus a sentence, note.
    page.click("#claim")
    expect(page.locator("#claim")).to_have_text("已由我处理")
    expect(page.locator("#case-status")).to_have_text("处理中")
    canned = page.locator("#canned option").nth(1).get_attribute("value")
    assert canned
    page.select_option("#canned", value=canned)
    expect(page.locator("#reply-text")).to_have_value(canned)
    page.locator("#reply-text").press("End")
    page.locator("#reply-text").press_sequentially("请立即拨打96110。")
    page.click("#reply-send")
    officer_said = page.locator("#transcript .msg.officer")
    expect(officer_said).to_contain_text("请立即拨打96110。")
    expect(officer_said.locator(".by")).to_contain_text("王警官")
    expect(page.locator("#case-countdown")).to_have_text("已答复")

    # The resident answers: the officer owns the conversation, the case view updates live.
    gateway.resident_says(RESIDENT, "好的，转账截图我已经保存了")
    expect(page.locator("#transcript")).to_contain_text("转账截图我已经保存了")
    page.fill("#note-text", "已联系银行止付，待回执。")
    page.locator("#note-form button").click()
    expect(page.locator("#notes")).to_contain_text("已联系银行止付，待回执。")
    shot(page, "03-case")

    # Close: the bot asks for a rating; the resident's 5 shows up on the case.
    page.locator("#close-box summary").click()
    page.fill("#close-resolution", "已紧急止付，资金冻结，已告知群众后续报案流程。")
    page.click("#close-submit")
    expect(page.locator("#case-status")).to_have_text("已办结")
    expect(page.locator("#reply-form")).to_be_hidden()
    expect(page.locator("#claim")).to_be_hidden()

    def delivered() -> list[str]:
        texts = [m["content"] for m in gateway.inbox(RESIDENT)]
        done = handling.RATING_QUESTION in texts and any("96110" in t for t in texts)
        return texts if done else []

    texts = wait_for(delivered, what="the officer's reply and the rating question on WeChat")
    assert texts.index(handling.RATING_QUESTION) > next(
        i for i, t in enumerate(texts) if "96110" in t
    )
    answer = gateway.resident_says(RESIDENT, "5")
    assert answer["reply"] == handling.RATING_THANKS
    expect(page.locator("#case-meta")).to_contain_text("（5分）")
    shot(page, "04-case-closed")

    # Back in the queue the case is gone from 进行中 and listed under 已办结.
    page.click("text=← 返回待办队列")
    expect(page.locator("#queue-empty")).to_be_visible()
    page.click('.tab[data-status="closed"]')
    expect(page.locator(f'#queue-body tr[data-case-id="{case_id}"]')).to_contain_text("已办结")

    # The officer's numbers: one urgent case, answered in time, rated 5.
    page.click("nav >> text=数据统计")
    expect(page.locator('.tile[data-metric="timely"] .value')).to_have_text("100.0%")
    expect(page.locator('.tile[data-metric="satisfaction"] .value')).to_have_text("5.00 分")
    expect(page.locator("#chart-priority svg rect")).to_have_count(4)
    expect(page.locator("#table-officers")).to_contain_text("王警官")
    shot(page, "07-metrics-after-case")
    assert page.js_errors == []


def test_queue_orders_colours_and_flags_cases(gateway: Gateway, page: Page) -> None:
    gateway.officer("sun", "孙指挥长", role="commander")
    now = datetime.now(timezone.utc)
    seeded = [  # priority, category, minutes ago, notify
        ("low", "fraud_suspicion", 30, "sent", "【涉诈】已劝阻｜冒充客服：有人让我下载会议软件"),
        ("normal", "noise_complaint", 180, "sent", "【噪音投诉】广场舞音响：万景社区广场每晚很吵"),
        ("high", "dog_complaint", 10, "failed", "【犬只投诉】有人被咬：小区里大狗没拴绳"),
        ("urgent", "emergency", 1, "sent", "【紧急警情】有人在楼道里打架"),
    ]
    ids = {}
    for number, (priority, category, minutes, notify, summary) in enumerate(seeded):
        case_id = open_case(
            gateway,
            f"o-browser-queue-{number}",
            category=category,
            priority=priority,
            reason="resident_request",
            summary=summary,
            details={"street": "骆驼街道", "community": "万景社区"},
        )
        with gateway.session() as session:  # as if the dispatcher had announced them
            case = session.get(Case, case_id)
            case.created_at = now - timedelta(minutes=minutes)
            case.due_at = case.created_at + cases.RESPONSE_TARGETS[priority]
            case.street, case.community = "骆驼街道", "万景社区"
            case.notify_status = notify
            case.notify_error = (
                "DingTalk errcode 310000: sign not match" if notify == "failed" else None
            )
        ids[priority] = case_id

    log_in(page, "sun")
    expect(page.locator("#me")).to_contain_text("孙指挥长（指挥长）")
    rows = page.locator("#queue-body tr")
    expect(rows).to_have_count(4)
    order = [rows.nth(i).get_attribute("data-case-id") for i in range(4)]
    assert order == [str(ids[p]) for p in ("urgent", "high", "normal", "low")]
    for priority, label in (("urgent", "紧急"), ("high", "高"), ("normal", "普通"), ("low", "低")):
        badge = page.locator(f'tr[data-case-id="{ids[priority]}"] .prio')
        expect(badge).to_have_text(label)
        expect(badge).to_have_class(re.compile(rf"\bprio-{priority}\b"))
    late = page.locator(f'tr[data-case-id="{ids["normal"]}"] td.countdown')
    expect(late).to_have_text(re.compile(r"^已超时 1小时0\d分$"))
    expect(late).to_have_class(re.compile(r"\boverdue\b"))
    failed = page.locator(f'tr[data-case-id="{ids["high"]}"] .fail')
    expect(failed).to_have_text("通知失败")
    expect(failed).to_have_attribute("title", re.compile("310000"))
    assert page.locator(".fail").evaluate("e => getComputedStyle(e).color") == "rgb(212, 40, 47)"
    ticking = page.locator(f'tr[data-case-id="{ids["urgent"]}"] td.countdown')
    before = ticking.text_content()
    expect(ticking).not_to_have_text(before or "")  # the countdown runs live
    expect(page.locator("#queue-stats")).to_contain_text("超时 1")
    shot(page, "02b-queue-busy")
    assert page.js_errors == []


def test_claiming_a_case_someone_else_holds_names_them(gateway: Gateway, page: Page) -> None:
    gateway.officer("wang", "王警官", desk="反诈")
    zhang_id = gateway.officer("zhang", "张警官", desk="反诈")
    case_id = open_case(gateway, "o-browser-resident-2")
    with gateway.session() as session:
        handling.claim(session=session, user=session.get(User, zhang_id), case_id=case_id)

    log_in(page, "wang")
    row = page.locator(f'#queue-body tr[data-case-id="{case_id}"]')
    expect(row).to_contain_text("张警官")
    row.click()
    expect(page.locator("#claim")).to_have_text("认领（当前：张警官）")
    page.click("#claim")
    expect(page.locator("#action-error")).to_have_text("该案件已由 张警官 处理")
    page.fill("#reply-text", "您好")
    page.click("#reply-send")
    expect(page.locator("#action-error")).to_have_text("该案件已由 张警官 处理")
    assert page.js_errors == []


def test_divert_to_governance_then_tickets_and_metrics(gateway: Gateway, page: Page) -> None:
    gateway.officer("chen", "陈警官", community="万景社区")
    noise = open_case(
        gateway,
        "o-browser-resident-3",
        category="noise_complaint",
        priority="normal",
        reason="resident_request",
        summary="【噪音投诉】楼上装修：万景社区3幢楼上天天晚上装修",
        details={
            "location": "万景社区3幢",
            "street": "骆驼街道",
            "community": "万景社区",
            "noise_source": "楼上装修",
            "first_message": "楼上天天晚上装修",
        },
    )
    log_in(page, "chen")
    page.locator(f'#queue-body tr[data-case-id="{noise}"]').click()
    page.locator("#category-box summary").click()  # an officer corrects the triage
    page.select_option("#category-target", "other")
    page.locator("#category-form button").click()
    expect(page.locator("#case-title")).to_contain_text("其他")
    page.locator("#divert-box summary").click()
    page.select_option("#divert-kind", "noise")
    page.fill("#divert-note", "请街道综治协调物业处理夜间装修")
    page.locator("#transfer-box summary").click()
    expect(page.locator("#transfer-target optgroup")).to_have_count(1)  # desks; no one else
    shot(page, "05a-case-actions")
    page.locator("#divert-form button").click()
    expect(page.locator("#case-status")).to_have_text("已办结")
    expect(page.locator("#case-tickets")).to_contain_text("噪音")

    page.click("nav >> text=工单")
    expect(page).to_have_url(f"{gateway.url}/console/tickets")
    ticket = page.locator("#tickets-body tr").first
    expect(ticket).to_contain_text("楼上装修")
    expect(ticket).to_contain_text("万景社区")
    expect(ticket).to_contain_text(f"案件 #{noise}")
    expect(ticket.locator(".status")).to_have_text(re.compile("待推送|已推送"))
    shot(page, "05-tickets")

    page.click("nav >> text=数据统计")
    expect(page).to_have_url(f"{gateway.url}/console/metrics")
    expect(page.locator('.tile[data-metric="timely"] .value')).to_have_text(re.compile(r"%|—"))
    expect(page.locator('.tile[data-metric="tickets"] .sub')).to_contain_text("新建 1")
    expect(page.locator("#chart-category svg rect")).not_to_have_count(0)
    expect(page.locator("#chart-daily svg")).to_have_count(1)
    expect(page.locator("#table-communities")).to_contain_text("万景社区")
    page.click('#days .tab[data-days="7"]')
    expect(page.locator('#days .tab[data-days="7"]')).to_have_class(re.compile(r"\bactive\b"))
    with page.expect_download() as download:
        page.click("#export")
    csv = open(download.value.path(), encoding="utf-8").read()
    assert csv.startswith("\ufeff") and "timely" in csv
    shot(page, "06-metrics")
    assert page.js_errors == []


def test_api_text_is_never_markup_and_a_stale_token_returns_to_login(
    gateway: Gateway, page: Page
) -> None:
    gateway.officer("wang", "王警官", desk="反诈")
    hostile = '<img src=x onerror="window.__pwned=1"><b>粗体</b>'
    case_id = open_case(gateway, "o-browser-resident-4", summary=hostile)
    log_in(page, "wang")
    row = page.locator(f'#queue-body tr[data-case-id="{case_id}"]')
    expect(row).to_contain_text(hostile)
    expect(page.locator("#queue-body img, #queue-body b")).to_have_count(0)
    row.click()
    expect(page.locator("#case-summary")).to_have_text(hostile)
    assert page.evaluate("window.__pwned") is None

    # A session cookie the server does not know (ended, or never issued) — HttpOnly, so
    # only the browser's cookie jar can hold it, as after a logout on another device.
    page.context.add_cookies(
        [{"name": "jmt_session", "value": "not-a-session", "url": gateway.url}]
    )
    page.goto("/console/metrics")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2Fmetrics$"))
    page.fill("#username", "wang")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{gateway.url}/console/metrics")
    assert page.js_errors == []


def test_login_shows_the_lockout_message(gateway: Gateway, page: Page) -> None:
    gateway.officer("li", "李警官", community="万景社区")
    for _ in range(5):
        log_in(page, "li", "wrong-password")
        expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    log_in(page, "li")
    expect(page.locator("#login-error")).to_have_text(
        "登录失败次数过多，账号已暂时锁定，请稍后再试"
    )
    assert page.js_errors == []
