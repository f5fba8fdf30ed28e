"""The console's cookie sessions through the real app, on SQLite and PostgreSQL: the
cookie's flags, CSRF and Origin refusals, idle and absolute expiry on an injected clock,
logout, logout everywhere (other sessions and older bearer tokens), a disabled account,
and the live stream opened and ended with the cookie."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.requests import Request

from casework import accounts, db, live, sessions
from casework.cases import open_case
from casework.clock import aware, utcnow
from casework.models import AuditEntry, ConsoleSession
from gateway.app import create_app
from gateway.deps import CSRF_REFUSED, CSRF_REFUSED_HEADER, ORIGIN_REFUSED
from gateway.routes import auth as auth_routes
from tests.gateway.conftest import StandInRasa, gateway_settings

PASSWORD = "correct-horse-battery"
HOME = "http://testserver"  # the test client's origin


def add_user(name: str, role: str = "officer", **where: str) -> int:
    with db.session_scope() as session:
        return accounts.create_user(
            session=session, username=name, password=PASSWORD, role=role, **where
        ).id


@pytest.fixture
def app(database_url, monkeypatch):
    settings = gateway_settings(database_url, monkeypatch)
    return create_app(settings, start_outbox=False, rasa=StandInRasa(), probe_actions=False)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def device(app, base_url: str = HOME) -> TestClient:
    """Another browser (its own cookie jar) on the same app."""
    return TestClient(app, base_url=base_url)


def sign_in(browser: TestClient, name: str, password: str = PASSWORD) -> dict:
    answer = browser.post("/api/auth/session", data={"username": name, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()


def csrf(body: dict) -> dict[str, str]:
    return {"X-CSRF-Token": body["csrf_token"]}


def bearer(browser: TestClient, name: str) -> dict[str, str]:
    answer = browser.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def stored_session() -> ConsoleSession:
    with db.session_scope() as session:
        [row] = session.execute(select(ConsoleSession)).scalars()
        session.expunge(row)
        return row


class Clock:
    """The sessions' clock, moved by hand: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    ticking = Clock()
    monkeypatch.setattr(sessions, "utcnow", ticking)
    return ticking


# ------------------------------------------------------------------ the cookie


def test_the_console_login_sets_a_persistent_httponly_strict_cookie_and_no_jwt(client):
    add_user("zhang", community="万景社区")
    answer = client.post("/api/auth/session", data={"username": "zhang", "password": PASSWORD})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in rest.split(";")[1:]}
    assert name == sessions.COOKIE  # plain HTTP in development: no Secure, no __Host-
    assert {"httponly", "path", "samesite", "max-age"} <= set(flags)
    assert flags["samesite"].lower() == "samesite=strict"
    assert flags["path"] == "Path=/"
    assert flags["max-age"] == "Max-Age=43200"  # SESSION_MAX_HOURS (12) — persistent
    assert "secure" not in flags and "domain" not in flags
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert "access_token" not in body and body["user"]["username"] == "zhang"
    assert body["idle_minutes"] == 120 and len(body["csrf_token"]) >= 40
    # Only the token's hash is stored; the cookie's value opens the session.
    token = client.cookies[sessions.COOKIE]
    row = stored_session()
    assert row.id == sessions.hash_token(token) and token not in row.id
    assert row.client_ip == "testclient" and row.user_agent
    assert client.get("/api/me").json()["username"] == "zhang"


def test_over_https_the_cookie_is_secure_with_the_host_prefix(app):
    add_user("zhang")
    browser = device(app, "https://testserver")
    answer = browser.post("/api/auth/session", data={"username": "zhang", "password": PASSWORD})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.SECURE_COOKIE}=")
    assert "; Secure" in cookie and "HttpOnly" in cookie and "Domain" not in cookie
    assert browser.get("/api/me").status_code == 200
    assert browser.get("/api/auth/session").json()["csrf_token"] == answer.json()["csrf_token"]


def test_production_marks_the_cookie_secure_even_behind_a_plain_http_proxy(app):
    """TLS usually ends at the reverse proxy: the gateway may see http, the browser https."""
    settings = app.state.settings
    scope = {"type": "http", "scheme": "http", "server": ("gateway", 8000), "path": "/"}
    plain = Request({**scope, "headers": []})
    assert not auth_routes._secure(plain, settings)  # development over plain HTTP
    assert auth_routes._secure(plain, replace(settings, environment="production"))
    assert auth_routes._secure(Request({**scope, "scheme": "https", "headers": []}), settings)


