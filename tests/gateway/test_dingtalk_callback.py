"""Officers answer residents from DingTalk (SQLite and PostgreSQL): the robot's signed
outgoing callback, as DingTalk sends it (headers `timestamp` in ms, `sign` = base64
HMAC-SHA256 over "{timestamp}\\n{secret}"). The signature (good, wrong, missing, stale,
future), redeliveries of one msgId, unknown senders, unknown and out-of-scope cases,
closed and held cases, a reply that lands in the outbox and claims the case, and no
hostile signed body is a 500."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from casework import accounts, db, handling
from casework.cases import open_case
from casework.conversations import conversation_for
from casework.models import AuditEntry, Case, Message, OutboxItem, User
from gateway.routes.dingtalk import dingtalk_sign

PATH = "/api/dingtalk/callback"
PASSWORD = "correct-horse-battery"
A, B = "万景社区", "清水浦社区"
HOUR_MS = 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def message(content: str, *, msg_id: str = "msgA1", staff: str = "dt-a", **extra: Any) -> dict:
    """An enterprise-internal robot's outgoing message (the fields DingTalk documents)."""
    return {
        "msgtype": "text",
        "text": {"content": content},
        "msgId": msg_id,
        "createAt": now_ms(),
        "conversationType": "1",
        "conversationId": "cid-officer-single",
        "senderId": "$:LWCP_v1:$abc",
        "senderNick": "张警官",
        "senderCorpId": "ding-corp",
        "senderStaffId": staff,
        "chatbotUserId": "$:LWCP_v1:$robot",
        "isInAtList": True,
        "isAdmin": False,
        "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=x",
        "sessionWebhookExpiredTime": now_ms() + 5400_000,
        **extra,
    }


def post(client, body: dict | bytes, *, timestamp: int | None = None, sign: str | None = None):
    secret = client.app.state.settings.dingtalk_app_secret
    stamp = str(now_ms() if timestamp is None else timestamp)
    headers = {"timestamp": stamp, "sign": sign or dingtalk_sign(stamp, secret)}
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return client.post(PATH, content=raw, headers={**headers, "Content-Type": "application/json"})


def said(answer) -> str:
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert payload["msgtype"] == "text"
    return str(payload["text"]["content"])


def make_case(openid: str, community: str | None = A, **changes: Any) -> int:
    with db.session_scope() as session:
        conversation_for(session=session, openid=openid)
        case = open_case(
            session=session,
            sender_id=openid,
            category="noise_complaint",
            priority="normal",
            reason="resident_request",
            summary="【噪音投诉】楼上装修",
        )
        case.street, case.community = "骆驼街道", community
        for name, value in changes.items():
            setattr(case, name, value)
        session.flush()
        return int(case.id)


def outbox_items(openid: str) -> list[tuple[str, str]]:
    with db.session_scope() as session:
        rows = session.execute(
            select(OutboxItem.text, Message.sender)
            .join(Message, Message.id == OutboxItem.message_id)
            .where(OutboxItem.openid == openid)
        ).all()
        return [(row.text, row.sender) for row in rows]


def user_id(name: str) -> int:
    with db.session_scope() as session:
        return int(session.execute(select(User.id).where(User.username == name)).scalar_one())


@pytest.fixture
def client(wechat):
    with db.session_scope() as session:
        for name, role, where, staff in (
            ("officer_a", "officer", {"community": A}, "dt-a"),
            ("officer_a2", "officer", {"community": A}, "dt-a2"),
            ("officer_b", "officer", {"community": B}, "dt-b"),
            ("trainer", "trainer", {}, "dt-trainer"),
            ("gone", "officer", {"community": A}, "dt-gone"),
        ):
            accounts.create_user(
                session=session,
                username=name,
                password=PASSWORD,
                role=role,
                dingtalk_id=staff,
                **where,
            )
        accounts.disable_user(session=session, username="gone")
    return wechat.client


# ------------------------------------------------------------------ the signature


