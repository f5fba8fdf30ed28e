"""Who sees what, through the API on SQLite and PostgreSQL: an officer of one community, of
another, of the 反诈 desk, a commander, an admin and a trainer — for conversations (list,
search, by id), tickets, a case's history and tickets, actions on a case, and the audit
entries of every read of a resident's words."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from casework import accounts, audit, db
from casework.cases import open_case, open_ticket
from casework.models import AuditEntry, Case, Conversation
from tests.gateway.conftest import text_xml

WANJING, YUFAN = "万景社区", "俞范社区"


def add_user(name: str, role: str, **extra) -> int:
    with db.session_scope() as session:
        return accounts.create_user(
            session=session,
            username=name,
            password="correct-horse",
            role=role,
            community=extra.get("community"),
            desk=extra.get("desk"),
        ).id


def token(wechat, name: str) -> dict[str, str]:
    answer = wechat.client.post(
        "/api/auth/token", data={"username": name, "password": "correct-horse"}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def make_case(openid: str, category: str, *, community: str | None = None, status="open") -> int:
    with db.session_scope() as session:
        case = open_case(
            session=session,
            sender_id=openid,
            category=category,
            priority="normal",
            reason="test",
            summary=f"{openid} {category}",
        )
        case.community, case.status, case.notify_status = community, status, "sent"
        return case.id


def make_ticket(openid: str, *, community: str, case_id: int | None = None) -> int:
    with db.session_scope() as session:
        ticket = open_ticket(
            session=session,
            sender_id=openid,
            kind="dog",
            summary=f"{openid} 犬只",
            location=f"{openid} 的小区",
            community=community,
        )
        ticket.case_id = case_id
        return ticket.id


def conversation_id(openid: str) -> int:
    with db.session_scope() as session:
        return session.execute(
            select(Conversation.id).where(Conversation.openid == openid)
        ).scalar_one()


@pytest.fixture
def bureau(wechat):
    """Residents and their records:

    - o-wan: a noise case of 万景社区 (closed: any status counts);
    - o-fraud: a 反诈 case (no community) and an older dog case of 万景社区;
    - o-yu: only a dog ticket of 俞范社区;
    - o-none: a conversation and nothing else;
    - o-link: a ticket of 俞范社区 diverted from a case of 万景社区.
    """
    people = {
        "zhang": add_user("zhang", "officer", community=WANJING),
        "zhao": add_user("zhao", "officer", community=YUFAN),
        "li": add_user("li", "officer", desk="反诈"),
        "wang": add_user("wang", "commander"),
        "root": add_user("root", "admin"),
        "chen": add_user("chen", "trainer"),
    }
    for openid in ("o-wan", "o-fraud", "o-yu", "o-none", "o-link"):
        wechat.post(text_xml(openid, f"{openid} 你好"))
    records = {
        "wan_case": make_case("o-wan", "noise_complaint", community=WANJING, status="closed"),
        "fraud_case": make_case("o-fraud", "fraud_suspicion"),
        "fraud_dog_case": make_case("o-fraud", "dog_complaint", community=WANJING),
        "yu_ticket": make_ticket("o-yu", community=YUFAN),
    }
    records["link_case"] = make_case("o-link", "dog_complaint", community=WANJING, status="closed")
    records["link_ticket"] = make_ticket("o-link", community=YUFAN, case_id=records["link_case"])
    records["fraud_ticket"] = make_ticket("o-fraud", community=YUFAN)
    return people | records


def visible_openids(wechat, name: str) -> set[str]:
    answer = wechat.client.get("/api/conversations", headers=token(wechat, name))
    assert answer.status_code == 200, answer.text
    return {c["openid"] for c in answer.json()}


def test_conversations_are_listed_only_where_the_officer_sees_a_case_or_ticket(wechat, bureau):
    everyone = {"o-wan", "o-fraud", "o-yu", "o-none", "o-link"}
    assert visible_openids(wechat, "zhang") == {"o-wan", "o-fraud", "o-link"}
    assert visible_openids(wechat, "zhao") == {"o-yu", "o-fraud", "o-link"}
    assert visible_openids(wechat, "li") == {"o-fraud"}
    assert visible_openids(wechat, "wang") == everyone
    assert visible_openids(wechat, "root") == everyone
    trainer = wechat.client.get("/api/conversations", headers=token(wechat, "chen"))
    assert trainer.status_code == 403


def test_searching_an_out_of_scope_resident_finds_nothing(wechat, bureau):
    def search(name: str, openid: str) -> list[str]:
        answer = wechat.client.get(
            "/api/conversations", params={"openid": openid}, headers=token(wechat, name)
        )
        assert answer.status_code == 200, answer.text
        return [c["openid"] for c in answer.json()]

    assert search("zhang", "o-wan") == ["o-wan"]
    assert search("zhang", "o-yu") == []
    assert search("li", "o-wan") == []
    assert search("zhao", "o-yu") == ["o-yu"]
    assert search("wang", "o-none") == ["o-none"]


def test_a_conversation_out_of_scope_is_404_like_a_missing_one(wechat, bureau):
    zhang = token(wechat, "zhang")
    missing = wechat.client.get("/api/conversations/999999", headers=zhang)
    for openid in ("o-yu", "o-none"):
        hidden = wechat.client.get(f"/api/conversations/{conversation_id(openid)}", headers=zhang)
        assert (hidden.status_code, hidden.json()) == (404, missing.json())
    mine = wechat.client.get(f"/api/conversations/{conversation_id('o-wan')}", headers=zhang)
    assert mine.status_code == 200
    assert [m["content"] for m in mine.json()["messages"]][0] == "o-wan 你好"
    li = token(wechat, "li")
    assert (
        wechat.client.get(f"/api/conversations/{conversation_id('o-wan')}", headers=li).status_code
        == 404
    )
    assert (
        wechat.client.get(
            f"/api/conversations/{conversation_id('o-fraud')}", headers=li
        ).status_code
        == 200
    )
    wang = token(wechat, "wang")
    assert (
        wechat.client.get(
            f"/api/conversations/{conversation_id('o-none')}", headers=wang
        ).status_code
        == 200
    )
    chen = token(wechat, "chen")
    assert (
        wechat.client.get(
            f"/api/conversations/{conversation_id('o-wan')}", headers=chen
        ).status_code
        == 403
    )


def test_tickets_are_listed_by_community_or_by_a_case_the_officer_sees(wechat, bureau):
    def ticket_ids(name: str) -> set[int]:
        answer = wechat.client.get("/api/tickets", headers=token(wechat, name))
        assert answer.status_code == 200, answer.text
        return {t["id"] for t in answer.json()}

    all_tickets = {bureau["yu_ticket"], bureau["link_ticket"], bureau["fraud_ticket"]}
    assert ticket_ids("zhang") == {bureau["link_ticket"]}  # of its case, not of 俞范社区
    assert ticket_ids("zhao") == all_tickets
    assert ticket_ids("li") == set()
    assert ticket_ids("wang") == all_tickets == ticket_ids("root")
    assert wechat.client.get("/api/tickets", headers=token(wechat, "chen")).status_code == 403


def test_a_case_lists_only_the_residents_records_the_reader_may_see(wechat, bureau):
    def detail(name: str, case_id: int) -> dict:
        answer = wechat.client.get(f"/api/cases/{case_id}", headers=token(wechat, name))
        assert answer.status_code == 200, answer.text
        return answer.json()

    fraud, dog, ticket = bureau["fraud_case"], bureau["fraud_dog_case"], bureau["fraud_ticket"]
    as_li = detail("li", fraud)
    assert ([h["id"] for h in as_li["history"]], as_li["tickets"]) == ([], [])
    as_zhang = detail("zhang", dog)
    assert ([h["id"] for h in as_zhang["history"]], as_zhang["tickets"]) == ([], [])
    as_wang = detail("wang", fraud)
    assert [h["id"] for h in as_wang["history"]] == [dog]
    assert [t["id"] for t in as_wang["tickets"]] == [ticket]
    linked = detail("zhang", bureau["link_case"])
    assert [t["id"] for t in linked["tickets"]] == [bureau["link_ticket"]]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "", None),
        ("post", "/claim", None),
        ("post", "/reply", {"text": "您好"}),
        ("post", "/notes", {"text": "备注"}),
        ("post", "/transfer", {"desk": "法制"}),
        ("post", "/divert", {"kind": "noise"}),
        ("post", "/close", {"resolution": "已处理"}),
        ("post", "/category", {"category": "other"}),
    ],
)
def test_every_action_on_a_case_out_of_scope_is_404_and_changes_nothing(
    wechat, bureau, method, path, body
):
    fraud = bureau["fraud_case"]
    missing = wechat.client.request(
        method, f"/api/cases/999999{path}", json=body, headers=token(wechat, "zhang")
    )
    for name in ("zhang", "zhao"):
        answer = wechat.client.request(
            method, f"/api/cases/{fraud}{path}", json=body, headers=token(wechat, name)
        )
        assert (answer.status_code, answer.json()) == (404, missing.json()), name
    trainer = wechat.client.request(
        method, f"/api/cases/{fraud}{path}", json=body, headers=token(wechat, "chen")
    )
    assert trainer.status_code == 403
    with db.session_scope() as session:
        case = session.get(Case, fraud)
        assert (case.status, case.claimed_by_id, case.desk, case.category) == (
            "open",
            None,
            "反诈",
            "fraud_suspicion",
        )
        acted = session.execute(
            select(AuditEntry).where(
                AuditEntry.target_type == "case", AuditEntry.target_id == fraud
            )
        ).all()
        assert acted == []


def test_every_read_of_a_residents_words_is_audited(wechat, bureau):
    zhang = token(wechat, "zhang")
    conversation = conversation_id("o-wan")
    wechat.client.get(f"/api/conversations/{conversation}", headers=zhang)
    wechat.client.get(f"/api/cases/{bureau['wan_case']}", headers=zhang)
    wechat.client.get(f"/api/conversations/{conversation_id('o-yu')}", headers=zhang)  # 404
    wechat.client.get(f"/api/cases/{bureau['fraud_case']}", headers=zhang)  # 404
    wechat.client.get("/api/conversations", headers=zhang)  # a list shows no messages
    with db.session_scope() as session:
        reads = [
            (e.action, e.actor_id, e.target_type, e.target_id, e.client_ip, e.detail)
            for e in session.execute(
                select(AuditEntry)
                .where(AuditEntry.action.in_(("read_conversation", "read_case")))
                .order_by(AuditEntry.id)
            ).scalars()
        ]
    zid = bureau["zhang"]
    assert reads == [
        ("read_conversation", zid, "conversation", conversation, "testclient", {"messages": 2}),
        ("read_case", zid, "case", bureau["wan_case"], "testclient", {"messages": 2}),
    ]


def test_every_officer_action_is_audited_with_the_client_ip(wechat, bureau):
    """Not only the reads: a claim, a note, a reply, a transfer and a divert say who, which
    case and from which address (the routes need not pass it: the request does)."""
    zhang = token(wechat, "zhang")
    case = make_case("o-wan", "noise_complaint", community=WANJING)
    other = make_case("o-wan", "dog_complaint", community=WANJING)
    calls = [
        (f"/api/cases/{case}/claim", None),
        (f"/api/cases/{case}/notes", {"text": "已电话联系"}),
        (f"/api/cases/{case}/reply", {"text": "您好，民警已收到"}),
        (f"/api/cases/{case}/transfer", {"desk": "治安"}),
        (f"/api/cases/{other}/divert", {"kind": "dog"}),
    ]
    for path, body in calls:
        answer = wechat.client.post(path, json=body, headers=zhang)
        assert answer.status_code == 200, (path, answer.text)
    with db.session_scope() as session:
        entries = [
            (e.action, e.target_id, e.client_ip)
            for e in session.execute(
                select(AuditEntry)
                .where(
                    AuditEntry.actor_id == bureau["zhang"],
                    AuditEntry.target_type == "case",
                    AuditEntry.action != "read_case",  # a claim answers with the case
                )
                .order_by(AuditEntry.id)
            ).scalars()
        ]
    assert {(action, target) for action, target, _ in entries} >= {
        ("claim", case),
        ("note", case),
        ("reply", case),
        ("transfer", case),
        ("divert", other),
    }
    assert {address for _, _, address in entries} == {"testclient"}


def test_audit_entries_outside_a_request_have_no_address(wechat, bureau):
    with db.session_scope() as session:
        audit.record(session, None, "test_entry", "case", bureau["fraud_case"])
    with db.session_scope() as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "test_entry")
        ).scalar_one()
        assert entry.client_ip is None
