"""The trainers' NLU inbox page in real headless Chromium (see conftest.py): keyboard
annotation, an entity marked by selecting text with the mouse, discard, export."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from casework import nlu_export
from casework.conversations import record_inbound
from casework.nlu_inbox import NluAnnotation
from jmt import paths
from tests.browser.conftest import ARTIFACTS, PASSWORD, Gateway

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) with the reason
    Page, expect = object, None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.browser

PHONE = "13912345678"


def parsed(gateway: Gateway, text: str, ranking: list[tuple[str, float]], age: int) -> int:
    with gateway.session() as session:
        message, _ = record_inbound(
            session=session,
            openid=f"o-nlu-{age}",
            dedupe_key=f"nlu-{age}",
            msg_type="text",
            content=text,
        )
        message.intent, message.confidence = ranking[0]
        message.media = {
            "parse": {
                "ranking": [{"name": n, "confidence": c} for n, c in ranking],
                "entities": [],
            }
        }
        message.created_at = datetime.now(timezone.utc) - timedelta(minutes=age)
        session.flush()
        return int(message.id)


def drag_select(page: Page, row, fragment: str) -> None:
    """Select `fragment` of the row's message text with the mouse (press, drag, release)."""
    box = row.locator(".nlu-text").evaluate(
        """(span, fragment) => {
            const node = span.firstChild;
            const at = node.data.indexOf(fragment);
            const range = document.createRange();
            range.setStart(node, at);
            range.setEnd(node, at + 1);
            const first = range.getBoundingClientRect();
            range.setStart(node, at + fragment.length - 1);
            range.setEnd(node, at + fragment.length);
            const last = range.getBoundingClientRect();
            return {x0: first.left + 1, x1: last.right - 1, y: (first.top + first.bottom) / 2};
        }""",
        fragment,
    )
    page.mouse.move(box["x0"], box["y"])
    page.mouse.down()
    page.mouse.move(box["x1"], box["y"], steps=5)
    page.mouse.up()
    assert page.evaluate("String(window.getSelection())") == fragment


def test_trainer_annotates_from_the_keyboard_and_exports(
    gateway: Gateway, page: Page, tmp_path, monkeypatch
) -> None:
    nlu_dir = tmp_path / "nlu_data"
    shutil.copytree(paths.NLU_DATA, nlu_dir)
    for stale in ("intents/inbox.yml", "faq/inbox.yml"):
        (nlu_dir / stale).unlink(missing_ok=True)
    monkeypatch.setattr(nlu_export, "NLU_DATA", nlu_dir)
    gateway.officer("chen", "陈训练师", role="trainer")
    fraud = parsed(
        gateway, f"😭在抖音上被骗了 电话{PHONE}", [("out_of_scope", 0.31), ("report_fraud", 0.3)], 1
    )
    noise = parsed(gateway, "半夜楼上一直在拖椅子", [("complain_noise", 0.52)], 2)
    junk = parsed(gateway, "？？？", [("nlu_fallback", 0.1)], 3)

    page.goto("/console/login?next=%2Fconsole%2Fnlu")
    page.fill("#username", "chen")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(re.compile(r"/console/nlu$"))
    rows = page.locator("#nlu-body tr")
    expect(rows).to_have_count(3)
    first = page.locator(f'#nlu-body tr[data-message-id="{fraud}"]')
    expect(first).to_contain_text("😭在抖音上被骗了 电话139****5678")
    expect(first).to_contain_text("置信度低")
    expect(first).to_contain_text("前两名接近")
    expect(first).to_contain_text("report_fraud")
    assert PHONE not in page.content()

    # j / k move the selection
    expect(rows.nth(0)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("j")
    expect(rows.nth(1)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("k")
    expect(rows.nth(0)).to_have_attribute("aria-selected", "true")

    # select 抖音 with the mouse, e, name the entity
    drag_select(page, first, "抖音")
    page.once("dialog", lambda dialog: dialog.accept("platform"))
    page.keyboard.press("e")
    expect(first).to_contain_text("平台 抖音")
    page.screenshot(path=str(ARTIFACTS / "08-nlu-inbox.png"), full_page=True)

    # i: search another intent, Enter picks it
    page.keyboard.press("i")
    expect(page.locator("#nlu-picker")).to_be_visible()
    page.keyboard.type("report_fr")
    expect(page.locator("#nlu-picker-list li").first).to_have_text(re.compile("^report_fraud"))
    page.keyboard.press("Enter")
    expect(rows).to_have_count(2)

    # Enter confirms the predicted intent; d discards
    expect(rows.nth(0)).to_have_attribute("data-message-id", str(noise))
    page.keyboard.press("Enter")
    expect(rows).to_have_count(1)
    page.keyboard.press("d")
    expect(page.locator("#nlu-empty")).to_be_visible()

    # x exports and shows the report
    page.keyboard.press("x")
    expect(page.locator("#nlu-export-report")).to_be_visible()
    expect(page.locator("#nlu-export-lines")).to_contain_text("写入 2 条")
    page.screenshot(path=str(ARTIFACTS / "09-nlu-exported.png"), full_page=True)
    assert page.js_errors == []

    with gateway.session() as session:
        decisions = {
            row.message_id: row for row in session.execute(select(NluAnnotation)).scalars()
        }
    assert decisions[fraud].intent == "report_fraud"
    assert decisions[fraud].entities == [
        {"entity": "platform", "start": 2, "end": 4, "value": "抖音"}
    ]
    assert decisions[noise].intent == "complain_noise"
    assert decisions[junk].status == "discarded"
    content = (nlu_dir / "intents" / "inbox.yml").read_text(encoding="utf-8")
    assert "😭在[抖音](platform)上被骗了 电话139****5678" in content
    assert "半夜楼上一直在拖椅子" in content and PHONE not in content


def test_a_trainer_lands_in_the_nlu_inbox_after_login(gateway: Gateway, page: Page) -> None:
    gateway.officer("zhou", "周训练师", role="trainer")
    page.goto("/console/login")
    page.fill("#username", "zhou")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(re.compile(r"/console/nlu$"))