def test_a_valid_reply_reaches_the_outbox_as_the_officer_and_claims_the_case(client):
    case_id = make_case("o-resident-1")
    answer = post(client, message(f"#{case_id} 您好，我是社区民警，明天上午上门了解情况。"))
    assert said(answer) == f"已答复案件 #{case_id}，该案件已由您认领。回复将通过公众号发送给群众。"
    assert outbox_items("o-resident-1") == [
        ("您好，我是社区民警，明天上午上门了解情况。", "officer:officer_a")
    ]
    with db.session_scope() as session:
        case = session.get(Case, case_id)
        assert (case.status, case.claimed_by_id) == ("claimed", user_id("officer_a"))
        assert case.first_reply_at is not None
        assert conversation_for(session=session, openid="o-resident-1").owner == "officer"
        entries = session.execute(
            select(AuditEntry.action, AuditEntry.detail)
            .where(AuditEntry.target_type == "case", AuditEntry.target_id == case_id)
            .order_by(AuditEntry.id)
        ).all()
    actions = [entry.action for entry in entries]
    assert actions == ["claim", "reply", "reply_via_dingtalk"]
    assert entries[-1].detail["via"] == "dingtalk" and entries[-1].detail["msg_id"] == "msgA1"


@pytest.mark.parametrize(
    "timestamp_offset, sign",
    [
        (0, "d3Jvbmc="),  # wrong sign
        (-HOUR_MS - 60_000, None),  # stale: more than an hour old
        (HOUR_MS + 60_000, None),  # from the future
    ],
    ids=["wrong", "stale", "future"],
)
def test_a_bad_signature_is_refused_and_nothing_happens(client, timestamp_offset, sign):
    case_id = make_case("o-resident-2")
    answer = post(
        client, message(f"#{case_id} 您好"), timestamp=now_ms() + timestamp_offset, sign=sign
    )
    assert answer.status_code == 401
    assert outbox_items("o-resident-2") == []


def test_missing_headers_and_another_secret_are_refused(client):
    case_id = make_case("o-resident-3")
    raw = json.dumps(message(f"#{case_id} 您好")).encode()
    headers = {"Content-Type": "application/json"}
    assert client.post(PATH, content=raw, headers=headers).status_code == 401
    stamp = str(now_ms())
    assert (
        client.post(PATH, content=raw, headers={**headers, "timestamp": stamp}).status_code == 401
    )
    forged = {"timestamp": stamp, "sign": dingtalk_sign(stamp, "another-secret")}
    assert client.post(PATH, content=raw, headers={**headers, **forged}).status_code == 401
    assert client.post(PATH, content=raw, headers={**headers, "sign": "x"}).status_code == 401
    assert outbox_items("o-resident-3") == []


def test_the_signature_is_checked_before_the_body_is_read(client):
    """A malformed body without a signature is a 401, not a 422: nothing is parsed first."""
    answer = client.post(PATH, content=b"{not json", headers={"timestamp": "1", "sign": "x"})
    assert answer.status_code == 401


def test_within_the_hour_is_accepted(client):
    case_id = make_case("o-resident-4")
    answer = post(client, message(f"#{case_id} 您好"), timestamp=now_ms() - HOUR_MS + 60_000)
    assert said(answer).startswith(f"已答复案件 #{case_id}")


def test_without_the_app_secret_the_route_answers_503(client):
    from dataclasses import replace

    client.app.state.settings = replace(client.app.state.settings, dingtalk_app_secret=None)
    answer = client.post(PATH, json=message("#1 您好"), headers={"timestamp": "1", "sign": "x"})
    assert answer.status_code == 503
    assert "DINGTALK_APP_SECRET" in answer.json()["detail"]


# ------------------------------------------------------------------ redelivery


def test_a_redelivered_message_gets_the_same_answer_and_sends_nothing_again(client):
    case_id = make_case("o-resident-5")
    body = message(f"#{case_id} 您好，已收到。", msg_id="msg-retry")
    first = said(post(client, body))
    body["sessionWebhookExpiredTime"] += 1000  # DingTalk may renew these fields
    second = said(post(client, body))
    assert first == second
    assert outbox_items("o-resident-5") == [("您好，已收到。", "officer:officer_a")]
    other = post(client, message(f"#{case_id} 另一条内容", msg_id="msg-retry"))
    assert other.status_code == 409
    assert len(outbox_items("o-resident-5")) == 1


def test_a_redelivered_refusal_stays_a_refusal(client):
    case_id = make_case("o-resident-6", status="closed")
    body = message(f"#{case_id} 您好", msg_id="msg-closed")
    assert said(post(client, body)) == said(post(client, body)) == "该案件已办结"
    assert outbox_items("o-resident-6") == []


# ------------------------------------------------------------------ who and which case


