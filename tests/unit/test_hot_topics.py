"""热点 (issue 11): the week's topics per street and community, Beijing-time weeks,
week-over-week risers, keywords that are words (never numbers), the API and the CLI —
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from casework import db, hot_topics
from casework.cases import CATEGORY_LABELS
from casework.clock import BEIJING
from casework.models import Case, Conversation, Message, Resident, User
from casework.settings import get_settings
from gateway import deps
from gateway.routes import metrics as metrics_routes
from integrations.rasa import parse_result
from jmt import cli, report

WEEK = "2026-W48"  # Monday 23 November 2026, Beijing time
MONDAY = datetime(2026, 11, 23, tzinfo=BEIJING)
STREET_A, COMMUNITY_A = "骆驼街道", "金华社区"
STREET_B, COMMUNITY_B = "招宝山街道", "总浦桥社区"


def beijing(day_offset: float) -> datetime:
    """A time `day_offset` days after this week's Monday 00:00 in Beijing, as UTC."""
    return (MONDAY + timedelta(days=day_offset)).astimezone(timezone.utc)


def resident(session, openid: str, street: str | None, community: str | None) -> int:
    person = Resident(openid=openid)
    session.add(person)
    session.flush()
    conversation = Conversation(resident_id=person.id, openid=openid, owner="bot")
    session.add(conversation)
    session.flush()
    if street:
        session.add(
            Case(
                sender_id=openid,
                category="other",
                priority="normal",
                status="closed",
                reason="test",
                summary="定位用",
                street=street,
                community=community,
                created_at=beijing(-30),
            )
        )
    return conversation.id


def say(session, conversation_id: int, text: str, when: datetime, **parse) -> None:
    entities = [{"entity": "fraud_type", "value": v} for v in parse.pop("fraud_types", [])]
    session.add(
        Message(
            conversation_id=conversation_id,
            direction="in",
            msg_type="text",
            content=text,
            intent=parse.pop("intent", None),
            media={"parse": {"entities": entities, **parse}},
            created_at=when,
        )
    )


@pytest.fixture
def week(database_url):
    """Street A: 刷单 reports went from 1 to 4 (a riser); street B: noise steady at 3."""
    with db.session_scope() as session:
        a1 = resident(session, "o-a1", STREET_A, COMMUNITY_A)
        a2 = resident(session, "o-a2", STREET_A, COMMUNITY_A)
        b1 = resident(session, "o-b1", STREET_B, COMMUNITY_B)
        nowhere = resident(session, "o-x", None, None)
        say(session, a1, "上周有人拉我刷单", beijing(-3), intent="report_fraud",
            fraud_types=["刷单返利"])  # fmt: skip
        for n, (who, when) in enumerate([(a1, 0.02), (a2, 1), (a2, 2.5), (a1, 6.9)]):
            say(
                session,
                who,
                f"刷单返利被骗了，对方电话13812345678，第{n}次做任务",
                beijing(when),
                intent="report_fraud",
                fraud_types=["刷单返利"],
            )
        for offset in (-6, -5, -4):
            say(session, b1, "楼上装修噪音太吵", beijing(offset), intent="complain_noise")
        for offset in (1, 2, 3):
            say(session, b1, "楼上装修噪音太吵", beijing(offset), intent="complain_noise")
        say(session, nowhere, "护照怎么办理", beijing(4), intent="faq", topic="faq/passport")
        # outside the week: Sunday 23:59 Beijing time before it, and the next Monday 00:00
        say(session, nowhere, "护照怎么办理", beijing(-0.0001), intent="faq", topic="faq/x")
        say(session, nowhere, "护照怎么办理", beijing(7), intent="faq", topic="faq/x")
        session.add(  # not words: an event
            Message(
                conversation_id=nowhere,
                direction="in",
                msg_type="event",
                content="[关注]",
                created_at=beijing(1),
            )
        )
    with db.session_scope() as session:
        return hot_topics.compute(session=session, week=WEEK)


def test_a_week_is_monday_to_monday_in_beijing_time():
    name, since, until = hot_topics.week_bounds(WEEK)
    assert (name, since, until - since) == (WEEK, MONDAY, timedelta(days=7))
    assert since.utcoffset() == timedelta(hours=8)
    # By default the last complete week: on Saturday 5 December it is W48 …
    saturday = datetime(2026, 12, 5, 10, tzinfo=BEIJING)
    assert hot_topics.week_bounds(now=saturday)[0] == WEEK
    # … and at 07:00 Beijing on Monday 30 November (still Sunday in UTC) W48 has just ended.
    monday_morning = datetime(2026, 11, 30, 7, tzinfo=BEIJING).astimezone(timezone.utc)
    assert hot_topics.week_bounds(now=monday_morning)[0] == WEEK


