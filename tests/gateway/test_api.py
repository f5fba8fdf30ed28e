"""Officers' API: tokens, the conversations API, roles, lockout, and /healthz."""

from __future__ import annotations

import pytest

from casework import accounts, db
from tests.gateway.conftest import text_xml


def add_user(name: str, role: str, password: str = "correct-horse") -> None:
    with db.session_scope() as session:
        accounts.create_user(session=session, username=name, password=password, role=role)


def login(wechat, name: str, password: str = "correct-horse"):
    return wechat.client.post("/api/auth/token", data={"username": name, "password": password})


def bearer(wechat, name: str) -> dict[str, str]:
    answer = login(wechat, name)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer"
    return {"Authorization": f"Bearer {body['access_token']}"}


def test_conversations_api_shows_every_message_both_ways_with_intent(wechat, rasa):
    add_user("wang", "commander")  # officers' scoping: tests/gateway/test_scoping.py
    wechat.post(text_xml("o-api", "身份证丢了怎么补办"))
    headers = bearer(wechat, "wang")
    listing = wechat.client.get("/api/conversations", params={"openid": "o-api"}, headers=headers)
    assert listing.status_code == 200
    [conversation] = listing.json()
    assert (conversation["openid"], conversation["owner"]) == ("o-api", "bot")
    detail = wechat.client.get(f"/api/conversations/{conversation['id']}", headers=headers).json()
    assert [(m["direction"], m["content"]) for m in detail["messages"]] == [
        ("in", "身份证丢了怎么补办"),
        ("out", "收到：身份证丢了怎么补办"),
    ]
    assert detail["messages"][1]["delivery"] == "passive"


def test_conversations_come_a_page_at_a_time_with_the_total(wechat):
    add_user("wang", "commander")
    for n in range(5):
        wechat.post(text_xml(f"o-page-{n}", "你好"))
    headers = bearer(wechat, "wang")
    pages = []
    for offset in (0, 2, 4):
        answer = wechat.client.get(
            "/api/conversations", params={"limit": 2, "offset": offset}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Total-Count"] == "5"
        pages.append([c["openid"] for c in answer.json()])
    assert [len(page) for page in pages] == [2, 2, 1]
    seen = [openid for page in pages for openid in page]
    assert sorted(seen) == [f"o-page-{n}" for n in range(5)]  # no overlap, no gap
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}):
        assert (
            wechat.client.get("/api/conversations", params=bad, headers=headers).status_code == 422
        )


def test_unknown_conversation_is_404(wechat):
    add_user("wang", "commander")
    answer = wechat.client.get("/api/conversations/9999", headers=bearer(wechat, "wang"))
    assert answer.status_code == 404


def test_no_token_or_a_bad_token_is_401(wechat):
    assert wechat.client.get("/api/conversations").status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert wechat.client.get("/api/conversations", headers=bad).status_code == 401


def test_trainers_do_not_read_residents_conversations(wechat):
    add_user("li", "trainer")
    assert wechat.client.get("/api/conversations", headers=bearer(wechat, "li")).status_code == 403


def test_wrong_password_is_401_and_repeated_failures_lock_the_account(wechat):
    add_user("zhao", "officer")
    for _ in range(accounts.MAX_FAILED_LOGINS):
        assert login(wechat, "zhao", "wrong-password").status_code == 401
    locked = login(wechat, "zhao")  # even the right password, while locked
    assert locked.status_code == 401
    assert "锁定" in locked.json()["detail"]


@pytest.mark.parametrize(("role", "password"), [("boss", "long-enough"), ("officer", "short")])
def test_invalid_accounts_are_refused(database_url, role, password):
    with pytest.raises(accounts.AccountError), db.session_scope() as session:
        accounts.create_user(session=session, username="x", password=password, role=role)


def test_passwords_are_stored_as_scrypt_hashes(database_url):
    with db.session_scope() as session:
        user = accounts.create_user(
            session=session, username="qian", password="s3cret-pass", role="admin"
        )
        assert user.password_hash.startswith("scrypt$")
        assert "s3cret-pass" not in user.password_hash
        assert accounts.verify_password("s3cret-pass", user.password_hash)
        assert not accounts.verify_password("s3cret-pas", user.password_hash)


def test_healthz_reports_each_dependency(wechat, rasa):
    answer = wechat.client.get("/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["database"], body["rasa"]) == ("ok", "ok")
    assert body["action_server"].startswith("down")  # none runs in this test
    assert body["status"] == "degraded"
    rasa.down = True
    assert wechat.client.get("/healthz").json()["rasa"] == "down"


def test_openapi_documents_the_api(wechat):
    paths = wechat.client.get("/openapi.json").json()["paths"]
    assert {"/api/auth/token", "/api/conversations", "/api/conversations/{conversation_id}"} <= set(
        paths
    )
