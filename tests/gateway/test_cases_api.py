"""Officers take over: routing, notification, scoping, claim/reply/transfer/divert/close,
the rating, the governance-platform loop — through the API on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from sqlalchemy import select

from casework import accounts, db, handling, tickets
from casework.cases import open_case, open_ticket
from casework.models import Case, Conversation, OutboxItem, Ticket, User
from gateway.dispatcher import Dispatcher
from integrations import signed_webhooks
from integrations.notify import NotifyError, RecordingNotifier
from tests.gateway.conftest import text_xml


def add_user(name: str, role: str, **extra) -> int:
    with db.session_scope() as session:
        user = accounts.create_user(
            session=session,
            username=name,
            password="correct-horse",
            role=role,
            community=extra.pop("community", None),
            desk=extra.pop("desk", None),
        )
        for key, value in extra.items():
            setattr(user, key, value)
        return user.id


def token(wechat, name: str) -> dict[str, str]:
    answer = wechat.client.post(
        "/api/auth/token", data={"username": name, "password": "correct-horse"}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def new_case(openid: str, category: str, priority: str, **details) -> int:
    with db.session_scope() as session:
        return open_case(
            session=session,
            sender_id=openid,
            category=category,
            priority=priority,
            reason="test",
            summary=f"{category} 测试",
            details=details,
        ).id


def dispatch(wechat, notifier: RecordingNotifier, governance_client=None) -> None:
    dispatcher = Dispatcher(
        database_url=None,
        notifier=notifier,
        governance=governance_client,
        console_url="http://console.test",
    )
    asyncio.run(dispatcher.run_once())


@pytest.fixture
def bureau(wechat):
    """A commander on duty, a community officer of 万景社区 and a 反诈 desk officer."""
    return {
        "wang": add_user(
            "wang", "commander", display_name="王指挥", mobile="13800000001", on_duty=True
        ),
        "zhang": add_user(
            "zhang", "officer", community="万景社区", display_name="张警官", mobile="13800000002"
        ),
        "li": add_user("li", "officer", desk="反诈", display_name="李警官", mobile="13800000003"),
        "chen": add_user("chen", "trainer"),
    }


def case(case_id: int) -> Case:
    with db.session_scope() as session:
        found = session.get(Case, case_id)
        assert found is not None
        return found


# ------------------------------------------------------------------ routing and notification


def test_cases_are_routed_to_the_desk_or_community_officer_and_announced(wechat, bureau):
    fraud = new_case("o-f", "fraud_suspicion", "urgent", amount_yuan=20000)
    noise = new_case("o-n", "noise_complaint", "normal", community="万景社区", street="骆驼街道")
    lost = new_case("o-x", "other", "normal")
    notifier = RecordingNotifier()
    dispatch(wechat, notifier)
    assert case(fraud).assigned_to_id == bureau["li"]
    assert case(noise).assigned_to_id == bureau["zhang"]
    assert case(lost).assigned_to_id == bureau["wang"]  # unroutable: the duty commander
    assert {c: case(c).notify_status for c in (fraud, noise, lost)} == dict.fromkeys(
        (fraud, noise, lost), "sent"
    )
    urgent = next(n for n in notifier.sent if n.case_id == fraud)
    # urgent: the desk officer and the commander on duty are @-mentioned (issue 12)
    assert urgent.urgent and urgent.mobiles == ("13800000003", "13800000001")
    assert "@13800000003 @13800000001" in urgent.text
    assert "http://console.test/console/cases/" in urgent.url
    due = case(fraud).due_at - case(fraud).created_at
    assert due.total_seconds() == 300  # urgent: first reply within 5 minutes
    dispatch(wechat, notifier)
    assert len(notifier.sent) == 3  # announced once


def test_an_emergency_also_goes_to_the_duty_commander(wechat, bureau):
    emergency = new_case("o-e", "emergency", "urgent", community="万景社区")
    notifier = RecordingNotifier()
    dispatch(wechat, notifier)
    [sent] = notifier.sent
    assert case(emergency).assigned_to_id == bureau["zhang"]
    assert set(sent.mobiles) == {"13800000002", "13800000001"}


def test_a_failed_notification_is_visible_in_the_queue(wechat, bureau):
    failing = new_case("o-fail", "noise_complaint", "normal", community="万景社区")
    notifier = RecordingNotifier()
    notifier.fail_next(NotifyError("DingTalk 310000 sign not match", permanent=True))
    dispatch(wechat, notifier)
    queue = wechat.client.get("/api/cases", headers=token(wechat, "wang")).json()
    row = next(r for r in queue if r["id"] == failing)
    assert (row["notify_status"], row["notify_error"]) == (
        "failed",
        "DingTalk 310000 sign not match",
    )


# ------------------------------------------------------------------ who sees what


def test_each_role_sees_its_own_cases(wechat, bureau):
    fraud = new_case("o-s1", "fraud_suspicion", "urgent")
    noise = new_case("o-s2", "noise_complaint", "normal", community="万景社区")
    dispatch(wechat, RecordingNotifier())
    ids = {
        name: [c["id"] for c in wechat.client.get("/api/cases", headers=token(wechat, name)).json()]
        for name in ("wang", "zhang", "li")
    }
    assert sorted(ids["wang"]) == sorted([fraud, noise])
    assert ids["zhang"] == [noise]
    assert ids["li"] == [fraud]
    assert (
        wechat.client.get(f"/api/cases/{fraud}", headers=token(wechat, "zhang")).status_code == 404
    )
    assert wechat.client.get("/api/cases", headers=token(wechat, "chen")).status_code == 403


def test_the_queue_is_ordered_by_priority_then_time_left(wechat, bureau):
    low = new_case("o-q1", "other", "low")
    urgent = new_case("o-q2", "fraud_suspicion", "urgent")
    normal = new_case("o-q3", "other", "normal")
    dispatch(wechat, RecordingNotifier())
    queue = wechat.client.get("/api/cases", headers=token(wechat, "wang")).json()
    assert [c["id"] for c in queue] == [urgent, normal, low]
    assert 0 < queue[0]["seconds_left"] <= 300 and queue[0]["overdue"] is False


# ------------------------------------------------------------------ handling a case


def test_claim_reply_note_close_and_the_rating(wechat, rasa, bureau):
    wechat.post(text_xml("o-flow", "我被骗了"))
    case_id = new_case("o-flow", "fraud_suspicion", "urgent", amount_yuan=5000)
    dispatch(wechat, RecordingNotifier())
    li = token(wechat, "li")
    claimed = wechat.client.post(f"/api/cases/{case_id}/claim", headers=li)
    assert claimed.status_code == 200 and claimed.json()["claimed_by"]["name"] == "李警官"
    wang = token(wechat, "wang")
    taken = wechat.client.post(f"/api/cases/{case_id}/claim", headers=wang)
    assert (taken.status_code, taken.json()["detail"]) == (409, "该案件已由 李警官 处理")

    sent = wechat.client.post(
        f"/api/cases/{case_id}/reply",
        headers=li,
        json={"text": "您好，我是反诈民警，请保留转账凭证。"},
    )
    assert sent.status_code == 200
    with db.session_scope() as session:
        item = session.get(OutboxItem, sent.json()["outbox_id"])
        assert (item.openid, item.text) == ("o-flow", "您好，我是反诈民警，请保留转账凭证。")
    assert case(case_id).first_reply_at is not None
    wechat.client.post(f"/api/cases/{case_id}/notes", headers=li, json={"text": "已联系银行止付"})

    # while the officer owns it, the resident's messages reach the officer, not the bot
    calls = len(rasa.calls)
    assert wechat.post(text_xml("o-flow", "好的谢谢民警")).text == "success"
    assert len(rasa.calls) == calls

    detail = wechat.client.get(f"/api/cases/{case_id}", headers=li).json()
    assert [n["text"] for n in detail["notes"]] == ["已联系银行止付"]
    assert [m["content"] for m in detail["transcript"]][-2:] == [
        "您好，我是反诈民警，请保留转账凭证。",
        "好的谢谢民警",
    ]
    assert detail["details"]["amount_yuan"] == 5000

    closed = wechat.client.post(
        f"/api/cases/{case_id}/close", headers=li, json={"resolution": "已止付 5000 元"}
    )
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert rasa.resumed == ["o-flow"]
    with db.session_scope() as session:
        conversation = session.execute(
            select(Conversation).where(Conversation.openid == "o-flow")
        ).scalar_one()
        assert conversation.owner == "bot"
        texts = [
            i.text
            for i in session.execute(
                select(OutboxItem).where(OutboxItem.openid == "o-flow")
            ).scalars()
        ]
        assert texts[-1] == handling.RATING_QUESTION

    thanks = wechat.reply_text(wechat.post(text_xml("o-flow", "5")))
    assert thanks == handling.RATING_THANKS
    assert case(case_id).rating == 5
    assert wechat.reply_text(wechat.post(text_xml("o-flow", "护照怎么办"))) == "收到：护照怎么办"


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("5", 5),
        ("4分", 4),
        ("非常满意", 5),
        ("一般", 3),
        ("不满意", 2),
        ("好的", None),
        ("10", None),
    ],
)
def test_parse_rating(text, rating):
    assert handling.parse_rating(text) == rating


def test_transfer_to_a_desk_reroutes_and_announces_again(wechat, bureau):
    case_id = new_case("o-t", "noise_complaint", "normal", community="万景社区")
    notifier = RecordingNotifier()
    dispatch(wechat, notifier)
    zhang = token(wechat, "zhang")
    wechat.client.post(f"/api/cases/{case_id}/claim", headers=zhang)
    moved = wechat.client.post(
        f"/api/cases/{case_id}/transfer", headers=zhang, json={"desk": "反诈"}
    )
    assert moved.status_code == 200 and moved.json()["claimed_by"] is None
    dispatch(wechat, notifier)
    assert case(case_id).assigned_to_id == bureau["li"]
    assert len(notifier.sent) == 2
    bad = wechat.client.post(
        f"/api/cases/{case_id}/transfer", headers=token(wechat, "wang"), json={"desk": "宣传"}
    )
    assert bad.status_code == 422


def test_divert_makes_a_ticket_and_closes_the_case(wechat, bureau):
    case_id = new_case("o-d", "noise_complaint", "normal", community="万景社区")
    dispatch(wechat, RecordingNotifier())
    answer = wechat.client.post(
        f"/api/cases/{case_id}/divert",
        headers=token(wechat, "zhang"),
        json={"kind": "noise", "note": "装修噪音，非警情"},
    )
    assert answer.status_code == 200
    with db.session_scope() as session:
        ticket = session.get(Ticket, answer.json()["ticket_id"])
        assert (ticket.kind, ticket.status, ticket.case_id, ticket.community) == (
            "noise",
            "pending",
            case_id,
            "万景社区",
        )
    assert case(case_id).status == "closed"


def test_two_officers_claiming_at_once_one_wins(database_url, monkeypatch):
    """Real concurrency: two threads, two sessions, the same case, at the same moment."""
    ids = {}
    with db.session_scope() as session:
        for name in ("a", "b"):
            ids[name] = accounts.create_user(
                session=session, username=name, password="correct-horse", role="commander"
            ).id
        case_id = open_case(
            session=session,
            sender_id="o-race",
            category="other",
            priority="normal",
            reason="t",
            summary="t",
        ).id
    barrier, results = threading.Barrier(2), {}

    def attempt(name: str) -> None:
        try:
            with db.session_scope() as session:
                user = session.get(User, ids[name])
                barrier.wait()
                handling.claim(session=session, user=user, case_id=case_id)
            results[name] = "won"
        except handling.Conflict as conflict:
            results[name] = str(conflict)
        except Exception as error:  # noqa: BLE001 — reported by the assertion below
            results[name] = f"error: {error!r}"

    threads = [threading.Thread(target=attempt, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2, results
    assert list(results.values()).count("won") == 1, results
    [loser] = [r for r in results.values() if r != "won"]
    assert loser.startswith("该案件已由"), results
    winner = next(name for name, r in results.items() if r == "won")
    assert case(case_id).claimed_by_id == ids[winner]


# ------------------------------------------------------------------ the governance loop


def signed_callback(wechat, ticket_id: int, status: str, note: str = "", secret=None):
    body = json.dumps({"status": status, "note": note}, ensure_ascii=False).encode()
    secret = secret or wechat.client.app.state.settings.governance_callback_secret
    path = f"/api/tickets/{ticket_id}/status"
    headers = signed_webhooks.signed_headers(secret=secret, method="POST", path=path, body=body)
    return wechat.client.post(path, content=body, headers=headers)


def make_ticket(
    openid: str, community: str = "万景社区", location: str = "骆驼街道万景社区3幢"
) -> int:
    with db.session_scope() as session:
        return open_ticket(
            session=session,
            sender_id=openid,
            kind="noise",
            summary="楼上装修",
            location=location,
            community=community,
        ).id


def test_platform_status_callbacks_update_the_ticket_and_tell_the_resident(wechat, bureau):
    ticket_id = make_ticket("o-g1")
    assert signed_callback(wechat, ticket_id, "accepted").status_code == 200
    done = signed_callback(wechat, ticket_id, "resolved", "已劝导施工方")
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    with db.session_scope() as session:
        told = [
            i.text
            for i in session.execute(
                select(OutboxItem).where(OutboxItem.openid == "o-g1")
            ).scalars()
        ]
    assert told[0].startswith(f"您反映的噪音问题（工单号 {ticket_id}）已被属地综合治理中心受理")
    assert "已劝导施工方" in told[1]


def test_unsigned_or_badly_signed_callbacks_are_refused(wechat, bureau):
    ticket_id = make_ticket("o-g2")
    assert signed_callback(wechat, ticket_id, "resolved", secret="wrong").status_code == 401
    plain = wechat.client.post(f"/api/tickets/{ticket_id}/status", json={"status": "resolved"})
    assert plain.status_code == 401
    assert signed_callback(wechat, ticket_id, "done").status_code == 422
    assert signed_callback(wechat, 99999, "resolved").status_code == 404


def test_a_rejected_ticket_comes_back_to_an_officer(wechat, bureau):
    ticket_id = make_ticket("o-g3")
    signed_callback(wechat, ticket_id, "rejected", "不属于治理范围")
    with db.session_scope() as session:
        [back] = session.execute(select(Case).where(Case.sender_id == "o-g3")).scalars()
        assert (back.reason, back.details["ticket_id"]) == ("ticket_rejected", ticket_id)


def test_a_second_report_at_the_same_place_is_linked_and_both_are_told(wechat, bureau):
    first, second = make_ticket("o-g4"), make_ticket("o-g5")
    with db.session_scope() as session:
        assert (session.get(Ticket, second).status, session.get(Ticket, second).linked_to_id) == (
            "linked",
            first,
        )
    other_place = make_ticket("o-g6", community="俞范社区", location="蛟川街道俞范社区2幢")
    with db.session_scope() as session:
        assert session.get(Ticket, other_place).status == "pending"
    signed_callback(wechat, first, "resolved")
    with db.session_scope() as session:
        told = {i.openid for i in session.execute(select(OutboxItem)).scalars()}
    assert {"o-g4", "o-g5"} <= told


def test_pending_tickets_are_sent_and_overdue_ones_come_back(wechat, bureau):
    ticket_id = make_ticket("o-g7")

    class Platform:
        def __init__(self):
            self.received = []

        def send_ticket(self, payload):
            self.received.append(payload)
            return {"ok": True}

    platform = Platform()
    dispatch(wechat, RecordingNotifier(), platform)
    assert [p["ticket_id"] for p in platform.received] == [ticket_id]
    with db.session_scope() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket.status == "sent"
        ticket.due_at = ticket.created_at.replace(year=2000)
    dispatch(wechat, RecordingNotifier(), platform)
    with db.session_scope() as session:
        [back] = session.execute(select(Case).where(Case.sender_id == "o-g7")).scalars()
        assert back.reason == "ticket_overdue"
        assert tickets.return_overdue(session=session) == []  # only once


# ------------------------------------------------------------------ live updates


def test_events_stream_tells_the_console_about_a_new_case(wechat, bureau):
    """Over real HTTP (uvicorn), since the test client cannot stream."""
    import httpx
    import uvicorn

    from gateway.app import create_app

    settings = wechat.client.app.state.settings
    app = create_app(
        settings, start_outbox=False, rasa=wechat.client.app.state.rasa, probe_actions=False
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    ticket = wechat.client.post("/api/events/ticket", headers=token(wechat, "wang")).json()
    try:
        assert httpx.get(f"{base}/api/events", params={"ticket": "nope"}).status_code == 401
        received: list[str] = []
        threading.Timer(1.5, lambda: new_case("o-live", "emergency", "urgent")).start()
        with httpx.stream(
            "GET", f"{base}/api/events", params={"ticket": ticket["ticket"]}, timeout=20
        ) as stream:
            for line in stream.iter_lines():
                received.append(line)
                if '"priority": "urgent"' in line or time.time() > deadline + 20:
                    break
        assert "event: case" in received
        assert any('"priority": "urgent"' in line for line in received)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_every_officer_action_is_audited(wechat, bureau):
    from casework.models import AuditEntry

    case_id = new_case("o-audit", "noise_complaint", "normal", community="万景社区")
    dispatch(wechat, RecordingNotifier())
    zhang = token(wechat, "zhang")
    wechat.client.post("/api/auth/token", data={"username": "zhang", "password": "wrong-one"})
    wechat.client.post(f"/api/cases/{case_id}/claim", headers=zhang)
    wechat.client.post(f"/api/cases/{case_id}/reply", headers=zhang, json={"text": "您好"})
    wechat.client.post(f"/api/cases/{case_id}/notes", headers=zhang, json={"text": "备注"})
    wechat.client.post(f"/api/cases/{case_id}/close", headers=zhang, json={"resolution": "已处理"})
    with db.session_scope() as session:
        actions = [
            (e.action, e.actor_id)
            for e in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()
        ]
    zid = bureau["zhang"]
    assert actions == [
        ("login", zid),
        ("login_failed", None),
        ("claim", zid),
        ("read_case", zid),  # the claim's answer carries the transcript
        ("claim", zid),
        ("reply", zid),
        ("note", zid),
        ("close", zid),
    ]


def test_admin_sees_everything_like_the_commander(wechat, bureau):
    add_user("root", "admin")
    case_id = new_case("o-admin", "fraud_suspicion", "high")
    assert [
        c["id"] for c in wechat.client.get("/api/cases", headers=token(wechat, "root")).json()
    ] == [case_id]
