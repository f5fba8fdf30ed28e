"""The dispatcher's dissuasion step (SQLite and PostgreSQL): each new task is announced on
DingTalk once with an @-mention of its officer, a matched WeChat resident is warned once
through the outbox, and a task past its deadline without an outcome is escalated to the
反诈 desk once — also with two dispatchers in threads on PostgreSQL. DingTalk is the
recording stand-in (simulated); time moves by an injected clock, never by sleeping."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import select

from casework import accounts, db, dissuasion, residents
from casework.dissuasion_schemas import LeadIn
from casework.models import DissuasionNotice, DissuasionTask, OutboxItem, User
from integrations.notify import NotifyError, RecordingNotifier
from tests.gateway.test_claims import Clock, dispatcher, in_threads, postgresql_only, repeat

A = "万景社区"
OFFICER_MOBILE, DESK_MOBILE = "13911112222", "13933334444"


def officers() -> None:
    with db.session_scope() as session:
        accounts.create_user(
            session=session,
            username="zhang",
            password="correct-horse",
            role="officer",
            community=A,
            mobile=OFFICER_MOBILE,
        )
        accounts.create_user(
            session=session,
            username="fz",
            password="correct-horse",
            role="officer",
            desk="反诈",
            mobile=DESK_MOBILE,
        )


def leads(*numbers: int, level: str = "high", now=None) -> list[int]:
    with db.session_scope() as session:
        return dissuasion.ingest_leads(
            session=session,
            leads=[
                LeadIn(
                    external_id=f"D{n}",
                    phone=f"1380000{n:04d}",
                    address=f"骆驼街道{A}",
                    risk_type="冒充客服",
                    risk_level=level,
                    warned_at="2026-12-05T10:00:00+08:00",
                    source="96110",
                )
                for n in numbers
            ],
            actor=None,
            now=now,
        ).task_ids


def register(n: int) -> str:
    openid = f"o-res-{n}"
    with db.session_scope() as session:
        residents.set_profile(
            session=session, openid=openid, mobile=f"1380000{n:04d}", consent=True
        )
    return openid


def warnings_to(openid: str) -> list[str]:
    with db.session_scope() as session:
        return list(
            session.execute(select(OutboxItem.text).where(OutboxItem.openid == openid)).scalars()
        )


def notices() -> list[tuple[int, str, str]]:
    with db.session_scope() as session:
        return [
            tuple(row)
            for row in session.execute(
                select(
                    DissuasionNotice.task_id, DissuasionNotice.kind, DissuasionNotice.status
                ).order_by(DissuasionNotice.id)
            ).all()
        ]


def test_a_new_task_is_announced_with_a_mention_and_the_resident_warned_once(database_url):
    officers()
    openid = register(1)
    [task_id] = leads(1)
    notifier = RecordingNotifier()
    worker = dispatcher(database_url, "host:1", notifier=notifier)
    asyncio.run(worker.run_once())
    asyncio.run(worker.run_once())
    [sent] = notifier.sent
    assert sent.title == "【精准劝阻】高风险 冒充客服 138****0001"
    assert sent.urgent and sent.mobiles == (OFFICER_MOBILE,)
    assert f"@{OFFICER_MOBILE}" in sent.text and "zhang" in sent.text
    assert "13800000001" not in sent.text + sent.title
    assert f"/console/dissuasion/{task_id}" in sent.url
    [warning] = warnings_to(openid)
    assert "冒充客服" in warning and "您" in warning and "96110" in warning
    assert notices() == [(task_id, "announce", "sent")]


def test_without_a_notifier_the_notice_fails_visibly_and_the_resident_is_still_warned(
    database_url,
):
    officers()
    openid = register(2)
    [task_id] = leads(2)
    asyncio.run(dispatcher(database_url, "host:1").run_once())
    assert notices() == [(task_id, "announce", "failed")]
    assert len(warnings_to(openid)) == 1


def test_a_failed_announcement_is_retried_later_without_sleeping(database_url):
    officers()
    leads(3)
    clock = Clock()
    notifier = RecordingNotifier()
    notifier.fail_next(NotifyError("HTTP 502", permanent=False))
    worker = dispatcher(database_url, "host:1", notifier=notifier, clock=clock)
    asyncio.run(worker.run_once())
    assert notifier.sent == [] and notices()[0][2] == "pending"
    asyncio.run(worker.run_once())  # not yet due: the backoff is 5 s
    assert notifier.attempts == 1
    clock.advance(seconds=6)
    asyncio.run(worker.run_once())
    assert len(notifier.sent) == 1 and notices()[0][2] == "sent"


def test_a_task_past_its_deadline_is_escalated_to_the_desk_once(database_url):
    officers()
    clock = Clock()
    overdue, closed = leads(4, 5, now=clock())
    with db.session_scope() as session:
        desk = session.execute(select(User).where(User.username == "fz")).scalar_one()
        dissuasion.set_outcome(session=session, user=desk, task_id=closed, outcome="dissuaded")
    notifier = RecordingNotifier()
    worker = dispatcher(database_url, "host:1", notifier=notifier, clock=clock)
    clock.advance(minutes=29)
    asyncio.run(worker.run_once())
    assert [n.title for n in notifier.sent if "超时" in n.title] == []
    clock.advance(minutes=2)
    for _ in range(3):
        asyncio.run(worker.run_once())
    escalations = [n for n in notifier.sent if "超时升级" in n.title]
    assert [n.case_id for n in escalations] == [overdue]
    assert set(escalations[0].mobiles) == {OFFICER_MOBILE, DESK_MOBILE}
    with db.session_scope() as session:
        task = session.get(DissuasionTask, overdue)
        assert task.escalated_at is not None and task.desk == "反诈"
        assert session.get(DissuasionTask, closed).escalated_at is None


@postgresql_only
def test_two_dispatchers_in_threads_announce_warn_and_escalate_each_task_once(database_url):
    officers()
    openids = [register(n) for n in range(0, 30, 3)]  # every third person is a resident
    clock = Clock()
    ids = leads(*range(30), now=clock())
    notifier = RecordingNotifier()
    workers = [
        dispatcher(database_url, f"host:{n}", notifier=notifier, clock=clock) for n in (1, 2)
    ]
    in_threads(*(repeat(w.run_once, 4) for w in workers))
    announced = Counter(n.case_id for n in notifier.sent)
    assert announced == Counter(ids)
    assert all(len(warnings_to(openid)) == 1 for openid in openids)
    clock.advance(minutes=31)
    in_threads(*(repeat(w.run_once, 4) for w in workers))
    escalated = Counter(n.case_id for n in notifier.sent if "超时升级" in n.title)
    assert escalated == Counter(ids)
    assert notifier.attempts == 60
    assert {status for _, _, status in notices()} == {"sent"}
    assert all(len(warnings_to(openid)) == 1 for openid in openids)


def test_a_burst_of_leads_is_announced_in_one_pass_up_to_five_batches(database_url):
    officers()
    ids = leads(*range(100, 160))
    notifier = RecordingNotifier()
    asyncio.run(dispatcher(database_url, "host:1", notifier=notifier).run_once())
    assert len(notifier.sent) == 50  # DISSUASION_BATCHES × claims.BATCH
    asyncio.run(dispatcher(database_url, "host:1", notifier=notifier).run_once())
    assert Counter(n.case_id for n in notifier.sent) == Counter(ids)
