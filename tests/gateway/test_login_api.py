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


def test_thirty_wrong_passwords_in_parallel_over_http_lock_the_pair(wechat):
    """Through uvicorn with thirty concurrent requests (the route commits each failure)."""
    import threading
    import time

    import httpx
    import uvicorn

    from gateway.app import create_app

    add_user("zhang")
    app = create_app(
        wechat.client.app.state.settings,
        start_outbox=False,
        rasa=wechat.client.app.state.rasa,
        probe_actions=False,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/api/auth/token"
    start = threading.Barrier(30)
    statuses: list[int] = []

    def wrong() -> None:
        start.wait()
        form = {"username": "zhang", "password": "wrong-password"}
        statuses.append(httpx.post(url, data=form, timeout=60).status_code)

    try:
        threads = [threading.Thread(target=wrong) for _ in range(30)]
        for worker in threads:
            worker.start()
        for worker in threads:
            worker.join(timeout=90)
        right = httpx.post(url, data={"username": "zhang", "password": PASSWORD}, timeout=30)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert sorted(set(statuses)) == [401]  # no 500 under contention
    assert len(statuses) == 30
    # From 127.0.0.1 the right password is refused: the pair is locked, and when more
    # than twenty of the thirty were counted before the lock, the address is as well.
    assert (right.status_code, right.json()["detail"]) in [
        (401, accounts.PAIR_LOCKED),
        (429, accounts.ADDRESS_LIMITED),
    ]
    with db.session_scope() as session:  # from another address the officer signs in
        accounts.authenticate(
            session=session, username="zhang", password=PASSWORD, client_ip="10.9.9.9"
        )