@pytest.mark.parametrize("bad", ["2026-W60", "2026-48", "W48", "2026-W0"])
def test_a_week_that_does_not_exist_is_refused(bad):
    with pytest.raises(ValueError, match="week"):
        hot_topics.week_bounds(bad)


def test_the_week_counts_residents_words_inside_it_only(week):
    assert week.messages == 4 + 3 + 1  # no event, nothing from the weeks around it
    assert week.district.categories == {"fraud_suspicion": 4, "noise_complaint": 3, "faq": 1}
    assert week.district.faq_topics == {"faq/passport": 1}


def test_topics_per_street_and_community(week):
    streets = {group.place: group for group in week.streets}
    assert streets[STREET_A].fraud_types == {"刷单返利": 4}
    assert streets[STREET_B].categories == {"noise_complaint": 3}
    assert streets[hot_topics.UNLOCATED].messages == 1
    assert week.streets[-1].place == hot_topics.UNLOCATED  # unlocated comes last
    communities = {group.community: group for group in week.communities}
    assert communities[COMMUNITY_A].place == f"{STREET_A} {COMMUNITY_A}"
    assert communities[COMMUNITY_A].messages == 4
    assert None not in communities  # the unlocated resident is counted in 未定位 only


def test_a_scam_type_that_doubled_in_one_street_is_flagged_and_a_steady_one_is_not(week):
    flagged = {(r.place, r.kind, r.key): (r.this_week, r.last_week) for r in week.risers}
    assert flagged[(STREET_A, "fraud_type", "刷单返利")] == (4, 1)
    assert flagged[(STREET_A, "category", "fraud_suspicion")] == (4, 1)
    assert not any(place == STREET_B for place, _, _ in flagged)  # 3 → 3
    assert all(r.this_week >= hot_topics.RISER_MIN for r in week.risers)
    label = next(r.label for r in week.risers if r.key == "fraud_suspicion")
    assert label == CATEGORY_LABELS["fraud_suspicion"]  # shown in Chinese, not the code


def test_keywords_are_words_from_the_messages_never_numbers(week):
    words = [k.word for k in week.district.keywords]
    assert "刷单" in words or "刷单返利" in words
    assert "装修" in words or "噪音" in words
    assert all(not any(ch.isdigit() or ch == "*" for ch in word) for word in words)
    assert "13812345678" not in str(week.json())


def test_topic_comes_from_the_response_selector_of_the_parse():
    parse = {
        "intent": {"name": "faq", "confidence": 0.9},
        "response_selector": {
            "faq": {"response": {"intent_response_key": "faq/passport", "confidence": 0.8}}
        },
    }
    assert parse_result(parse).topic == "faq/passport"
    assert parse_result({"intent": {"name": "greet"}}).topic is None


def _client(role: str) -> TestClient:
    app = FastAPI()
    app.include_router(metrics_routes.router)
    app.state.settings = get_settings()
    app.dependency_overrides[deps.current_user] = lambda: User(id=1, username="u", role=role)
    return TestClient(app)


def test_the_api_serves_a_week_and_refuses_a_bad_one(week):
    answer = _client("officer").get("/api/metrics/hot-topics", params={"week": WEEK})
    assert answer.status_code == 200
    assert answer.json()["messages"] == 8
    assert (
        _client("officer").get("/api/metrics/hot-topics", params={"week": "2026-W60"}).status_code
        == 422
    )
    assert (
        _client("officer").get("/api/metrics/hot-topics", params={"week": "soon"}).status_code
        == 422
    )
    assert _client("trainer").get("/api/metrics/hot-topics").status_code == 403


def test_jmt_report_weekly_writes_markdown_and_a_self_contained_html(week, tmp_path, capsys):
    cli.main(["report", "weekly", "--week", WEEK])
    text = capsys.readouterr().out
    assert text.startswith("# 警民通 每周热点 2026-W48")
    assert "| 骆驼街道 | 诈骗类型 | 刷单返利 | 4 | 1 |" in text
    page = tmp_path / "week.html"
    cli.main(["report", "weekly", "--week", WEEK, "--format", "html", "--output", str(page)])
    html = page.read_text(encoding="utf-8")
    assert (
        "<svg" in html
        and "<script" not in html
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert "刷单返利" in html


def test_report_text_is_escaped(week):
    hostile = week.copy(update={"risers": [week.risers[0].copy(update={"label": "<b>x</b>"})]})
    assert "<b>x</b>" not in report.html_page(hostile)
    assert "&lt;b&gt;x&lt;/b&gt;" in report.html_page(hostile)


def test_jmt_report_weekly_refuses_a_bad_week(database_url, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["report", "weekly", "--week", "2026-W60"])
    assert stopped.value.code == 2
    assert "2026-W60" in capsys.readouterr().err
