"""POST /api/auth/token through the real app: answers, status codes, audited client IP."""

from __future__ import annotations

from sqlalchemy import select

from casework import accounts, db
from casework.models import AuditEntry

PASSWORD = "correct-horse"


def add_user(name: str) -> int:
    with db.session_scope() as session:
        return accounts.create_user(
            session=session, username=name, password=PASSWORD, role="officer"
        ).id


def login(wechat, name: str, password: str = PASSWORD):
    return wechat.client.post("/api/auth/token", data={"username": name, "password": password})


def test_wrong_password_and_unknown_username_get_the_same_answer(wechat):
    add_user("zhang")
    wrong, unknown = login(wechat, "zhang", "wrong-password"), login(wechat, "nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "用户名或密码错误"}


def test_a_locked_pair_gets_one_text_whether_the_username_exists_or_not(wechat):
    add_user("zhang")
    for _ in range(accounts.MAX_FAILED_LOGINS):
        login(wechat, "zhang", "wrong-password")
        login(wechat, "nobody", "wrong-password")
    known, unknown = login(wechat, "zhang"), login(wechat, "nobody")
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json() == {"detail": accounts.PAIR_LOCKED}


def test_an_address_guessing_many_usernames_gets_429(wechat):
    add_user("zhang")
    for n in range(accounts.MAX_FAILED_LOGINS_PER_IP):
        assert login(wechat, f"guess{n}", "wrong-password").status_code == 401
    limited = login(wechat, "zhang")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == str(int(accounts.LOCKOUT.total_seconds()))
    assert limited.json() == {"detail": accounts.ADDRESS_LIMITED}


def test_logins_and_failures_are_audited_with_the_client_address(wechat):
    user_id = add_user("zhang")
    login(wechat, "zhang", "wrong-password")
    assert login(wechat, "zhang").status_code == 200
    with db.session_scope() as session:
        entries = [
            (e.action, e.actor_id, e.client_ip, e.detail.get("username"))
            for e in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()
        ]
    # Starlette's test client connects from the address "testclient"
    assert entries == [
        ("login_failed", None, "testclient", "zhang"),
        ("login", user_id, "testclient", None),
    ]
