"""The domain of replies from DingTalk: what `#<case> text` parses to, the demo officers'
DingTalk ids, and two gateway workers handed the same DingTalk message at once on
PostgreSQL (one reply to the resident; the other worker answers with the stored answer)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from casework import accounts, db, demo
from casework.cases import open_case
from casework.conversations import conversation_for
from casework.dingtalk_replies import Command, DingTalkAnswer, handle_message, parse
from casework.models import OutboxItem, User


@pytest.mark.parametrize(
    "content, expected",
    [
        ("#12 您好", Command(case_id=12, text="您好")),
        ("＃１２　您好，全角", Command(case_id=12, text="您好，全角")),
        ("@警民通 @张三 #7 好的", Command(case_id=7, text="好的")),
        ("#7：好的", Command(case_id=7, text="好的")),
        ("# 7 好的", Command(case_id=7, text="好的")),
        ("#7", Command(case_id=7, text="")),
        ("#7 第一行\n第二行 ", Command(case_id=7, text="第一行\n第二行")),
        ("#7 #8 引用", Command(case_id=7, text="#8 引用")),
    ],
)
def test_parse_reads_the_case_and_the_text(content, expected):
    assert parse(content) == expected


@pytest.mark.parametrize(
    "content",
    ["", "您好", "12 您好", "#abc", "#" + "1" * 13 + " 太长的号", "＃ 您好", "您好 #12", "@机器人"],
)
def test_parse_refuses_anything_else(content):
    assert parse(content) is None


def test_demo_officers_are_bound_to_demo_dingtalk_ids_also_on_an_old_demo_database(
    database_url,
):
    with db.session_scope() as session:
        demo.load(session=session)
        session.execute(sa.update(User).values(dingtalk_id=None))  # as made before 0010
    with db.session_scope() as session:
        assert demo.load(session=session) == []  # nobody new …
    with db.session_scope() as session:
        ids = dict(session.execute(select(User.username, User.dingtalk_id)).all())
    assert ids["fanzha"] == "demo-dt-fanzha" and ids["officer01"] == "demo-dt-officer01"
    assert ids["commander"] == "demo-dt-commander"
    assert ids["trainer"] is None and ids["admin"] is None  # … and only who answers cases


def _case_and_officer(session) -> int:
    accounts.create_user(
        session=session,
        username="zhang",
        password="long-enough",
        role="officer",
        community="万景社区",
        dingtalk_id="dt-zhang",
    )
    conversation_for(session=session, openid="o-race")
    case = open_case(
        session=session,
        sender_id="o-race",
        category="noise_complaint",
        priority="normal",
        reason="resident_request",
        summary="【噪音投诉】",
    )
    case.community = "万景社区"
    session.flush()
    return int(case.id)


def _wait_for_a_blocked_insert(engine, outcome: dict, timeout: float = 10.0) -> None:
    """Until a connection waits on a lock inserting the msgId — orchestration only."""
    deadline = time.monotonic() + timeout
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.execute(
                sa.text(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                    " and datname = current_database() and query ilike 'insert into seen_nonces%'"
                )
            ).scalar()
            probe.rollback()
            if waiting or outcome:
                return
            time.sleep(0.02)
    raise AssertionError("the second worker never waited on the msgId")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_workers_handed_the_same_message_send_one_reply(database_url):
    with db.session_scope() as session:
        case_id = _case_and_officer(session)
    message = {
        "msg_id": "msg-race",
        "sender_staff_id": "dt-zhang",
        "msgtype": "text",
        "content": f"#{case_id} 您好，马上到。",
    }
    engine = db.get_engine(database_url)
    first = sessionmaker(bind=engine, future=True, expire_on_commit=False)()
    mine = handle_message(session=first, **message)  # replied, not yet committed
    outcome: dict = {}

    def second_worker() -> None:
        try:
            with db.session_scope(database_url) as session:
                outcome["answer"] = handle_message(session=session, **message)
        except Exception as error:  # noqa: BLE001 — reported below
            outcome["error"] = error

    thread = threading.Thread(target=second_worker)
    thread.start()
    try:
        _wait_for_a_blocked_insert(engine, outcome)
        first.commit()
    finally:
        first.close()
        thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    theirs: DingTalkAnswer = outcome["answer"]
    assert mine.outcome == "replied" and not mine.repeated
    assert theirs.repeated and theirs.text == mine.text and theirs.outbox_id == mine.outbox_id
    with db.session_scope() as session:
        assert session.execute(select(func.count()).select_from(OutboxItem)).scalar_one() == 1
