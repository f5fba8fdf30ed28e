"""Replies to the robot's case card (issue 12), pure: which case a quoted card names
(`case_marker`), what a reply that quotes it parses to (`parse_reply_to_card`), and the
hint every notification ends with (`reply_hint`)."""

from __future__ import annotations

import pytest

from casework.dingtalk_replies import (
    Command,
    case_marker,
    parse,
    parse_reply_to_card,
    reply_hint,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("### 【紧急】涉诈案件 #12\n- 摘要：…\n[打开案件](http://x/console/cases/12)", 12),
        ("噪音投诉案件 #12 … 回复方式：在群里 @机器人 发送“#12 回复内容”", 12),  # same case twice
        ("案件＃１２", 12),
        ("案件 # 7", 7),
        ("案件 #12 与案件 #13", None),  # two cases: which one?
        ("#12 没有“案件”二字", None),
        ("案件 #123456789012345", None),  # longer than any case number: not a marker
        ("", None),
        (None, None),
    ],
)
def test_case_marker_names_one_case_or_none(text, expected):
    assert case_marker(text) == expected


def test_a_quote_names_the_case_and_the_whole_text_is_the_reply():
    assert parse_reply_to_card("@警民通助手  您好，马上到", 12) == Command(
        case_id=12, text="您好，马上到"
    )
    assert parse_reply_to_card("  ", 12) == Command(case_id=12, text="")


@pytest.mark.parametrize(
    "content, expected",
    [
        ("「助手：噪音投诉案件 #5」 您好", Command(case_id=5, text="您好")),
        ("「助手：案件 #5\n第二行」\n- - - - - -\n您好", Command(case_id=5, text="您好")),
        ("案件 #5 摘要\n————————\n@助手 好的", Command(case_id=5, text="好的")),
        ("案件 #5：好的", Command(case_id=5, text="好的")),
        ("「没有案件号」\n您好", None),
        ("「案件 #5 案件 #6」\n您好", None),
        ("请看案件 #5", None),
        ("您好", None),
    ],
)
def test_a_text_carrying_its_quote(content, expected):
    assert parse_reply_to_card(content, None) == expected


def test_an_explicit_number_is_read_first():
    content = "#9 「案件 #5」"
    assert parse(content) == Command(case_id=9, text="「案件 #5」")


def test_the_reply_hint():
    assert reply_hint(12) == "回复方式：在群里 @机器人 发送“#12 回复内容”，或直接引用本条消息回复。"
    assert reply_hint(12, quote=False) == "回复方式：在群里 @机器人 发送“#12 回复内容”。"
    assert case_marker(reply_hint(12)) is None  # the hint alone names no case: "#12" only