def test_an_unknown_or_disabled_sender_is_asked_to_bind_and_nothing_happens(client):
    case_id = make_case("o-resident-7")
    for staff in ("dt-nobody", "dt-gone"):
        text = said(post(client, message(f"#{case_id} 您好", staff=staff, msg_id=staff)))
        assert "尚未绑定" in text
    without = message(f"#{case_id} 您好", msg_id="no-staff")
    del without["senderStaffId"]
    assert "尚未绑定" in said(post(client, without))
    assert outbox_items("o-resident-7") == []
    with db.session_scope() as session:
        assert session.get(Case, case_id).status == "open"


def test_an_unknown_case_and_another_communitys_case_look_the_same(client):
    in_b = make_case("o-resident-8", community=B)
    for case_id in (in_b, 999_999, 99_999_999_999):
        answer = said(post(client, message(f"#{case_id} 您好", msg_id=f"m{case_id}")))
        assert answer == f"案件 #{case_id} 不存在或不在您的处理范围内"
    assert outbox_items("o-resident-8") == []
    # … while the officer of that community can answer it
    reply = post(client, message(f"#{in_b} 您好", staff="dt-b", msg_id="m-b"))
    assert said(reply).startswith(f"已答复案件 #{in_b}")


def test_a_closed_case_and_a_case_held_by_someone_else_answer_the_conflict(client):
    closed = make_case("o-resident-9", status="closed")
    held = make_case("o-resident-10")
    with db.session_scope() as session:
        other = session.get(User, user_id("officer_a2"))
        handling.claim(session=session, user=other, case_id=held)
    assert said(post(client, message(f"#{closed} 您好", msg_id="m-closed"))) == "该案件已办结"
    assert said(post(client, message(f"#{held} 您好", msg_id="m-held"))) == (
        "该案件已由 officer_a2 处理"
    )
    assert outbox_items("o-resident-9") == outbox_items("o-resident-10") == []


def test_a_trainer_bound_to_dingtalk_may_not_answer(client):
    case_id = make_case("o-resident-11")
    answer = said(post(client, message(f"#{case_id} 您好", staff="dt-trainer")))
    assert answer == "无权查看群众案件和会话"
    assert outbox_items("o-resident-11") == []


# ------------------------------------------------------------------ the form of the text


@pytest.mark.parametrize(
    "content, expected",
    [
        ("#{id} 您好，我是民警", "您好，我是民警"),
        ("＃{id}　您好，全角也行", "您好，全角也行"),
        ("@警民通助手 #{id} 群里@机器人", "群里@机器人"),
        ("  #{id}：冒号分隔  ", "冒号分隔"),
        ("#{id}\n第一行\n第二行", "第一行\n第二行"),
    ],
)
def test_the_forms_of_a_reply(client, content, expected):
    openid = f"o-form-{abs(hash(content)) % 10**8}"
    case_id = make_case(openid)
    answer = post(client, message(content.format(id=case_id), msg_id=openid))
    assert said(answer).startswith(f"已答复案件 #{case_id}")
    assert outbox_items(openid) == [(expected, "officer:officer_a")]


@pytest.mark.parametrize(
    "content", ["您好", "#", "#12", "＃12   ", "#abc 您好", "12 您好", "@警民通助手", ""]
)
def test_anything_else_gets_the_usage_hint(client, content):
    answer = said(post(client, message(content, msg_id=f"u{abs(hash(content))}")))
    assert answer.startswith("回复格式：#案件号 回复内容")


def test_a_picture_gets_the_usage_hint(client):
    body = message("", msg_id="pic")
    del body["text"]
    body["msgtype"] = "picture"
    body["content"] = {"downloadCode": "abc"}
    assert "回复格式" in said(post(client, body))


def test_a_reply_that_is_too_long_is_refused(client):
    case_id = make_case("o-resident-12")
    answer = said(post(client, message(f"#{case_id} " + "长" * 2001, msg_id="long")))
    assert "过长" in answer
    assert outbox_items("o-resident-12") == []


