"""Warnings (预警推送): targeting, once-only sending, opt-outs mid-send, pause / cancel,
the 48 h channel choice, the quota pause and WeChat's job events — SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from casework import broadcast_queue, broadcasts, db, subscriptions
from casework.broadcast_schemas import AudienceIn, ReportedIn
from casework.cases import CaseError, open_case
from casework.clock import utcnow
from casework.handling import Conflict, NotAllowed, NotFound
from casework.models import BroadcastDelivery, WarningConsent
from integrations.wechat import DeliveryError
from tests.unit.broadcast_helpers import (
    RecordingMessenger,
    drain,
    make_resident,
    make_user,
    worker,
)

A, B, C = "万景社区", "盛兴社区", "清水湖社区"  # A, B: 骆驼街道; C: 庄市街道


def compose(author, audience: dict, topic: str = "fraud", **kwargs) -> int:
    with db.session_scope() as session:
        return broadcasts.compose(
            session=session,
            user=author,
            topic=topic,
            title=kwargs.pop("title", "警惕刷单返利诈骗"),
            text=kwargs.pop("text", "近期辖区多发刷单返利诈骗，请勿轻信。"),
            audience=AudienceIn(**audience),
            **kwargs,
        ).id


def detail(author, broadcast_id: int):
    with db.session_scope() as session:
        return broadcasts.detail(session=session, user=author, broadcast_id=broadcast_id)


def deliveries(broadcast_id: int) -> dict[str, tuple[str, str | None]]:
    """openid → (status, channel)"""
    from casework.models import Resident

    with db.session_scope() as session:
        rows = session.execute(
            select(Resident.openid, BroadcastDelivery.status, BroadcastDelivery.channel)
            .join(Resident, Resident.id == BroadcastDelivery.resident_id)
            .where(BroadcastDelivery.broadcast_id == broadcast_id)
        ).all()
    return {openid: (status, channel) for openid, status, channel in rows}


@pytest.fixture
def commander(database_url):
    return make_user("commander", "commander")


# ------------------------------------------------------------------ subscriptions


def test_choosing_topics_opting_out_and_back_records_each_consent(database_url):
    make_resident("o-pref")
    with db.session_scope() as session:
        fresh = subscriptions.preferences(session=session, openid="o-pref")
        assert (fresh.chosen, fresh.opted_out, fresh.topics) == (
            False,
            False,
            list(subscriptions.TOPICS),
        )
        chosen = subscriptions.choose_topics(
            session=session, openid="o-pref", topics=["weather", "fraud"]
        )
        assert chosen.topics == ["fraud", "weather"] and chosen.chosen
        assert "电诈预警、灾害天气" in (chosen.consent_text or "")
        out = subscriptions.opt_out(session=session, openid="o-pref")
        assert out.opted_out and out.warnings_opted_out_at is not None
        back = subscriptions.opt_in(session=session, openid="o-pref")
        assert not back.opted_out and back.topics == ["fraud", "weather"]
        with pytest.raises(CaseError):
            subscriptions.choose_topics(session=session, openid="o-pref", topics=["lottery"])
        with pytest.raises(CaseError):
            subscriptions.choose_topics(session=session, openid="o-pref", topics=[])
        actions = session.execute(select(WarningConsent.action).order_by(WarningConsent.id))
        assert list(actions.scalars()) == ["topics", "opt_out", "opt_in"]


# ------------------------------------------------------------------ compose: rules and scope


def test_compose_validates_topic_lengths_send_at_and_audience(database_url, commander):
    now = utcnow()
    bad = [
        ({"topic": "lottery"}, "未知预警类别"),
        ({"title": "标" * 65}, "标题"),
        ({"text": "字" * 601}, "正文"),
        ({"send_at": now - timedelta(hours=1)}, "发送时间"),
        ({"send_at": now.replace(tzinfo=None) + timedelta(hours=1)}, "时区"),
    ]
    for change, message in bad:
        with pytest.raises(CaseError, match=message):
            compose(commander, {"district": True}, **change)
    with pytest.raises(CaseError, match="推送对象"):
        compose(commander, {})
    with pytest.raises(CaseError, match="未知社区"):
        compose(commander, {"communities": ["不存在社区"]})
    with pytest.raises(CaseError, match="未知街道"):
        compose(commander, {"streets": ["不存在街道"]})
    later = compose(commander, {"district": True}, send_at=now + timedelta(hours=2))
    assert detail(commander, later).status == "scheduled"


def test_officers_send_to_their_own_community_only(database_url):
    officer = make_user("officer_a", "officer", community=A)
    trainer = make_user("trainer", "trainer")
    other = make_user("officer_b", "officer", community=B)
    own = compose(officer, {"communities": [A]})
    for audience in (
        {"communities": [B]},
        {"communities": [A, B]},
        {"district": True},
        {"streets": ["骆驼街道"]},
        {"openids": ["o-x"]},
    ):
        with pytest.raises(NotAllowed):
            compose(officer, audience)
    with pytest.raises(NotAllowed):
        compose(trainer, {"communities": [A]})
    assert detail(officer, own).id == own
    with pytest.raises(NotFound):  # another community's officer: as if it did not exist
        detail(other, own)


# ------------------------------------------------------------------ targeting


def test_targeting_rules(database_url, commander):
    now = utcnow()
    make_resident("o-a1", A)
    make_resident("o-a2", A)
    make_resident("o-b1", B)
    make_resident("o-c1", C)
    make_resident("o-none")
    make_resident("o-gone", A, subscribed=False)  # unfollowed the account
    make_resident("o-out", A)
    make_resident("o-weather", A)
    make_resident("o-fraud-only", A)
    make_resident("dissuasion:7", A)  # a placeholder sender, not a WeChat user
    make_resident("mphelper")  # WeChat's mass-send assistant (its job events are stored)
    with db.session_scope() as session:
        subscriptions.opt_out(session=session, openid="o-out")
        subscriptions.choose_topics(session=session, openid="o-weather", topics=["weather"])
        subscriptions.choose_topics(session=session, openid="o-fraud-only", topics=["fraud"])
        open_case(
            session=session,
            sender_id="o-c1",
            category="fraud_suspicion",
            priority="high",
            reason="resident_request",
            summary="刷单",
        )

    def resolve(audience: dict) -> dict[str, tuple[str, str | None]]:
        broadcast_id = compose(commander, audience)
        with db.session_scope() as session:
            broadcast_queue.start_due(session=session, owner="t", now=now + timedelta(seconds=1))
        return deliveries(broadcast_id)

    street = resolve({"streets": ["骆驼街道"]})
    assert {o for o, (s, _) in street.items() if s == "pending"} == {
        "o-a1",
        "o-a2",
        "o-b1",
        "o-fraud-only",
    }
    assert street["o-out"][0] == street["o-weather"][0] == "opted_out"
    assert street["o-gone"][0] == "skipped"
    assert "dissuasion:7" not in street and "o-c1" not in street
    assert "mphelper" not in resolve({"district": True})
    district = resolve({"district": True})
    assert set(district) == {
        "o-a1",
        "o-a2",
        "o-b1",
        "o-c1",
        "o-none",
        "o-gone",
        "o-out",
        "o-weather",
        "o-fraud-only",
    }
    assert set(resolve({"communities": [B], "openids": ["o-none"]})) == {"o-b1", "o-none"}
    reported = resolve({"reported": ReportedIn(category="fraud_suspicion", days=7).dict()})
    assert set(reported) == {"o-c1"}
    weather = compose(commander, {"communities": [A]}, topic="weather")
    with db.session_scope() as session:
        broadcast_queue.start_due(session=session, owner="t", now=now + timedelta(seconds=1))
    by_topic = deliveries(weather)
    assert by_topic["o-weather"][0] == "pending" and by_topic["o-fraud-only"][0] == "opted_out"
    figures = detail(commander, weather)
    assert (figures.targeted, figures.opted_out, figures.skipped) == (6, 2, 1)


# ------------------------------------------------------------------ sending


def test_each_resident_gets_it_once_by_the_right_channel(database_url, commander):
    now = utcnow()
    make_resident("o-recent", A, wrote_at=now - timedelta(hours=3))
    make_resident("o-old", A, wrote_at=now - timedelta(hours=60))
    make_resident("o-never", A)
    broadcast_id = compose(commander, {"communities": [A]})
    messenger = RecordingMessenger()
    loop = worker(messenger, database_url)
    drain(loop)
    drain(worker(messenger, database_url, owner="host:2"))  # a restart: nothing again
    assert [o for o, _ in messenger.texts] == ["o-recent"]
    assert sorted(o for o, _, _ in messenger.templates) == ["o-never", "o-old"]
    assert "【电诈预警】警惕刷单返利诈骗" in messenger.texts[0][1]
    assert messenger.templates[0][1] == "TPL-1"
    assert messenger.templates[0][2]["keyword1"]["value"] == "电诈预警"
    figures = detail(commander, broadcast_id)
    assert (figures.status, figures.targeted, figures.sent, figures.failed) == ("done", 3, 3, 0)
    assert figures.by_channel == {"customer_service": 1, "template": 2}


def test_a_closed_48h_window_falls_back_to_a_template(database_url, commander):
    make_resident("o-recent", A, wrote_at=utcnow() - timedelta(hours=1))
    compose(commander, {"communities": [A]})
    messenger = RecordingMessenger()
    messenger.fail_text = [DeliveryError("45015 超出48小时", permanent=True, errcode=45015)]
    drain(worker(messenger, database_url))
    assert [o for o, _, _ in messenger.templates] == ["o-recent"]


def test_an_opt_out_arriving_mid_send_is_honoured(database_url, commander):
    for n in range(6):
        make_resident(f"o-{n}", A)
    broadcast_id = compose(commander, {"communities": [A]})
    messenger = RecordingMessenger()

    def opt_out_o5_on_first_send(openid: str) -> None:
        if messenger.on_send is not None:
            messenger.on_send = None
            with db.session_scope() as session:
                subscriptions.opt_out(session=session, openid="o-5")

    messenger.on_send = opt_out_o5_on_first_send
    drain(worker(messenger, database_url, rate_per_second=1.0))  # one claimed per batch
    assert "o-5" not in messenger.recipients()
    assert deliveries(broadcast_id)["o-5"] == ("opted_out", None)
    figures = detail(commander, broadcast_id)
    assert (figures.sent, figures.opted_out, figures.status) == (5, 1, "done")


def test_the_claim_itself_refuses_a_resident_who_opted_out(database_url, commander):
    make_resident("o-1", A)
    compose(commander, {"communities": [A]})
    now = utcnow() + timedelta(seconds=1)
    with db.session_scope() as session:
        broadcast_queue.start_due(session=session, owner="t", now=now)
    with db.session_scope() as session:
        subscriptions.opt_out(session=session, openid="o-1")
    with db.session_scope() as session:  # no sweep in between: the claim's own condition
        assert broadcast_queue.claim_deliveries(session=session, owner="t", now=now) == []


def test_pause_resume_and_cancel(database_url, commander):
    for n in range(4):
        make_resident(f"o-{n}", A)
    broadcast_id = compose(commander, {"communities": [A]})
    with db.session_scope() as session:
        assert (
            broadcasts.pause(session=session, user=commander, broadcast_id=broadcast_id).status
            == "paused"
        )
    messenger = RecordingMessenger()
    drain(worker(messenger, database_url))
    assert messenger.recipients() == []  # paused before it started: nothing
    with db.session_scope() as session:
        assert (
            broadcasts.resume(session=session, user=commander, broadcast_id=broadcast_id).status
            == "scheduled"
        )
        with pytest.raises(Conflict):
            broadcasts.resume(session=session, user=commander, broadcast_id=broadcast_id)
    loop = worker(messenger, database_url, rate_per_second=1.0)
    asyncio.run(loop.run_once())  # starts it and sends one
    assert len(messenger.recipients()) == 1
    with db.session_scope() as session:
        cancelled = broadcasts.cancel(session=session, user=commander, broadcast_id=broadcast_id)
    assert (cancelled.status, cancelled.sent, cancelled.skipped) == ("cancelled", 1, 3)
    drain(loop)
    assert len(messenger.recipients()) == 1
    with db.session_scope() as session, pytest.raises(Conflict):
        broadcasts.pause(session=session, user=commander, broadcast_id=broadcast_id)


def test_a_quota_refusal_pauses_the_broadcast_with_its_reason(database_url, commander):
    for n in range(3):
        make_resident(f"o-{n}", A)
    broadcast_id = compose(commander, {"communities": [A]})
    messenger = RecordingMessenger()
    messenger.fail_template = [
        DeliveryError("45009 接口调用超过频率限制", permanent=False, errcode=45009)
    ]
    drain(worker(messenger, database_url))
    paused = detail(commander, broadcast_id)
    assert paused.status == "paused" and "45009" in (paused.pause_reason or "")
    assert (paused.sent, paused.failed, paused.pending) == (0, 0, 3)
    with db.session_scope() as session:
        broadcasts.resume(session=session, user=commander, broadcast_id=broadcast_id)
    drain(worker(messenger, database_url))
    done = detail(commander, broadcast_id)
    assert (done.status, done.sent, done.pause_reason) == ("done", 3, None)


def test_the_loop_waits_while_the_outbox_has_due_replies(database_url, commander):
    from casework import outbox
    from casework.conversations import conversation_for

    make_resident("o-1", A)
    compose(commander, {"communities": [A]})
    with db.session_scope() as session:
        conversation = conversation_for(session=session, openid="o-chat")
        item = outbox.enqueue(
            session=session,
            conversation_id=conversation.id,
            openid="o-chat",
            text="您好",
            sender="bot",
        )
    messenger = RecordingMessenger()
    drain(worker(messenger, database_url))
    assert messenger.recipients() == []
    with db.session_scope() as session:
        outbox.claim_due(session=session, owner="x")
        outbox.mark_sent(session=session, item_id=item.id, owner="x")
    drain(worker(messenger, database_url))
    assert messenger.recipients() == ["o-1"]


def test_mass_send_by_community_tag_for_a_district_warning(database_url, commander):
    make_resident("o-a1", A)
    make_resident("o-a2", A)
    make_resident("o-out", A)
    make_resident("o-b1", B)
    make_resident("o-nowhere")  # no community: no tag, a template instead
    with db.session_scope() as session:
        subscriptions.opt_out(session=session, openid="o-out")
    broadcast_id = compose(commander, {"district": True})
    messenger = RecordingMessenger()
    messenger.members[100] = {"o-out", "o-moved"}  # the A tag was out of date
    messenger.tags["jmt-" + A] = 100
    drain(worker(messenger, database_url, mass_send=True))
    by_tag = {tag: members for tag, _, members in messenger.mass}
    assert by_tag[100] == ["o-a1", "o-a2"]
    assert sorted(o for members in by_tag.values() for o in members) == ["o-a1", "o-a2", "o-b1"]
    assert [o for o, _, _ in messenger.templates] == ["o-nowhere"]
    figures = detail(commander, broadcast_id)
    assert (figures.sent, figures.opted_out, figures.status) == (4, 1, "done")
    assert figures.by_channel == {"mass_tag": 3, "template": 1}
    assert len(figures.mass_jobs) == 2


def test_job_events_update_deliveries_and_figures(database_url, commander):
    make_resident("o-1", A)
    make_resident("o-2", A)
    broadcast_id = compose(commander, {"communities": [A]})
    messenger = RecordingMessenger()
    drain(worker(messenger, database_url))
    with db.session_scope() as session:
        msgids = dict(
            session.execute(
                select(BroadcastDelivery.resident_id, BroadcastDelivery.wechat_msgid)
            ).all()
        )
        first = sorted(msgids.values())[0]
        changed = broadcast_queue.record_job_result(
            session=session, event="templatesendjobfinish", msg_id=first, status="failed:user block"
        )
        again = broadcast_queue.record_job_result(
            session=session, event="templatesendjobfinish", msg_id=first, status="failed:user block"
        )
        assert (changed, again) == (1, 0)
    figures = detail(commander, broadcast_id)
    assert (figures.sent, figures.failed) == (1, 1)
    assert figures.failed_by_reason == {"模板消息未送达：failed:user block": 1}


def test_replies_within_24h_count_targeted_residents_who_wrote(database_url, commander):
    make_resident("o-1", A)
    make_resident("o-2", A)
    broadcast_id = compose(commander, {"communities": [A]})
    drain(worker(RecordingMessenger(), database_url))
    from casework.conversations import record_inbound

    with db.session_scope() as session:
        record_inbound(
            session=session, openid="o-1", dedupe_key="r1", msg_type="text", content="收到"
        )
    assert detail(commander, broadcast_id).replies_24h == 1


def test_two_loops_in_threads_send_each_resident_once(database_url, commander):
    for n in range(60):
        make_resident(f"o-{n:02d}", A if n % 2 else B)
    first = compose(commander, {"streets": ["骆驼街道"]})
    second = compose(commander, {"communities": [A]}, topic="community")
    messenger = RecordingMessenger()
    loops = [worker(messenger, database_url, owner=f"host:{n}") for n in (1, 2)]
    errors: list[BaseException] = []

    def run(loop) -> None:
        try:
            drain(loop, passes=200)
        except BaseException as error:  # noqa: BLE001 — reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(loop,)) for loop in loops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    drain(loops[0])  # whatever the race left (a pass that found nothing while the other worked)
    sent = messenger.recipients()
    assert len(sent) == 60 + 30
    per_broadcast = {first: 60, second: 30}
    for broadcast_id, count in per_broadcast.items():
        figures = detail(commander, broadcast_id)
        assert (figures.sent, figures.status) == (count, "done")
    assert len([o for o, _, _ in messenger.templates if o == "o-01"]) == 2  # one per broadcast


def test_every_warning_says_how_to_stop_and_resume_them():
    text = broadcasts.message_text(topic="fraud", title="警惕刷单", text="刷单都是诈骗。")
    data = broadcasts.template_data(
        topic="fraud", title="警惕刷单", text="刷单都是诈骗。", at=utcnow()
    )
    for shown in (text, data["remark"]["value"]):
        assert "退订" in shown and "订阅提醒" in shown


def test_the_metrics_count_warnings_by_topic_reach_and_opt_outs(database_url, commander):
    """The bureau's numbers (issue 11): warnings by topic, reach (sent / targeted), the
    opt-out rate, per community — in /api/metrics and its CSV."""
    from casework import metrics

    for n in range(4):
        make_resident(f"o-m{n}", A)
    make_resident("o-m-gone", A)
    with db.session_scope() as session:
        subscriptions.opt_out(session=session, openid="o-m-gone")
    compose(commander, {"communities": [A]})
    compose(commander, {"communities": [A]}, topic="weather", draft=True)  # never sent: no count
    drain(worker(RecordingMessenger(), database_url))
    with db.session_scope() as session:
        subscriptions.opt_out(session=session, openid="o-m0")  # after the warning
        found = metrics.compute(
            session=session,
            since=utcnow() - timedelta(days=1),
            until=utcnow() + timedelta(minutes=1),
        )["warnings"]
    assert (found["broadcasts"], found["targeted"], found["sent"], found["opted_out"]) == (
        1,
        5,
        4,
        1,
    )
    assert found["reach"] == 0.8
    assert found["by_topic"]["fraud"]["label"] == "电诈预警"
    assert found["by_topic"].get("weather", {}).get("broadcasts", 0) == 0
    assert found["opt_outs"] == 2 and found["opt_out_rate"] == 0.5  # 2 退订 / 4 reached
    [community] = found["per_community"]
    assert (community["community"], community["sent"]) == (A, 4)
    assert "warnings,by_topic.fraud,reach,0.8" in metrics.to_csv({"warnings": found}).splitlines()
