"""Precision dissuasion over HTTP, as the warning platform and officers call it (SQLite
and PostgreSQL): the signed leads webhook (bad signature, replay, stale → 401; signed but
malformed → 422; the same external_id → the same task), the CSV upload with bad rows,
scoping, the 409 rule, defrauded → an urgent fraud case, and 紧急止付 on that case."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casework import accounts, db, residents
from integrations.signed_webhooks import signed_headers

PASSWORD = "correct-horse-battery"
PATH = "/api/dissuasion/leads"
A = "万景社区"


def lead(external_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "phone": "138-0000-1234",
        "name": "王女士",
        "address": "骆驼街道万景社区 12 幢",
        "risk_type": "冒充客服",
        "risk_level": "high",
        "warned_at": "2026-12-05T10:00:00+08:00",
        "source": "96110",
        **changes,
    }


def send(client, body: bytes, **signing: Any):
    secret = signing.pop("secret", client.app.state.settings.dissuasion_secret)
    headers = signed_headers(secret=secret, method="POST", path=PATH, body=body, **signing)
    return client.post(PATH, content=body, headers=headers)


def send_leads(client, *leads: dict[str, Any]):
    return send(client, json.dumps({"leads": list(leads)}, ensure_ascii=False).encode())


@pytest.fixture
def client(wechat):
    with db.session_scope() as session:
        for name, role, where in (
            ("officer_a", "officer", {"community": A}),
            ("officer_b", "officer", {"community": "清水湖社区"}),
            ("desk", "officer", {"desk": "反诈"}),
            ("commander", "commander", {}),
        ):
            accounts.create_user(
                session=session, username=name, password=PASSWORD, role=role, **where
            )
    return wechat.client


def bearer(client, name: str) -> dict[str, str]:
    answer = client.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_signed_leads_become_tasks_and_the_same_external_id_is_the_same_task(client):
    first = send_leads(client, lead("W1"), lead("W2", risk_level="low", address=None))
    assert first.status_code == 202, first.text
    ids = first.json()["task_ids"]
    assert first.json()["created"] == 2 and len(set(ids)) == 2
    again = send_leads(client, lead("W1"))  # the platform retried, newly signed
    assert again.status_code == 202
    assert again.json() == {"task_ids": ids[:1], "created": 0, "duplicates": 1}
    tasks = client.get("/api/dissuasion/tasks", headers=bearer(client, "commander")).json()
    assert sorted(t["id"] for t in tasks) == sorted(ids)
    high = next(t for t in tasks if t["id"] == ids[0])
    assert (high["community"], high["assignee"]["name"], high["phone_masked"]) == (
        A,
        "officer_a",
        "138****1234",
    )
    assert high["notice_status"] == "pending" and "13800001234" not in json.dumps(tasks)


def test_bad_signature_replay_and_stale_timestamp_are_refused(client):
    body = json.dumps({"leads": [lead("S1")]}).encode()
    assert send(client, body, secret="not-the-secret").status_code == 401
    # 300 s is the window; a minute's margin so a slow CI machine cannot bring one inside
    assert send(client, body, now=time.time() - 360).status_code == 401
    assert send(client, body, now=time.time() + 360).status_code == 401
    assert (
        client.post(PATH, content=body, headers={"Content-Type": "application/json"}).status_code
        == 401
    )
    assert send(client, body, nonce="nonce-seen-once-0001").status_code == 202
    replay = send(client, body, nonce="nonce-seen-once-0001")
    assert replay.status_code == 401
    tampered = signed_headers(
        secret=client.app.state.settings.dissuasion_secret, method="POST", path=PATH, body=body
    )
    assert client.post(PATH, content=body + b" ", headers=tampered).status_code == 401
    tasks = client.get("/api/dissuasion/tasks", headers=bearer(client, "commander")).json()
    assert len(tasks) == 1


@pytest.mark.parametrize(
    "body, named",
    [
        (b"not json", "leads"),
        (b"\xff\xfe\x00", "leads"),
        (b"[]", "leads"),
        (b"[[null, null]]", "leads"),  # found by the property test below on CI
        (b'[["leads", []]]', "leads"),
        (b'{"leads": "x"}', "leads"),
        (b'{"leads": []}', "leads"),
        (json.dumps({"leads": [lead("M", phone="12345")]}).encode(), "leads.0.phone"),
        (json.dumps({"leads": [lead("M", risk_level="紧急")]}).encode(), "risk_level"),
        (json.dumps({"leads": [lead("M", warned_at="2026-12-05 10:00")]}).encode(), "warned_at"),
        (json.dumps({"leads": [lead("M", warned_at="yesterday")]}).encode(), "warned_at"),
        (
            json.dumps({"leads": [lead("M", warned_at="0001-01-01T00:00:00+08:00")]}).encode(),
            "warned_at",
        ),
        (
            json.dumps({"leads": [lead("M", warned_at="2999-01-01T00:00:00+08:00")]}).encode(),
            "warned_at",
        ),
        (json.dumps({"leads": [lead(str(n)) for n in range(201)]}).encode(), "leads"),
        (json.dumps({"leads": [lead("M", source="s" * 65)]}).encode(), "source"),
        (json.dumps({"leads": [{**lead("M"), "external_id": "x" * 200}]}).encode(), "external_id"),
    ],
)
def test_a_signed_but_malformed_body_is_a_422_that_names_the_field(client, body, named):
    answer = send(client, body)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]


def test_csv_upload_keeps_good_rows_and_reports_bad_ones(client):
    text = (
        "预警编号,手机号,姓名,地址,风险类型,风险等级,预警时间,来源\n"
        "U1,13800001234,张三,万景社区,刷单返利,高,2026-12-05 10:00,市反诈中心\n"
        "U2,不是号码,李四,,贷款,低,2026-12-05 10:00,市反诈中心\n"
        "U3,13900001234,,,虚假投资理财,中,2026-12-05 10:00,市反诈中心\n"
    )
    files = {"file": ("预警线索.csv", text.encode("gbk"), "text/csv")}
    answer = client.post(
        "/api/dissuasion/leads/upload", files=files, headers=bearer(client, "desk")
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["rows"], result["created"]) == (3, 2)
    assert [e["line"] for e in result["errors"]] == [3]
    refused = client.post(
        "/api/dissuasion/leads/upload", files=files, headers=bearer(client, "officer_a")
    )
    assert refused.status_code == 403
    garbage = {"file": ("x.csv", b"\x81\x30\x81", "text/csv")}
    bad = client.post("/api/dissuasion/leads/upload", files=garbage, headers=bearer(client, "desk"))
    assert bad.status_code == 422
    header = b"external_id,phone,risk_type,risk_level,warned_at\n"
    nul = {"file": ("x.csv", header + b"A\x00,13800001234,x,high,2026-12-05 10:00\n", "text/csv")}
    answer = client.post("/api/dissuasion/leads/upload", files=nul, headers=bearer(client, "desk"))
    assert answer.status_code == 422, answer.text
    assert "第 2 行" in answer.json()["detail"]


def test_officers_see_their_community_and_unreachable_needs_a_visit(client):
    [task_id] = send_leads(client, lead("R1")).json()["task_ids"]
    officer_a, officer_b = bearer(client, "officer_a"), bearer(client, "officer_b")
    assert client.get("/api/dissuasion/tasks", headers=officer_b).json() == []
    assert client.get(f"/api/dissuasion/tasks/{task_id}", headers=officer_b).status_code == 404
    detail = client.get(f"/api/dissuasion/tasks/{task_id}", headers=officer_a).json()
    assert detail["phone"] == "13800001234"
    attempts = f"/api/dissuasion/tasks/{task_id}/attempts"
    outcome = f"/api/dissuasion/tasks/{task_id}/outcome"
    phone = {"channel": "phone", "reached": False, "note": "两次未接"}
    assert client.post(attempts, json=phone, headers=officer_a).status_code == 200
    refused = client.post(outcome, json={"outcome": "unreachable"}, headers=officer_a)
    assert refused.status_code == 409 and "上门" in refused.json()["detail"]
    assert (
        client.post(
            attempts, json={"channel": "fax", "reached": False}, headers=officer_a
        ).status_code
        == 422
    )
    visit = {"channel": "visit", "reached": False, "note": "家中无人，已留联系卡"}
    assert client.post(attempts, json=visit, headers=officer_a).status_code == 200
    closed = client.post(outcome, json={"outcome": "unreachable"}, headers=officer_a)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert client.post(outcome, json={"outcome": "dissuaded"}, headers=officer_a).status_code == 409
    shown = client.get(f"/api/dissuasion/tasks/{task_id}", headers=officer_a).json()
    assert [a["channel"] for a in shown["attempts"]] == ["phone", "visit"]
    negative = send_leads(client, lead("R2")).json()["task_ids"][0]
    answer = client.post(
        f"/api/dissuasion/tasks/{negative}/outcome",
        json={"outcome": "dissuaded", "amount_protected": -1},
        headers=officer_a,
    )
    assert answer.status_code == 422


def test_the_task_list_is_paginated_in_a_stable_order_with_the_total_in_a_header(client):
    """limit/offset/X-Total-Count (the list endpoints' convention): pages in list order —
    open tasks by deadline (ties by id), then closed ones, latest first — that neither
    overlap nor skip, whatever the page size; the body stays a JSON list."""
    levels = ["high", "low", "high", "medium", "high", "low", "high"]
    ids = send_leads(
        client, *(lead(f"P{n}", risk_level=level) for n, level in enumerate(levels))
    ).json()["task_ids"]
    commander, officer_b = bearer(client, "commander"), bearer(client, "officer_b")
    for task_id in ids[:2]:  # two are closed, the second one last
        base = f"/api/dissuasion/tasks/{task_id}"
        visit = {"channel": "visit", "reached": True, "note": "已上门"}
        assert client.post(f"{base}/attempts", json=visit, headers=commander).status_code == 200
        done = client.post(f"{base}/outcome", json={"outcome": "dissuaded"}, headers=commander)
        assert done.status_code == 200, done.text
    everything = client.get("/api/dissuasion/tasks?limit=200", headers=commander)
    assert everything.headers["X-Total-Count"] == "7"
    order = [t["id"] for t in everything.json()]
    opened = [t for t in everything.json() if t["status"] == "open"]
    assert [t["id"] for t in opened] == [
        t["id"] for t in sorted(opened, key=lambda t: (t["deadline_at"], t["id"]))
    ]
    assert order[5:] == [ids[1], ids[0]]  # closed last, the latest first
    for size in (1, 2, 3, 5):
        pages = []
        for offset in range(0, 9, size):
            page = client.get(
                f"/api/dissuasion/tasks?limit={size}&offset={offset}", headers=commander
            )
            assert page.status_code == 200 and page.headers["X-Total-Count"] == "7"
            assert isinstance(page.json(), list) and len(page.json()) <= size
            pages += [t["id"] for t in page.json()]
        assert pages == order, size
    default = client.get("/api/dissuasion/tasks", headers=commander)
    assert [t["id"] for t in default.json()] == order  # 50 by default
    still_open = client.get("/api/dissuasion/tasks?status=open&limit=2&offset=4", headers=commander)
    assert (
        still_open.headers["X-Total-Count"] == "5"
        and [t["id"] for t in still_open.json()] == order[4:5]
    )
    nothing = client.get("/api/dissuasion/tasks?limit=10", headers=officer_b)  # not her community
    assert (nothing.json(), nothing.headers["X-Total-Count"]) == ([], "0")
    for bad in ("limit=0", "limit=201", "offset=-1", "limit=x", f"offset={10**20}"):
        answer = client.get(f"/api/dissuasion/tasks?{bad}", headers=commander)
        assert answer.status_code == 422, bad


def test_defrauded_opens_an_urgent_case_where_stop_payments_are_recorded(client):
    with db.session_scope() as session:
        residents.set_profile(session=session, openid="o-wang", mobile="13800001234", consent=True)
    [task_id] = send_leads(client, lead("F1")).json()["task_ids"]
    officer_a, desk = bearer(client, "officer_a"), bearer(client, "desk")
    done = client.post(
        f"/api/dissuasion/tasks/{task_id}/outcome", json={"outcome": "defrauded"}, headers=officer_a
    ).json()
    case = client.get(f"/api/cases/{done['case_id']}", headers=desk).json()
    assert (case["priority"], case["category"], case["reason"], case["desk"]) == (
        "urgent",
        "fraud_suspicion",
        "dissuasion_defrauded",
        "反诈",
    )
    assert case["conversation"]["openid"] == "o-wang"
    assert case["details"]["dissuasion_task_id"] == task_id
    path = f"/api/cases/{done['case_id']}/stop-payments"
    made = client.post(
        path,
        json={"bank": "中国银行", "account": "6216 6100 0001 2345", "amount": "8000.00"},
        headers=desk,
    )
    assert made.status_code == 200, made.text
    assert made.json()["account_masked"] == "6216********2345"
    result = client.post(
        f"{path}/{made.json()['id']}/result", json={"frozen": 8000, "recovered": 3000}, headers=desk
    )
    assert result.status_code == 200, result.text
    summary = client.get(path, headers=desk).json()
    assert (summary["amount"], summary["frozen"], summary["recovered"]) == (8000, 8000, 3000)
    assert client.get(path, headers=bearer(client, "officer_b")).status_code == 404
    too_much = client.post(
        f"{path}/{made.json()['id']}/result", json={"frozen": 9000}, headers=desk
    )
    assert too_much.status_code == 422


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={key: JSON for key in lead("x")} | {"phone": st.text(max_size=20)},
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(JSON, st.fixed_dictionaries({"leads": st.lists(FIELDS, max_size=3)})))
def test_no_signed_body_is_a_server_error(client, body):
    answer = send(client, json.dumps(body).encode())
    assert answer.status_code in (202, 422), answer.text