# ------------------------------------------------------------------ malformed, hostile


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        b'"text"',
        b"\xff\xfe",
        b'{"msgtype": "text"}',
        b'{"msgId": "m", "msgtype": "text"}',
        b'{"msgId": "m", "msgtype": "text", "text": {"content": [1]}}',
        b'{"msgId": "m\\u0000", "msgtype": "text", "text": {"content": "#1 a"}}',
        b'{"msgId": "m", "msgtype": "text", "text": {"content": "#1 \\ud800"}}',
        b'{"msgId": "' + b"x" * 65 + b'", "msgtype": "text", "text": {"content": "#1 a"}}',
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_a_signed_but_malformed_body_is_a_422(client, raw):
    assert post(client, raw).status_code == 422


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
CONTENT = st.one_of(
    st.text(max_size=60),
    st.builds(lambda n, t: f"#{n} {t}", st.integers(-5, 10**12), st.text(max_size=40)),
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "msgId": st.one_of(st.text(max_size=70), JSON),
        "msgtype": st.one_of(st.just("text"), st.text(max_size=10), JSON),
        "text": st.one_of(st.fixed_dictionaries({"content": st.one_of(CONTENT, JSON)}), JSON),
        "senderStaffId": st.one_of(st.sampled_from(["dt-a", "dt-b", "dt-x"]), JSON),
        "isInAtList": JSON,
        "conversationType": JSON,
    },
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(JSON, FIELDS))
def test_no_signed_body_is_a_server_error(client, body):
    answer = post(client, json.dumps(body).encode())
    assert answer.status_code in (200, 409, 422), answer.text
    if answer.status_code == 200:
        assert answer.json()["msgtype"] == "text" and answer.json()["text"]["content"]


def test_hostile_bodies_send_nothing_to_nobody(client):
    """After fuzz-like input, nothing reached any resident without a case in scope."""
    make_case("o-resident-13")
    for index, content in enumerate(
        ("#0 x", "#-1 x", "#2147483648 x", "#１２ x", "#1" + "0" * 30 + " x")
    ):
        assert post(client, message(content, msg_id=f"hostile-{index}")).status_code == 200
    with db.session_scope() as session:
        assert session.execute(select(func.count()).select_from(OutboxItem)).scalar_one() == 0


# ------------------------------------------------------------------ a reply to the card (issue 12)


def card_text(case_id: int) -> str:
    """The group card the dispatcher sends for a case, as DingTalk shows it."""
    from casework.dispatch import RoutedCase
    from gateway.dispatcher import build_notification

    routed = RoutedCase(
        id=case_id,
        category="noise_complaint",
        priority="normal",
        street="骆驼街道",
        community=A,
        location=None,
        summary="楼上装修",
        names=("officer_a",),
        mobiles=(),
    )
    return build_notification(routed, ["officer_a"], [], "http://console.test").text


def quoting(content: str, quoted: Any, *, msg_id: str, msg_type: str = "markdown") -> dict:
    """A reply to (quote of) an earlier message, as DingTalk's callback carries it."""
    body = message(content, msg_id=msg_id)
    body["text"] = {
        "content": content,
        "isReplyMsg": True,
        "repliedMsg": {
            "msgId": "robot-card-1",
            "msgType": msg_type,
            "senderId": "$:LWCP_v1:$robot",
            "createdAt": now_ms(),
            "content": quoted,
        },
    }
    return body


def test_a_reply_to_the_card_answers_its_case_without_typing_the_number(client):
    case_id = make_case("o-card-1")
    body = quoting("您好，我是社区民警，马上过来。", {"text": card_text(case_id)}, msg_id="card-1")
    assert said(post(client, body)).startswith(f"已答复案件 #{case_id}，该案件已由您认领")
    assert outbox_items("o-card-1") == [("您好，我是社区民警，马上过来。", "officer:officer_a")]
    with db.session_scope() as session:
        assert session.get(Case, case_id).claimed_by_id == user_id("officer_a")
        audit = session.execute(
            select(AuditEntry.action).where(AuditEntry.target_id == case_id)
        ).scalars()
        assert "reply_via_dingtalk" in list(audit)


@pytest.mark.parametrize(
    "shape",
    ["text", "title", "string", "rich_text"],
)
def test_the_quoted_message_may_come_in_several_shapes(client, shape):
    openid = f"o-card-shape-{shape}"
    case_id = make_case(openid)
    quoted: Any = {
        "text": {"text": f"噪音投诉案件 #{case_id}"},
        "title": {"title": f"噪音投诉案件 #{case_id}", "text": "（卡片）"},
        "string": f"噪音投诉案件 #{case_id}",
        "rich_text": {"richText": [{"text": "噪音投诉"}, {"text": f"案件 #{case_id}"}]},
    }[shape]
    body = quoting("@警民通助手 收到，已联系。", quoted, msg_id=f"shape-{shape}")
    assert said(post(client, body)).startswith(f"已答复案件 #{case_id}")
    assert outbox_items(openid) == [("收到，已联系。", "officer:officer_a")]


