"""精准劝阻 in the console (issue 11), in real headless Chromium against the real gateway:
a community officer works a high-risk lead — a phone call that fails, 未联系上 refused
without a visit (不见本人不放过), a visit that reaches the person, 劝阻成功 with the amount
protected — and the metrics page counts it. Screenshots in tests/browser/artifacts/."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from casework import dissuasion, hot_topics
from casework.conversations import conversation_for
from casework.dissuasion_schemas import LeadIn
from casework.models import Message
from tests.browser.conftest import ARTIFACTS, Gateway
from tests.browser.test_console import log_in, shot

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) with the reason
    Page, expect = object, None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.browser


def test_an_officer_works_a_dissuasion_task_to_success(gateway: Gateway, page: Page) -> None:
    gateway.officer("chen", "陈警官", community="万景社区")
    gateway.officer("zhao", "赵警官", community="清水湖社区")
    with gateway.session() as session:
        [task_id] = dissuasion.ingest_leads(
            session=session,
            leads=[
                LeadIn.parse_obj(
                    {
                        "external_id": "96110-0001",
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
        ).task_ids

    log_in(page, "chen")
    page.click("nav >> text=精准劝阻")
    row = page.locator(f'#tasks-body tr[data-task-id="{task_id}"]')
    expect(row).to_contain_text("高风险")
    expect(row).to_contain_text("刷单返利")
    expect(row).to_contain_text("138****1234")  # masked in the list
    expect(row).to_contain_text("陈警官")
    row.click()
    expect(page.locator("#task-phone")).to_have_text("13800001234")  # the number to call
    expect(page.locator("#task-address")).to_have_text("骆驼街道万景社区3幢201")

    page.select_option("#attempt-channel", "phone")
    page.fill("#attempt-note", "两次无人接听")
    page.click("#attempt-form button")
    expect(page.locator("#task-attempts li")).to_have_count(1)
    expect(page.locator("#task-attempts")).to_contain_text("未能联系上")

    page.select_option("#outcome-choice", "unreachable")
    page.click("#outcome-form button")
    expect(page.locator("#task-error")).to_contain_text("上门")  # 不见本人不放过
    expect(page.locator("#task-outcome")).to_have_text("待劝阻")

    page.select_option("#attempt-channel", "visit")
    page.check("#attempt-reached")
    page.fill("#attempt-note", "已上门，讲解刷单诈骗，对方已删除好友")
    page.click("#attempt-form button")
    expect(page.locator("#task-attempts li")).to_have_count(2)
    page.select_option("#outcome-choice", "dissuaded")
    page.fill("#outcome-amount", "38000")
    page.click("#outcome-form button")
    expect(page.locator("#task-outcome")).to_contain_text("劝阻成功")
    expect(page.locator("#task-outcome")).to_contain_text("38,000.00")
    expect(page.locator("#attempt-form")).to_be_hidden()
    expect(row).to_contain_text("劝阻成功")
    shot(page, "09-dissuasion-task")

    page.click("nav >> text=数据统计")
    tile = page.locator('.tile[data-metric="dissuaded"]')
    expect(tile.locator(".value")).to_have_text("1 件")
    expect(tile.locator(".sub")).to_contain_text("38,000.00")
    expect(page.locator('.tile[data-metric="dissuasion"] .sub')).to_contain_text("见到本人 1")
    assert page.js_errors == []


def test_the_metrics_page_shows_last_weeks_hot_topics(gateway: Gateway, page: Page) -> None:
    gateway.officer("chen", "陈警官", community="万景社区")
    _, since, _ = hot_topics.week_bounds()
    with gateway.session() as session:
        conversation = conversation_for(session=session, openid="o-hot")
        for n in range(3):
            session.add(
                Message(
                    conversation_id=conversation.id,
                    direction="in",
                    msg_type="text",
                    content=f"刷单返利被骗了第{n}次，对方让我做任务",
                    intent="report_fraud",
                    media={"parse": {"entities": [{"entity": "fraud_type", "value": "刷单返利"}]}},
                    created_at=(since + timedelta(days=1, hours=n)).astimezone(timezone.utc),
                )
            )
    log_in(page, "chen")
    page.click("nav >> text=数据统计")
    expect(page.locator("#hot-range")).to_contain_text("居民来信 3 条")
    expect(page.locator("#chart-hot-fraud svg rect")).to_have_count(1)
    expect(page.locator("#chart-hot-fraud")).to_contain_text("刷单返利")
    expect(page.locator("#table-risers")).to_contain_text("刷单返利")  # 0 → 3
    expect(page.locator("#hot-keywords .tag").first).to_be_visible()
    page.locator("#hot-range").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "10-hot-topics.png"), full_page=True)
    assert page.js_errors == []


def test_another_communitys_officer_does_not_see_the_task(gateway: Gateway, page: Page) -> None:
    gateway.officer("zhao", "赵警官", community="清水湖社区")
    with gateway.session() as session:
        dissuasion.ingest_leads(
            session=session,
            leads=[
                LeadIn.parse_obj(
                    {
                        "external_id": "96110-0002",
                        "phone": "13800005678",
                        "address": "骆驼街道万景社区5幢",
                        "risk_type": "冒充公检法",
                        "risk_level": "medium",
                        "warned_at": datetime.now(timezone.utc).isoformat(),
                        "source": "96110",
                    }
                )
            ],
            actor=None,
        )
    log_in(page, "zhao")
    page.click("nav >> text=精准劝阻")
    expect(page.locator("#tasks-empty")).to_be_visible()
    expect(page.locator("#tasks-body tr")).to_have_count(0)
    assert page.js_errors == []


def test_the_task_list_comes_a_page_at_a_time(gateway: Gateway, page: Page) -> None:
    """More tasks than a page (50): the list shows the first page, the total, and
    上一页/下一页 move between pages without losing or repeating a task."""
    gateway.officer("chen", "陈警官", community="万景社区")
    warned = datetime.now(timezone.utc).isoformat()
    with gateway.session() as session:
        ids = dissuasion.ingest_leads(
            session=session,
            leads=[
                LeadIn.parse_obj(
                    {
                        "external_id": f"96110-P{n:03d}",
                        "phone": f"138000{n:05d}",
                        "address": "骆驼街道万景社区3幢",
                        "risk_type": "刷单返利",
                        "risk_level": "medium",
                        "warned_at": warned,
                        "source": "96110",
                    }
                )
                for n in range(53)
            ],
            actor=None,
        ).task_ids
    log_in(page, "chen")
    page.click("nav >> text=精准劝阻")
    rows = page.locator("#tasks-body tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#task-stats")).to_contain_text("共 53 件")
    expect(page.locator("#task-stats")).to_contain_text("待劝阻 53")
    expect(page.locator("#tasks-page")).to_contain_text("第 1 / 2 页")
    expect(page.locator("#tasks-prev")).to_be_disabled()
    first_page = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.taskId))")
    page.click("#tasks-next")
    expect(rows).to_have_count(3)
    expect(page.locator("#tasks-page")).to_contain_text("第 2 / 2 页")
    expect(page.locator("#tasks-page")).to_contain_text("共 53 件")
    expect(page.locator("#tasks-next")).to_be_disabled()
    second_page = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.taskId))")
    assert sorted(first_page + second_page) == sorted(ids)  # none lost, none twice
    shot(page, "11-dissuasion-pages")
    page.click("#tasks-prev")
    expect(rows).to_have_count(50)
    expect(page.locator("#tasks-page")).to_contain_text("第 1 / 2 页")
    assert page.js_errors == []
