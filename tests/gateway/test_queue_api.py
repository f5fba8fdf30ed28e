"""The queue API (issue 12): filters, search scoped like every read, pages with
X-Total-Count, unread counts and marking read — on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select

from casework import db, handling
from casework.cases import RESPONSE_TARGETS, open_case, open_ticket
from casework.clock import utcnow
from casework.conversations import record_inbound
from casework.models import AuditEntry, Case, User
from tests.gateway.test_cases_api import add_user, token

KEYS = itertools.count(1)
WANJING, QINGSHUI = "万景社区", "清水浦社区"


def a_case(
    openid: str,
    category: str,
    priority: str,
    *,
    community: str | None = None,
    desk: str | None = None,
    summary: str | None = None,
    assigned_to: int | None = None,
    minutes_ago: int = 0,
) -> int:
    with db.session_scope() as session:
        case = open_case(
            session=session,
            sender_id=openid,
            category=category,
            priority=priority,
            reason="resident_request",
            summary=summary or f"{category} 测试",
        )
        case.community, case.desk, case.assigned_to_id = community, desk, assigned_to
        if minutes_ago:
            case.created_at = utcnow() - timedelta(minutes=minutes_ago)
            case.due_at = case.created_at + RESPONSE_TARGETS[priority]
        return int(case.id)


def resident_says(openid: str, text: str, msg_type: str = "text") -> int:
    with db.session_scope() as session:
        message, _ = record_inbound(
            session=session,
            openid=openid,
            dedupe_key=f"queue-test-{next(KEYS)}",
            msg_type=msg_type,
            content=text,
        )
        return int(message.id)


def as_user(user_id: int):
    with db.session_scope() as session:
        user = session.get(User, user_id)
        session.expunge(user)
        return user


@pytest.fixture
def people(wechat):
    ids = {
        "wang": add_user("wang", "commander", display_name="王指挥"),
        "zhang": add_user("zhang", "officer", community=WANJING, display_name="张警官"),
        "zhao": add_user("zhao", "officer", community=QINGSHUI, display_name="赵警官"),
        "li": add_user("li", "officer", desk="反诈", display_name="李警官"),
        "chen": add_user("chen", "trainer"),
    }
    return ids, {name: token(wechat, name) for name in ids}


@pytest.fixture
def queue(people):
    """Cases of two communities and the 反诈 desk, in every state the filters tell apart."""
    ids, _ = people
    cases = {
        "noise": a_case("o-noise", "noise_complaint", "normal", community=WANJING,
                        assigned_to=ids["zhang"]),
        "fight": a_case("o-fight", "emergency", "urgent", community=WANJING),
        "dog": a_case("o-dog", "dog_complaint", "high", community=WANJING),
        "drugs": a_case("o-drugs", "other", "normal", community=QINGSHUI,
                        summary="群众反映有人卖药"),
        "fraud": a_case("o-fraud", "fraud_suspicion", "urgent", desk="反诈"),
    }  # fmt: skip
    with db.session_scope() as session:
        zhang = session.get(User, ids["zhang"])
        handling.claim(session=session, user=zhang, case_id=cases["dog"])
    return cases


def listed(wechat, headers, **params) -> tuple[list[int], int]:
    answer = wechat.client.get("/api/cases", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    assert isinstance(answer.json(), list)
    return [c["id"] for c in answer.json()], int(answer.headers["X-Total-Count"])


# ------------------------------------------------------------------ filters


def test_each_filter_narrows_the_officers_own_queue(wechat, people, queue):
    ids, bearer = people
    zhang = bearer["zhang"]
    # The whole scoped queue, most urgent first (fight urgent, dog high, noise normal).
    assert listed(wechat, zhang) == ([queue["fight"], queue["dog"], queue["noise"]], 3)
    # 我的: claimed by me, or routed to me and not claimed by anyone.
    assert listed(wechat, zhang, mine="true") == ([queue["dog"], queue["noise"]], 2)
    # 待认领: nobody holds it yet.
    assert listed(wechat, zhang, unclaimed="1") == ([queue["fight"], queue["noise"]], 2)
    assert listed(wechat, zhang, urgent="true") == ([queue["fight"]], 1)
    assert listed(wechat, zhang, category="noise_complaint") == ([queue["noise"]], 1)
    assert listed(wechat, zhang, urgent="true", mine="true") == ([], 0)
    assert listed(wechat, zhang, status="claimed") == ([queue["dog"]], 1)
    # Another community by filter: still only what the officer may see, i.e. nothing.
    assert listed(wechat, zhang, community=QINGSHUI) == ([], 0)
    assert listed(wechat, zhang, community=WANJING)[1] == 3
    # The commander sees every case; the community filter picks one community.
    wang = bearer["wang"]
    assert listed(wechat, wang)[1] == 5
    assert listed(wechat, wang, community=QINGSHUI) == ([queue["drugs"]], 1)
    assert listed(wechat, wang, urgent="true") == ([queue["fight"], queue["fraud"]], 2)
    assert listed(wechat, bearer["li"], urgent="true") == ([queue["fraud"]], 1)
    assert wechat.client.get("/api/cases", headers=bearer["chen"]).status_code == 403


def test_closed_cases_are_a_filter_like_the_others(wechat, people, queue):
    ids, bearer = people
    with db.session_scope() as session:
        zhang = session.get(User, ids["zhang"])
        handling.close(session=session, user=zhang, case_id=queue["noise"], resolution="已处理")
    assert listed(wechat, bearer["zhang"], status="closed") == ([queue["noise"]], 1)
    assert listed(wechat, bearer["zhang"], status="closed", unclaimed="true") == ([], 0)
    assert queue["noise"] not in listed(wechat, bearer["zhang"])[0]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "everything"},
        {"category": "parking"},
        {"mine": "maybe"},
        {"urgent": "2"},
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "lots"},
        {"offset": "-1"},
        {"q": "长" * 101},
        {"community": "社" * 65},
    ],
)
def test_a_malformed_parameter_is_a_clear_422(wechat, people, params):
    _, bearer = people
    answer = wechat.client.get("/api/cases", params=params, headers=bearer["wang"])
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


# ------------------------------------------------------------------ search


def test_search_finds_residents_words_only_within_scope(wechat, people, queue):
    ids, bearer = people
    resident_says("o-drugs", "我家楼下有人偷偷卖假药，还卖给老人")
    resident_says("o-noise", "楼上每天晚上装修到十二点")
    # 清水浦's officer finds the case by what the resident wrote; 万景's officer, searching
    # for the same words, finds nothing at all — not even a count.
    assert listed(wechat, bearer["zhao"], q="假药") == ([queue["drugs"]], 1)
    assert listed(wechat, bearer["zhang"], q="假药") == ([], 0)
    assert listed(wechat, bearer["li"], q="假药") == ([], 0)
    assert listed(wechat, bearer["wang"], q="假药") == ([queue["drugs"]], 1)
    # The summary is searched too; words combine with the filters; blanks are ignored.
    assert listed(wechat, bearer["zhao"], q="  卖药 ") == ([queue["drugs"]], 1)
    assert listed(wechat, bearer["zhang"], q="装修") == ([queue["noise"]], 1)
    assert listed(wechat, bearer["zhang"], q="装修", urgent="true") == ([], 0)
    assert listed(wechat, bearer["zhang"], q="   ")[1] == 3
    # LIKE's wildcards are literal characters.
    assert listed(wechat, bearer["wang"], q="%") == ([], 0)
    assert listed(wechat, bearer["wang"], q="卖_") == ([], 0)  # not 卖药
    assert listed(wechat, bearer["wang"], q="_complaint")[1] == 2  # the literal underscore


def test_the_bots_words_are_not_the_residents(wechat, people, queue):
    _, bearer = people
    with db.session_scope() as session:
        from casework import outbox
        from casework.conversations import conversation_for

        conversation = conversation_for(session=session, openid="o-fight")
        outbox.enqueue(
            session=session,
            conversation_id=conversation.id,
            openid="o-fight",
            text="请保持冷静，民警马上到",
            sender="bot",
        )
    assert listed(wechat, bearer["wang"], q="保持冷静") == ([], 0)


def test_a_search_is_audited_with_numbers_masked(wechat, people, queue):
    ids, bearer = people
    resident_says("o-drugs", "卖药的人电话13812345678")
    assert listed(wechat, bearer["zhao"], q="13812345678") == ([queue["drugs"]], 1)
    # The open queue re-runs the search on every live event: one entry for the same words.
    assert listed(wechat, bearer["zhao"], q=" 13812345678", offset=1) == ([], 1)
    with db.session_scope() as session:
        [entry] = session.execute(
            select(AuditEntry).where(AuditEntry.action == "search_cases")
        ).scalars()
        assert entry.actor_id == ids["zhao"]
        assert "13812345678" not in str(entry.detail)
        assert entry.detail["total"] == 1
    listed(wechat, bearer["zhao"], q="卖药")
    with db.session_scope() as session:
        searched = session.execute(
            select(AuditEntry.detail).where(AuditEntry.action == "search_cases")
        ).scalars()
        assert [d["q"] for d in searched] == [entry.detail["q"], "卖药"]


# ------------------------------------------------------------------ pages


def test_pages_cover_the_queue_once_in_a_stable_order(wechat, people):
    _, bearer = people
    made = [
        a_case(f"o-page-{n}", "other", ("urgent", "normal", "low")[n % 3], community=WANJING)
        for n in range(7)
    ]
    everything, total = listed(wechat, bearer["wang"], limit=200)
    assert total == 7 and sorted(everything) == sorted(made)
    pages = [listed(wechat, bearer["wang"], limit=3, offset=offset) for offset in (0, 3, 6)]
    assert [total for _, total in pages] == [7, 7, 7]
    assert [len(ids) for ids, _ in pages] == [3, 3, 1]
    assert [i for ids, _ in pages for i in ids] == everything  # no overlap, no gap
    assert listed(wechat, bearer["wang"], limit=3, offset=50) == ([], 7)
    # Default page size 50; urgent first, ties by id.
    assert listed(wechat, bearer["wang"])[0] == everything
    urgent = [c for c in made if made.index(c) % 3 == 0]
    assert everything[: len(urgent)] == sorted(urgent)


def test_within_a_priority_the_longest_waiting_comes_first(wechat, people):
    _, bearer = people
    newer = a_case("o-new", "other", "normal", community=WANJING, minutes_ago=1)
    older = a_case("o-old", "other", "normal", community=WANJING, minutes_ago=50)
    answered = a_case("o-answered", "other", "normal", community=WANJING, minutes_ago=90)
    with db.session_scope() as session:
        session.get(Case, answered).first_reply_at = utcnow()
    assert listed(wechat, bearer["wang"])[0] == [older, newer, answered]


def test_tickets_are_paged_and_scoped(wechat, people):
    _, bearer = people
    with db.session_scope() as session:
        for n in range(5):
            open_ticket(
                session=session,
                sender_id=f"o-ticket-{n}",
                kind="noise",
                summary=f"噪音 {n}",
                location=f"万景社区{n}幢",
                community=WANJING if n < 4 else QINGSHUI,
            )
    answer = wechat.client.get("/api/tickets", params={"limit": 2}, headers=bearer["zhang"])
    assert answer.status_code == 200 and answer.headers["X-Total-Count"] == "4"
    first = [t["id"] for t in answer.json()]
    second = wechat.client.get(
        "/api/tickets", params={"limit": 2, "offset": 2}, headers=bearer["zhang"]
    ).json()
    ids = first + [t["id"] for t in second]
    assert len(ids) == 4 and ids == sorted(ids, reverse=True)  # newest first, no overlap
    everything = wechat.client.get("/api/tickets", headers=bearer["wang"])
    assert everything.headers["X-Total-Count"] == "5" and len(everything.json()) == 5
    pending = wechat.client.get(
        "/api/tickets", params={"status": "pending"}, headers=bearer["wang"]
    )
    statuses = [t["status"] for t in everything.json()]
    assert pending.status_code == 200 and {t["status"] for t in pending.json()} == {"pending"}
    assert pending.headers["X-Total-Count"] == str(statuses.count("pending"))
    for bad in ({"status": "lost"}, {"limit": 0}, {"limit": 201}, {"offset": -2}):
        refused = wechat.client.get("/api/tickets", params=bad, headers=bearer["wang"])
        assert refused.status_code == 422, (bad, refused.text)


def test_the_nlu_inbox_carries_its_total_in_the_header_too(wechat, people):
    _, bearer = people
    answer = wechat.client.get("/api/nlu/inbox", params={"limit": 1}, headers=bearer["chen"])
    assert answer.status_code == 200
    assert answer.headers["X-Total-Count"] == str(answer.json()["total"])


# ------------------------------------------------------------------ unread


def unread(wechat, headers, case_id: int) -> int:
    answer = wechat.client.get("/api/cases", params={"limit": 200}, headers=headers)
    [found] = [c for c in answer.json() if c["id"] == case_id]
    return int(found["unread"])


def test_unread_counts_are_per_officer_and_reset_by_opening_or_replying(wechat, people, queue):
    _, bearer = people
    zhang, wang = bearer["zhang"], bearer["wang"]
    noise = queue["noise"]
    resident_says("o-noise", "楼上又在装修了")
    resident_says("o-noise", "已经晚上十一点了")
    resident_says("o-noise", "", msg_type="event")  # a menu tap is not words
    assert unread(wechat, zhang, noise) == 2
    assert unread(wechat, zhang, queue["fight"]) == 0

    opened = wechat.client.get(f"/api/cases/{noise}", headers=zhang)
    assert opened.status_code == 200 and opened.json()["unread"] == 0
    assert unread(wechat, zhang, noise) == 0
    assert unread(wechat, wang, noise) == 2  # the commander has not read it

    resident_says("o-noise", "还在继续")
    assert unread(wechat, zhang, noise) == 1
    answer = wechat.client.post(f"/api/cases/{noise}/reply", json={"text": "收到"}, headers=zhang)
    assert answer.status_code == 200
    assert unread(wechat, zhang, noise) == 0
    assert unread(wechat, wang, noise) == 3

    # Reading it again later never moves the marker back; a second read is harmless.
    assert wechat.client.get(f"/api/cases/{noise}", headers=wang).status_code == 200
    assert wechat.client.get(f"/api/cases/{noise}", headers=wang).status_code == 200
    assert unread(wechat, wang, noise) == 0


def test_the_residents_other_case_shares_what_was_read(wechat, people, queue):
    _, bearer = people
    resident_says("o-noise", "狗也一直叫")
    dog_too = a_case("o-noise", "dog_complaint", "normal", community=WANJING)
    assert unread(wechat, bearer["zhang"], dog_too) == 1
    assert wechat.client.get(f"/api/cases/{queue['noise']}", headers=bearer["zhang"]).is_success
    assert unread(wechat, bearer["zhang"], dog_too) == 0  # the same conversation was shown


def test_a_closed_case_counts_nothing_written_after_it_closed(wechat, people, queue):
    ids, bearer = people
    resident_says("o-noise", "楼上在装修")
    with db.session_scope() as session:
        zhang = session.get(User, ids["zhang"])
        handling.close(session=session, user=zhang, case_id=queue["noise"], resolution="已处理")
    resident_says("o-noise", "5")  # the rating, after closing
    found = wechat.client.get("/api/cases", params={"status": "closed"}, headers=bearer["zhang"])
    assert [c["unread"] for c in found.json()] == [1]