def test_an_explicit_number_wins_over_the_quoted_card(client):
    quoted_case, named_case = make_case("o-card-2"), make_case("o-card-3")
    body = quoting(
        f"#{named_case} 这条回复给另一个案件", {"text": card_text(quoted_case)}, msg_id="c2"
    )
    assert said(post(client, body)).startswith(f"已答复案件 #{named_case}")
    assert outbox_items("o-card-2") == []
    assert outbox_items("o-card-3") == [("这条回复给另一个案件", "officer:officer_a")]


def test_a_quote_without_a_case_marker_gets_a_hint_and_sends_nothing(client):
    make_case("o-card-4")
    body = quoting("好的", {"text": "今天下午开会"}, msg_id="c4", msg_type="text")
    answer = said(post(client, body))
    assert answer.startswith("未能从您引用的消息中识别案件号") and "回复格式" in answer
    assert outbox_items("o-card-4") == []


def test_a_quoted_card_of_another_community_is_out_of_scope(client):
    in_b = make_case("o-card-5", community=B)
    body = quoting("您好", {"text": card_text(in_b)}, msg_id="c5")
    assert said(post(client, body)) == f"案件 #{in_b} 不存在或不在您的处理范围内"
    assert outbox_items("o-card-5") == []


def test_a_redelivered_reply_to_the_card_sends_nothing_twice(client):
    case_id = make_case("o-card-6")
    body = quoting("您好，收到", {"text": card_text(case_id)}, msg_id="c6")
    assert said(post(client, body)) == said(post(client, body))
    assert outbox_items("o-card-6") == [("您好，收到", "officer:officer_a")]


@pytest.mark.parametrize(
    "template, expected",
    [
        ("「警民通助手：噪音投诉案件 #{id} 楼上装修」\n您好，我们马上处理", "您好，我们马上处理"),
        ("「警民通助手：噪音投诉案件 #{id}」\n------\n您好，已派人", "您好，已派人"),
        ("噪音投诉案件 #{id}\n- 地点：骆驼街道\n------\n我们十分钟后到", "我们十分钟后到"),
        ("@警民通助手 案件 #{id} 您好，已收到", "您好，已收到"),
        ("案件＃{id}：全角也行", "全角也行"),
    ],
    ids=["bracket", "bracket-and-dashes", "dashes", "marker-first", "full-width"],
)
def test_a_text_that_carries_the_quoted_card_answers_its_case(client, template, expected):
    openid = f"o-card-text-{abs(hash(template)) % 10**8}"
    case_id = make_case(openid)
    answer = post(client, message(template.format(id=case_id), msg_id=openid))
    assert said(answer).startswith(f"已答复案件 #{case_id}")
    assert outbox_items(openid) == [(expected, "officer:officer_a")]


@pytest.mark.parametrize(
    "template",
    [
        "「案件 #{id} 和案件 #{other}」\n------\n您好",  # two cases: which one?
        "「今天的会议」\n您好",  # a quote naming no case
        "我看了案件 #{id} 的情况",  # a marker inside a sentence is not a reply
        "「噪音投诉案件 #{id}」\n------\n",  # a quote and nothing to send
    ],
)
def test_an_unclear_quote_sends_nothing(client, template):
    openid = f"o-card-unclear-{abs(hash(template)) % 10**8}"
    case_id = make_case(openid)
    content = template.format(id=case_id, other=case_id + 1)
    answer = said(post(client, message(content, msg_id=openid)))
    assert "回复格式" in answer
    assert outbox_items(openid) == []


def test_every_card_ends_with_how_to_answer_from_dingtalk():
    assert card_text(7).splitlines()[-1] == (
        "回复方式：在群里 @机器人 发送“#7 回复内容”，或直接引用本条消息回复。"
    )


QUOTES = st.fixed_dictionaries(
    {"content": CONTENT},
    optional={
        "isReplyMsg": JSON,
        "repliedMsg": st.one_of(
            JSON,
            st.fixed_dictionaries(
                {},
                optional={
                    "msgId": JSON,
                    "content": st.one_of(
                        JSON,
                        st.fixed_dictionaries({"text": st.one_of(CONTENT, JSON)}),
                        st.fixed_dictionaries({"richText": st.lists(JSON, max_size=3)}),
                    ),
                },
            ),
        ),
    },
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=QUOTES, msg_id=st.text(min_size=1, max_size=20))
def test_no_signed_quote_is_a_server_error(client, text, msg_id):
    body = message("", msg_id=msg_id)
    body["text"] = text
    answer = post(client, json.dumps(body).encode())
    assert answer.status_code in (200, 409, 422), answer.text