def test_the_bearer_login_is_unchanged_and_sets_no_cookie(client):
    add_user("zhang")
    answer = client.post("/api/auth/token", data={"username": "zhang", "password": PASSWORD})
    assert set(answer.json()) == {"access_token", "token_type"}
    assert "set-cookie" not in answer.headers and not client.cookies


def test_a_refused_console_login_sets_nothing_and_counts_as_a_failure(client):
    add_user("zhang")
    answer = client.post("/api/auth/session", data={"username": "zhang", "password": "wrong!!"})
    assert answer.status_code == 401 and answer.json() == {"detail": accounts.WRONG_CREDENTIALS}
    assert "set-cookie" not in answer.headers
    with db.session_scope() as session:
        actions = session.execute(select(AuditEntry.action)).scalars().all()
        assert actions == ["login_failed"]
        assert session.execute(select(func.count(ConsoleSession.id))).scalar() == 0


# ------------------------------------------------------------------ CSRF and Origin


def test_reads_need_no_csrf_token_and_get_session_repeats_it(client):
    add_user("zhang")
    body = sign_in(client, "zhang")
    assert client.get("/api/vocabulary").status_code == 200
    again = client.get("/api/auth/session")
    assert again.status_code == 200 and again.json()["csrf_token"] == body["csrf_token"]


@pytest.mark.parametrize("given", [None, "", "wrong-token", "x" * 5000])
def test_a_cookie_request_that_changes_something_needs_the_csrf_token(client, given):
    add_user("zhang")
    sign_in(client, "zhang")
    headers = {} if given is None else {"X-CSRF-Token": given}
    answer = client.post("/api/events/ticket", headers=headers)
    assert answer.status_code == 403
    assert answer.json() == {"detail": CSRF_REFUSED}
    assert answer.headers[CSRF_REFUSED_HEADER] == "1"


def test_with_the_csrf_token_an_officer_works_a_case(client):
    officer = add_user("zhang", community="万景社区")
    body = sign_in(client, "zhang")
    with db.session_scope() as session:
        case = open_case(
            session=session,
            sender_id="o-resident",
            category="noise_complaint",
            priority="normal",
            reason="resident_request",
            summary="楼上装修",
        )
        case.community = "万景社区"
        case_id = case.id
    refused = client.post(f"/api/cases/{case_id}/claim")
    assert refused.status_code == 403
    claimed = client.post(f"/api/cases/{case_id}/claim", headers=csrf(body))
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["claimed_by"]["id"] == officer


def test_the_csrf_token_of_another_session_is_refused(app, client):
    add_user("zhang")
    add_user("li")
    sign_in(client, "zhang")
    other = sign_in(device(app), "li")
    assert client.post("/api/events/ticket", headers=csrf(other)).status_code == 403


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://testserver.evil"])
def test_a_foreign_origin_is_refused_even_with_the_token(client, origin):
    add_user("zhang")
    body = sign_in(client, "zhang")
    answer = client.post("/api/events/ticket", headers={**csrf(body), "Origin": origin})
    assert answer.status_code == 403 and answer.json() == {"detail": ORIGIN_REFUSED}
    same = client.post("/api/events/ticket", headers={**csrf(body), "Origin": HOME})
    assert same.status_code == 200
    # Behind a TLS proxy the browser's origin is https on the same host.
    proxied = client.post(
        "/api/events/ticket", headers={**csrf(body), "Origin": "https://testserver"}
    )
    assert proxied.status_code == 200


