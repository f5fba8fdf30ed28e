"""The console's live stream: single-use stream tickets instead of a token in the URL,
scoped changes, and a real stream over uvicorn — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest
import uvicorn
from sqlalchemy import update

from casework import accounts, db, live
from casework.cases import open_case
from casework.clock import utcnow
from casework.models import SharedValue
from gateway.app import create_app

PASSWORD = "correct-horse"


def add_user(name: str, role: str, **where) -> int:
    with db.session_scope() as session:
        return accounts.create_user(
            session=session, username=name, password=PASSWORD, role=role, **where
        ).id


def bearer(wechat, name: str) -> dict[str, str]:
    answer = wechat.client.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def ticket_for(wechat, name: str) -> str:
    answer = wechat.client.post("/api/events/ticket", headers=bearer(wechat, name))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["expires_in"] == 30
    return body["ticket"]


def redeem(ticket: str) -> int | None:
    with db.session_scope() as session:
        return live.redeem_ticket(session=session, ticket=ticket)


@pytest.mark.parametrize("role", ["officer", "commander", "admin"])
def test_officers_commanders_and_admins_get_a_ticket_good_once(wechat, role):
    user_id = add_user("zhang", role)
    ticket = ticket_for(wechat, "zhang")
    assert redeem(ticket) == user_id
    assert redeem(ticket) is None  # single use


def test_trainers_and_anonymous_callers_get_no_ticket(wechat):
    add_user("chen", "trainer")
    assert wechat.client.post("/api/events/ticket").status_code == 401
    answer = wechat.client.post("/api/events/ticket", headers=bearer(wechat, "chen"))
    assert answer.status_code == 403


def test_an_expired_ticket_is_refused(wechat):
    add_user("zhang", "officer")
    ticket = ticket_for(wechat, "zhang")
    with db.session_scope() as session:
        session.execute(update(SharedValue).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert redeem(ticket) is None


def test_a_ticket_of_a_disabled_account_is_refused(wechat):
    add_user("zhang", "officer")
    ticket = ticket_for(wechat, "zhang")
    with db.session_scope() as session:
        accounts.disable_user(session=session, username="zhang")
    assert redeem(ticket) is None


def test_only_a_hash_of_the_ticket_is_stored(wechat):
    add_user("zhang", "officer")
    ticket = ticket_for(wechat, "zhang")
    with db.session_scope() as session:
        keys = [v.key for v in session.query(SharedValue).all()]
    assert not any(ticket in key for key in keys)
    assert any(key.startswith("sse:") for key in keys)


def test_two_connections_racing_for_one_ticket_get_it_once(wechat):
    add_user("zhang", "officer")
    ticket = ticket_for(wechat, "zhang")
    start = threading.Barrier(8)
    won: list[int | None] = []

    def race() -> None:
        start.wait()
        won.append(redeem(ticket))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 8
    assert len([w for w in won if w is not None]) == 1


@pytest.mark.parametrize(
    "params",
    [{}, {"ticket": ""}, {"ticket": "made-up"}, {"ticket": "x" * 5000}],
)
def test_the_stream_without_a_valid_ticket_is_401(wechat, params):
    assert wechat.client.get("/api/events", params=params).status_code == 401


def test_the_stream_no_longer_accepts_a_token_in_the_url(wechat):
    add_user("zhang", "officer")
    token = bearer(wechat, "zhang")["Authorization"].removeprefix("Bearer ")
    answer = wechat.client.get("/api/events", params={"access_token": token})
    assert answer.status_code == 401
    assert wechat.client.get("/api/events", params={"ticket": token}).status_code == 401


def test_changes_are_scoped_like_the_queue(database_url):
    desk_officer = add_user("li", "officer", desk="反诈")
    other_officer = add_user("zhao", "officer", community="万景社区")
    commander = add_user("wang", "commander")
    with db.session_scope() as session:
        fraud = open_case(
            session=session,
            sender_id="o-fraud",
            category="fraud_suspicion",
            priority="urgent",
            reason="test",
            summary="刷单被骗",
            desk="反诈",
        ).id

    def seen(user_id: int) -> list[int]:
        with db.session_scope() as session:
            found = live.changes(session=session, user_id=user_id, since=None, last_message=0)
        return [c.id for c in found.cases]

    assert seen(desk_officer) == seen(commander) == [fraud]
    assert seen(other_officer) == []


def test_the_stream_tells_the_console_about_a_new_case(wechat):
    """Over real HTTP (uvicorn), since the test client cannot stream."""
    add_user("wang", "commander")
    settings = wechat.client.app.state.settings
    app = create_app(
        settings, start_outbox=False, rasa=wechat.client.app.state.rasa, probe_actions=False
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    ticket = ticket_for(wechat, "wang")

    def new_case() -> None:
        with db.session_scope() as session:
            open_case(
                session=session,
                sender_id="o-live",
                category="emergency",
                priority="urgent",
                reason="test",
                summary="有人拿刀",
            )

    try:
        received: list[str] = []
        threading.Timer(1.5, new_case).start()
        with httpx.stream("GET", f"{base}/api/events", params={"ticket": ticket}, timeout=20) as s:
            assert s.status_code == 200
            for line in s.iter_lines():
                received.append(line)
                if '"priority": "urgent"' in line or time.time() > deadline + 20:
                    break
        assert "event: case" in received
        assert any('"priority": "urgent"' in line for line in received)
        # the same ticket does not open a second stream
        assert httpx.get(f"{base}/api/events", params={"ticket": ticket}).status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=10)
