"""Personal DingTalk notifications and the urgent-case escalation (issue 12), on SQLite
and PostgreSQL: each officer routing considers for a case (with a DingTalk id) gets one
work notification; an urgent case @-mentions the commanders in the group and, still
unclaimed after its response target, is re-notified to them in the group and personally
— once, also with two dispatchers in threads on PostgreSQL. DingTalk is the recording
stand-in (simulated); time moves by an injected clock, never by sleeping."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from casework import accounts, case_notices, claims, db, handling
from casework.cases import RESPONSE_TARGETS, open_case
from casework.models import AuditEntry, Case, CaseNotice, User
from gateway.dispatcher import Dispatcher
from integrations.notify import Notification, NotifyError, RecordingNotifier
from tests.gateway.test_claims import Clock, in_threads, postgresql_only, repeat

A, B = "万景社区", "清水浦社区"
COMMANDER_MOBILE, OFFICER_MOBILE = "13700001111", "13911112222"
URGENT_TARGET = RESPONSE_TARGETS["urgent"]


def people() -> None:
    """Two officers of A with DingTalk, one without; one of B; two 反诈 desk officers;
    the commander on duty (with DingTalk) and another commander off duty."""
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("a1", "officer", {"community": A, "dingtalk_id": "dt-a1", "mobile": OFFICER_MOBILE}),
        ("a2", "officer", {"community": A, "dingtalk_id": "dt-a2"}),
        ("a3", "officer", {"community": A}),
        ("b1", "officer", {"community": B, "dingtalk_id": "dt-b1"}),
        ("fz1", "officer", {"desk": "反诈", "dingtalk_id": "dt-fz1"}),
        ("fz2", "officer", {"desk": "反诈", "dingtalk_id": "dt-fz2"}),
        ("chief", "commander", {"dingtalk_id": "dt-chief", "mobile": COMMANDER_MOBILE}),
        ("deputy", "commander", {"dingtalk_id": "dt-deputy", "mobile": "13700002222"}),
    ]
    with db.session_scope() as session:
        for name, role, extra in specs:
            accounts.create_user(
                session=session, username=name, password="correct-horse", role=role, **extra
            )
        chief = session.execute(select(User).where(User.username == "chief")).scalar_one()
        chief.on_duty = True


def new_case(n: int, *, category: str = "noise_complaint", priority: str = "normal") -> int:
    with db.session_scope() as session:
        return open_case(
            session=session,
            sender_id=f"o-p{n}",
            category=category,
            priority=priority,
            reason="test",
            summary=f"案件{n}：对方电话 13812345678",
            details={"street": "骆驼街道", "community": A},
        ).id


def dispatcher(database_url: str, owner: str, *, clock=None, group=None, personal=None):
    return Dispatcher(
        database_url=database_url,
        notifier=group,
        personal=personal,
        governance=None,
        console_url="http://console.test",
        owner=owner,
        clock=clock or Clock(),
    )


def recipients(notifier: RecordingNotifier) -> Counter[tuple[int, str]]:
    return Counter((n.case_id, uid) for n in notifier.sent for uid in n.user_ids)


def notices() -> list[tuple[int, str, str, str, str]]:
    with db.session_scope() as session:
        rows = session.execute(
            select(
                CaseNotice.case_id,
                CaseNotice.kind,
                CaseNotice.channel,
                CaseNotice.recipient,
                CaseNotice.status,
            ).order_by(CaseNotice.id)
        ).all()
    return [tuple(row) for row in rows]


def user(name: str) -> User:
    with db.session_scope() as session:
        found = session.execute(select(User).where(User.username == name)).scalar_one()
        session.expunge(found)
        return found


def run(worker: Dispatcher, passes: int = 1) -> None:
    for _ in range(passes):
        asyncio.run(worker.run_once())


# ------------------------------------------------------------------ personal announcements


def test_each_officer_of_the_community_with_dingtalk_is_told_once(database_url):
    people()
    case_id = new_case(1)
    group, personal = RecordingNotifier(), RecordingNotifier()
    worker = dispatcher(database_url, "host:1", group=group, personal=personal)
    run(worker, 3)
    assert recipients(personal) == Counter({(case_id, "dt-a1"): 1, (case_id, "dt-a2"): 1})
    assert [n.case_id for n in group.sent] == [case_id]  # the group message as before
    message = personal.sent[0]
    assert message.mobiles == () and "@" not in message.text.replace("@机器人", "")
    assert message.url == f"http://console.test/console/cases/{case_id}"
    assert "13812345678" not in message.text  # masked when composed, again when sent
    assert message.text.splitlines()[-1] == (
        f"回复方式：在群里 @机器人 发送“#{case_id} 回复内容”。"
    )
    assert group.sent[0].text.splitlines()[-1] == (
        f"回复方式：在群里 @机器人 发送“#{case_id} 回复内容”，或直接引用本条消息回复。"
    )
    assert {row[4] for row in notices()} == {"sent"}


def test_a_desk_case_goes_to_the_desk_officers(database_url):
    people()
    case_id = new_case(2, category="fraud_suspicion")
    personal = RecordingNotifier()
    run(dispatcher(database_url, "host:1", personal=personal), 2)
    assert set(recipients(personal)) == {(case_id, "dt-fz1"), (case_id, "dt-fz2")}


def test_a_transferred_case_tells_its_new_officers_and_nobody_twice(database_url):
    people()
    case_id = new_case(3)
    personal = RecordingNotifier()
    worker = dispatcher(database_url, "host:1", group=RecordingNotifier(), personal=personal)
    run(worker)
    with db.session_scope() as session:
        handling.transfer(
            session=session, user=session.merge(user("chief")), case_id=case_id, desk="反诈"
        )
    run(worker, 2)
    assert recipients(personal) == Counter(
        {(case_id, uid): 1 for uid in ("dt-a1", "dt-a2", "dt-fz1", "dt-fz2")}
    )


def test_without_work_notifications_nothing_personal_is_recorded(database_url):
    people()
    new_case(4)
    group = RecordingNotifier()
    run(dispatcher(database_url, "host:1", group=group), 2)
    assert len(group.sent) == 1 and notices() == []


def test_a_personal_failure_is_retried_with_backoff_and_a_permanent_one_stops(database_url):
    people()
    case_id = new_case(5)
    clock = Clock()
    personal = RecordingNotifier()
    personal.fail_next(NotifyError("errcode -1 系统繁忙", permanent=False))
    personal.fail_next(NotifyError("errcode 40089 AppSecret 不正确", permanent=True))
    worker = dispatcher(database_url, "host:1", clock=clock, personal=personal)
    run(worker)
    assert personal.attempts == 2 and personal.sent == []
    with db.session_scope() as session:
        rows = {
            n.recipient: (n.status, n.error, n.attempts)
            for n in session.execute(select(CaseNotice)).scalars()
        }
    assert rows == {
        "dt-a1": ("pending", "errcode -1 系统繁忙", 1),
        "dt-a2": ("failed", "errcode 40089 AppSecret 不正确", 1),
    }
    run(worker)  # not due yet: nobody is hammered
    assert personal.attempts == 2
    clock.advance(seconds=5)
    run(worker)
    assert recipients(personal) == Counter({(case_id, "dt-a1"): 1})


def test_a_claim_of_a_dead_worker_is_taken_over_after_it_expires(database_url):
    people()
    clock = Clock()
    case_id = new_case(6)
    run(dispatcher(database_url, "host:router", clock=clock, personal=None))  # routes only
    with db.session_scope() as session:  # rows exist only with a personal notifier:
        case = session.get(Case, case_id)
        recipients_ = case_notices.personal_recipients(session, case, [])
        case_notices.add_personal_announcements(session=session, case=case, people=recipients_)
    with db.session_scope() as session:  # a worker claims them and dies
        dead = case_notices.notices_due(
            session=session, personal=True, group=True, owner="host:dead", now=clock()
        )
    assert len(dead) == 2
    personal = RecordingNotifier()
    alive = dispatcher(database_url, "host:alive", clock=clock, personal=personal)
    run(alive)
    assert personal.attempts == 0
    clock.advance(seconds=claims.CLAIM_TTL.total_seconds() + 1)
    run(alive)
    assert set(recipients(personal)) == {(case_id, "dt-a1"), (case_id, "dt-a2")}
    with db.session_scope() as session:
        late = case_notices.record_notice(
            session=session, notice_id=dead[0].notice_id, error="timeout", owner="host:dead"
        )
    assert late == "lost" and {row[4] for row in notices()} == {"sent"}


def test_two_dispatchers_interleaved_send_each_personal_notice_once(database_url):
    people()
    ids = [new_case(10 + n) for n in range(4)]
    personal = RecordingNotifier()
    first = dispatcher(database_url, "host:1", personal=personal)
    second = dispatcher(database_url, "host:2", personal=personal)
    run(first)  # routes all, sends what it claimed
    with db.session_scope() as session:
        for notice in session.execute(select(CaseNotice)).scalars():  # as if newly routed
            notice.status, notice.attempts = "pending", 0
    personal.sent.clear()
    with db.session_scope() as session:  # the first worker claims three, not yet sent
        claimed = case_notices.notices_due(
            session=session, personal=True, group=False, owner="host:1", limit=3
        )
    run(second)
    for notice in claimed:
        personal.send(Notification(notice.case.id, "t", "x", "", False, user_ids=notice.user_ids))
        assert first._record_case_notice(notice.notice_id, None, False) == "sent"
    run(first)
    run(second)
    assert recipients(personal) == Counter(
        {(case_id, uid): 1 for case_id in ids for uid in ("dt-a1", "dt-a2")}
    )


@postgresql_only
def test_two_dispatchers_in_threads_tell_each_officer_exactly_once(database_url):
    people()
    ids = [new_case(100 + n) for n in range(30)]
    personal, group = RecordingNotifier(), RecordingNotifier()
    workers = [
        dispatcher(database_url, f"host:{n}", group=group, personal=personal) for n in (1, 2)
    ]
    in_threads(*(repeat(w.run_once, 8) for w in workers))
    assert recipients(personal) == Counter(
        {(case_id, uid): 1 for case_id in ids for uid in ("dt-a1", "dt-a2")}
    )
    assert personal.attempts == 60
    assert Counter(n.case_id for n in group.sent) == Counter(ids)
    assert {(row[4]) for row in notices()} == {"sent"}


# ------------------------------------------------------------------ urgent cases


def test_an_urgent_case_at_mentions_the_commander_on_duty_in_the_group(database_url):
    people()
    case_id = new_case(20, priority="urgent")
    group = RecordingNotifier()
    run(dispatcher(database_url, "host:1", group=group))
    [message] = group.sent
    assert message.urgent and set(message.mobiles) == {OFFICER_MOBILE, COMMANDER_MOBILE}
    assert f"@{COMMANDER_MOBILE}" in message.text
    assert message.case_id == case_id


def escalations() -> list[tuple[int, str, str, str, str]]:
    return [row for row in notices() if row[1] == "escalate"]


def test_an_urgent_case_unclaimed_after_its_target_is_escalated_once(database_url):
    people()
    clock = Clock()
    case_id = new_case(21, priority="urgent")
    group, personal = RecordingNotifier(), RecordingNotifier()
    worker = dispatcher(database_url, "host:1", clock=clock, group=group, personal=personal)
    run(worker)
    with db.session_scope() as session:
        due_at = session.get(Case, case_id).due_at
    assert due_at is not None
    clock.now = due_at - timedelta(seconds=1)
    run(worker)
    assert escalations() == []
    clock.now = due_at
    run(worker, 3)
    assert escalations() == [
        (case_id, "escalate", "group", "", "sent"),
        (case_id, "escalate", "personal", "dt-chief", "sent"),
    ]
    [group_escalation] = [n for n in group.sent if n.title.startswith("【超时未认领】")]
    assert group_escalation.mobiles == (COMMANDER_MOBILE,)
    assert f"@{COMMANDER_MOBILE}" in group_escalation.text
    assert "超过 5 分钟无人认领" in group_escalation.text
    assert group_escalation.text.splitlines()[-1].startswith("回复方式：在群里 @机器人")
    personal_escalation = [n for n in personal.sent if n.title.startswith("【超时未认领】")]
    assert [n.user_ids for n in personal_escalation] == [("dt-chief",)]
    clock.advance(hours=2)
    run(worker, 2)  # never again
    assert len(escalations()) == 2
    with db.session_scope() as session:
        assert session.get(Case, case_id).escalated_at is not None
        audit = session.execute(
            select(AuditEntry.action).where(AuditEntry.target_id == case_id)
        ).scalars()
        assert list(audit).count("case_escalated") == 1


def test_a_claimed_or_non_urgent_case_is_not_escalated(database_url):
    people()
    clock = Clock()
    claimed = new_case(22, priority="urgent")
    normal = new_case(23, priority="normal", category="dog_complaint")
    worker = dispatcher(database_url, "host:1", clock=clock, group=RecordingNotifier())
    run(worker)
    with db.session_scope() as session:
        handling.claim(session=session, user=session.merge(user("a1")), case_id=claimed)
    clock.advance(
        seconds=URGENT_TARGET.total_seconds() + RESPONSE_TARGETS["normal"].total_seconds()
    )
    run(worker)
    assert escalations() == []
    with db.session_scope() as session:
        assert session.get(Case, normal).escalated_at is None


def test_escalation_is_one_conditional_update(database_url):
    people()
    clock = Clock()
    case_id = new_case(24, priority="urgent")
    run(dispatcher(database_url, "host:1", clock=clock))
    clock.advance(seconds=URGENT_TARGET.total_seconds() + 1)
    with db.session_scope() as session:
        first = case_notices.escalate_unclaimed(
            session=session, now=clock(), personal=True, group=True
        )
    with db.session_scope() as session:
        second = case_notices.escalate_unclaimed(
            session=session, now=clock(), personal=True, group=True
        )
    assert (first, second) == ([case_id], [])


@postgresql_only
def test_two_dispatchers_in_threads_escalate_each_case_once(database_url):
    people()
    clock = Clock()
    ids = [new_case(200 + n, priority="urgent") for n in range(12)]
    group, personal = RecordingNotifier(), RecordingNotifier()
    workers = [
        dispatcher(database_url, f"host:{n}", clock=clock, group=group, personal=personal)
        for n in (1, 2)
    ]
    run(workers[0], 2)  # routed and announced
    clock.advance(seconds=URGENT_TARGET.total_seconds() + 1)
    in_threads(*(repeat(w.run_once, 4) for w in workers))
    escalated = [n for n in group.sent if n.title.startswith("【超时未认领】")]
    assert Counter(n.case_id for n in escalated) == Counter(ids)
    chief = [n for n in personal.sent if n.title.startswith("【超时未认领】")]
    assert Counter((n.case_id, n.user_ids) for n in chief) == Counter(
        {(case_id, ("dt-chief",)): 1 for case_id in ids}
    )


def test_an_escalation_claimed_before_it_is_sent_is_cancelled(database_url):
    people()
    clock = Clock()
    case_id = new_case(25, priority="urgent")
    group, personal = RecordingNotifier(), RecordingNotifier()
    worker = dispatcher(database_url, "host:1", clock=clock, group=group, personal=personal)
    run(worker)
    clock.advance(seconds=URGENT_TARGET.total_seconds() + 1)
    with db.session_scope() as session:  # escalated by a pass that then stalls …
        case_notices.escalate_unclaimed(session=session, now=clock(), personal=True, group=True)
    with db.session_scope() as session:  # … while an officer claims the case
        handling.claim(session=session, user=session.merge(user("a1")), case_id=case_id)
    sent_before = len(group.sent) + len(personal.sent)
    run(worker)
    assert len(group.sent) + len(personal.sent) == sent_before
    assert [row[4] for row in escalations()] == ["cancelled", "cancelled"]