def test_nobody_signs_a_browser_in_from_another_site(client):
    add_user("zhang")
    answer = client.post(
        "/api/auth/session",
        data={"username": "zhang", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403 and "set-cookie" not in answer.headers


def test_bearer_requests_need_no_csrf_and_win_over_a_cookie(app, client):
    add_user("zhang")
    add_user("li")
    sign_in(client, "zhang")
    li = bearer(device(app), "li")
    assert client.get("/api/me", headers=li).json()["username"] == "li"
    foreign = {**li, "Origin": "https://evil.example"}  # not a browser's cookie: no CSRF
    assert client.post("/api/events/ticket", headers=foreign).status_code == 200
    broken = client.get("/api/me", headers={"Authorization": "Bearer not-a-jwt"})
    assert broken.status_code == 401  # a bad header is not rescued by the cookie


# ------------------------------------------------------------------ expiry


def test_idle_expiry_and_last_seen_written_at_most_once_a_minute(client, clock):
    add_user("zhang")
    signed_in_at = clock.now
    body = sign_in(client, "zhang")
    assert aware(datetime.fromisoformat(body["idle_expires_at"])) == signed_in_at + timedelta(
        minutes=120
    )
    clock.advance(seconds=30)
    assert client.get("/api/me").status_code == 200
    assert aware(stored_session().last_seen_at) == signed_in_at  # no write per request
    clock.advance(seconds=31)
    assert client.get("/api/me").status_code == 200
    assert aware(stored_session().last_seen_at) == clock.now  # a minute on: one write
    touched = clock.now
    clock.advance(minutes=119)
    assert client.get("/api/vocabulary").status_code == 200  # 119 min idle: still in
    assert aware(stored_session().last_seen_at) == touched + timedelta(minutes=119)
    clock.advance(minutes=120)  # two hours without a request
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/auth/session").status_code == 401
    assert client.post("/api/events/ticket", headers=csrf(body)).status_code == 401


def test_absolute_expiry_ends_even_a_busy_session(client, clock):
    add_user("zhang")
    sign_in(client, "zhang")
    for _ in range(7):  # a request every 100 minutes: never idle
        clock.advance(minutes=100)
        assert client.get("/api/me").status_code == 200
    clock.advance(minutes=20)  # 12 h after signing in (SESSION_MAX_HOURS)
    assert client.get("/api/me").status_code == 401


def test_the_expiry_settings_are_read(database_url, monkeypatch, clock):
    monkeypatch.setenv("SESSION_IDLE_MINUTES", "15")
    monkeypatch.setenv("SESSION_MAX_HOURS", "1")
    settings = gateway_settings(database_url, monkeypatch)
    app = create_app(settings, start_outbox=False, rasa=StandInRasa(), probe_actions=False)
    add_user("zhang")
    browser = device(app)
    answer = browser.post("/api/auth/session", data={"username": "zhang", "password": PASSWORD})
    assert "Max-Age=3600" in answer.headers["set-cookie"]
    assert answer.json()["idle_minutes"] == 15
    clock.advance(minutes=14)
    assert browser.get("/api/me").status_code == 200
    clock.advance(minutes=15)
    assert browser.get("/api/me").status_code == 401


# ------------------------------------------------------------------ logout


def test_logout_ends_this_session_and_clears_the_cookie(client):
    add_user("zhang")
    body = sign_in(client, "zhang")
    token = client.cookies[sessions.COOKIE]
    assert client.post("/api/auth/logout").status_code == 403  # live session: CSRF needed
    assert client.get("/api/me").status_code == 200
    answer = client.post("/api/auth/logout", headers=csrf(body))
    assert answer.status_code == 204
    cleared = answer.headers.get_list("set-cookie")
    assert any(c.startswith(f"{sessions.COOKIE}=") and "Max-Age=0" in c for c in cleared)
    assert sessions.COOKIE not in client.cookies
    client.cookies.set(sessions.COOKIE, token)  # the old cookie, kept by someone
    assert client.get("/api/me").status_code == 401
    assert stored_session().revoked_at is not None
    # Nothing to end: still 204, so a stale page's 退出 always works.
    assert client.post("/api/auth/logout").status_code == 204
    with db.session_scope() as session:
        actions = session.execute(select(AuditEntry.action).order_by(AuditEntry.id)).scalars()
        assert list(actions) == ["login", "logout"]


def test_logout_everywhere_ends_other_sessions_and_older_bearer_tokens(app, client):
    add_user("zhang")
    add_user("li")
    phone, laptop, script = device(app), device(app), device(app)
    body = sign_in(phone, "zhang")
    sign_in(laptop, "zhang")
    sign_in(client, "li")  # someone else's session is untouched
    old_token = bearer(script, "zhang")
    assert script.get("/api/me", headers=old_token).status_code == 200
    answer = phone.post("/api/auth/logout-all", headers=csrf(body))
    assert answer.status_code == 200 and answer.json() == {"sessions_ended": 2}
    assert sessions.COOKIE not in phone.cookies
    assert laptop.get("/api/me").status_code == 401
    assert script.get("/api/me", headers=old_token).status_code == 401
    assert client.get("/api/me").json()["username"] == "li"
    # Signing in again works at once, in the same second as the logout.
    assert script.get("/api/me", headers=bearer(script, "zhang")).status_code == 200
    sign_in(laptop, "zhang")
    assert laptop.get("/api/me").status_code == 200
    listed = laptop.get("/api/auth/sessions").json()
    assert [d["current"] for d in listed] == [True]


def test_logout_everywhere_with_a_bearer_token_ends_that_token_too(app, client):
    add_user("zhang")
    body = sign_in(client, "zhang")
    token = bearer(device(app), "zhang")
    assert client.post("/api/events/ticket", headers=csrf(body)).status_code == 200
    answer = client.post("/api/auth/logout-all", headers=token)  # no CSRF: a bearer call
    assert answer.status_code == 200 and answer.json() == {"sessions_ended": 1}
    assert client.get("/api/me", headers=token).status_code == 401
    assert client.get("/api/me").status_code == 401


def test_a_disabled_account_loses_its_sessions_for_good(app, client):
    add_user("zhang")
    sign_in(client, "zhang")
    with db.session_scope() as session:
        accounts.disable_user(session=session, username="zhang")
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/auth/session").status_code == 401
    with db.session_scope() as session:  # enabled again: the old session stays ended
        session.execute(select(ConsoleSession)).scalar_one()
        from casework.models import User

        session.execute(select(User).where(User.username == "zhang")).scalar_one().active = True
    assert client.get("/api/me").status_code == 401
    sign_in(client, "zhang")
    assert client.get("/api/me").status_code == 200


def test_an_officer_lists_their_own_devices(app, client):
    add_user("zhang")
    add_user("li")
    sign_in(client, "zhang")
    sign_in(device(app), "zhang")
    sign_in(device(app), "li")
    listed = client.get("/api/auth/sessions").json()
    assert sorted(d["current"] for d in listed) == [False, True]
    assert all(d["client_ip"] == "testclient" and len(d["handle"]) == 12 for d in listed)
    assert not any(
        sessions.hash_token(client.cookies[sessions.COOKIE]) == d["handle"] for d in listed
    )


# ------------------------------------------------------------------ the live stream


def test_a_stream_ticket_asked_for_with_the_cookie_ends_with_the_session(client):
    add_user("zhang", "commander")
    body = sign_in(client, "zhang")
    ticket = client.post("/api/events/ticket", headers=csrf(body)).json()["ticket"]
    policy = sessions.Policy.of(idle_minutes=120, max_hours=12)
    with db.session_scope() as session:
        grant = live.redeem(session=session, ticket=ticket)
        assert grant is not None and grant.console_session_id == stored_session().id
        assert live.grant_holds(session=session, grant=grant, policy=policy)
    assert client.post("/api/auth/logout", headers=csrf(body)).status_code == 204
    with db.session_scope() as session:
        assert not live.grant_holds(session=session, grant=grant, policy=policy)


def test_a_bearer_stream_ends_when_the_user_logs_out_everywhere(client):
    add_user("zhang", "commander")
    token = bearer(client, "zhang")
    ticket = client.post("/api/events/ticket", headers=token).json()["ticket"]
    policy = sessions.Policy.of(idle_minutes=120, max_hours=12)
    with db.session_scope() as session:
        grant = live.redeem(session=session, ticket=ticket)
        assert grant is not None and grant.console_session_id is None
        assert live.grant_holds(session=session, grant=grant, policy=policy)
    assert client.post("/api/auth/logout-all", headers=token).status_code == 200
    with db.session_scope() as session:
        assert not live.grant_holds(session=session, grant=grant, policy=policy)


def test_the_stream_over_http_with_the_cookie_delivers_and_stops_at_logout(app):
    """Over real HTTP (uvicorn), since the test client cannot stream."""
    add_user("wang", "commander")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    browser = httpx.Client(base_url=base, timeout=30)
    form = {"username": "wang", "password": PASSWORD}
    body = browser.post("/api/auth/session", data=form).json()
    ticket = browser.post("/api/events/ticket", headers=csrf(body)).json()["ticket"]

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

    received: list[str] = []
    closed_by_server = True
    give_up = time.time() + 60  # a guard against hanging, not a measurement
    try:
        threading.Timer(1.0, new_case).start()
        with httpx.stream("GET", f"{base}/api/events", params={"ticket": ticket}, timeout=30) as s:
            assert s.status_code == 200
            for line in s.iter_lines():
                received.append(line)
                if '"priority": "urgent"' in line:
                    # Signed out on this device: the stream ends by itself.
                    logout = browser.post("/api/auth/logout", headers=csrf(body))
                    assert logout.status_code == 204
                if time.time() > give_up:
                    closed_by_server = False
                    break
        assert "event: case" in received
        assert closed_by_server, "the stream went on after the logout"
        again = browser.post("/api/events/ticket", headers=csrf(body))
        assert again.status_code == 401
    finally:
        browser.close()
        server.should_exit = True
        thread.join(timeout=10)
