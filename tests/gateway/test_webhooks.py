"""The governance status callback as the platform (or an attacker) calls it: signed with
GOVERNANCE_CALLBACK_SECRET over timestamp, nonce, method, path and body; replays, other
tickets, other secrets refused with 401; malformed bodies 4xx; the state machine's
answers (200, 200 unchanged, 409, 422) — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import requests
from sqlalchemy import func, select

from casework import db
from casework.cases import open_ticket
from casework.models import OutboxItem, SeenNonce, Ticket
from gateway.app import create_app
from gateway.dispatcher import Dispatcher
from gateway.simulator import partners
from integrations.governance import client_from_settings
from integrations.signed_webhooks import NONCE_HEADER, TIMESTAMP_HEADER, signed_headers
from tests.gateway.conftest import gateway_settings
from tests.live_server import LiveServer


def make_ticket(openid: str, status: str = "sent") -> int:
    with db.session_scope() as session:
        ticket = open_ticket(session=session, sender_id=openid, kind="noise", summary="楼上装修")
        ticket.status = status
        return int(ticket.id)


def secret_of(wechat) -> str:
    return wechat.client.app.state.settings.governance_callback_secret


def post(wechat, path: str, body: bytes, **signing):
    signing = {"secret": secret_of(wechat), "method": "POST", "path": path, **signing}
    headers = signed_headers(body=body, **signing)
    return wechat.client.post(path, content=body, headers=headers)


def callback(wechat, ticket_id: int, status: str, note: str = "", **signing):
    body = json.dumps({"status": status, "note": note}, ensure_ascii=False).encode()
    return post(wechat, f"/api/tickets/{ticket_id}/status", body, **signing)


def told(openid: str) -> list[str]:
    with db.session_scope() as session:
        return list(
            session.execute(select(OutboxItem.text).where(OutboxItem.openid == openid)).scalars()
        )


def status_of(ticket_id: int) -> str:
    with db.session_scope() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        return str(ticket.status)


def test_a_signed_callback_moves_the_ticket_and_tells_the_resident_once(wechat):
    ticket_id = make_ticket("o-w1")
    first = callback(wechat, ticket_id, "accepted")
    assert first.status_code == 200, first.text
    assert first.json() == {"ticket_id": ticket_id, "status": "accepted", "changed": True}
    again = callback(wechat, ticket_id, "accepted")  # the platform retried, newly signed
    assert again.status_code == 200
    assert again.json() == {"ticket_id": ticket_id, "status": "accepted", "changed": False}
    assert len(told("o-w1")) == 1


def test_going_backwards_is_a_conflict(wechat):
    ticket_id = make_ticket("o-w2")
    assert callback(wechat, ticket_id, "resolved", "已办结").status_code == 200
    for status in ("accepted", "in_progress", "rejected"):
        answer = callback(wechat, ticket_id, status)
        assert answer.status_code == 409, (status, answer.text)
        assert "cannot become" in answer.json()["detail"]
    assert status_of(ticket_id) == "resolved"
    assert len(told("o-w2")) == 1


def test_unknown_status_and_unknown_ticket(wechat):
    ticket_id = make_ticket("o-w3")
    assert callback(wechat, ticket_id, "done").status_code == 422
    assert callback(wechat, ticket_id, "pending").status_code == 422  # ours, not the platform's
    assert callback(wechat, 999999, "accepted").status_code == 404
    assert status_of(ticket_id) == "sent"


def test_the_signature_covers_the_path_method_secret_and_time(wechat):
    target, other = make_ticket("o-w4"), make_ticket("o-w5")
    body = json.dumps({"status": "resolved"}).encode()
    path = f"/api/tickets/{target}/status"
    # A callback signed for one ticket, sent to another.
    headers = signed_headers(secret=secret_of(wechat), method="POST", path=path, body=body)
    moved = wechat.client.post(f"/api/tickets/{other}/status", content=body, headers=headers)
    assert moved.status_code == 401
    settings = wechat.client.app.state.settings
    assert (
        callback(wechat, target, "resolved", secret=settings.governance_secret).status_code == 401
    )
    assert callback(wechat, target, "resolved", method="PUT").status_code == 401
    assert callback(wechat, target, "resolved", now=1e9).status_code == 401  # stale
    unsigned = wechat.client.post(path, json={"status": "resolved"})
    assert unsigned.status_code == 401
    assert (status_of(target), status_of(other)) == ("sent", "sent")
    assert told("o-w4") == told("o-w5") == []


def test_a_captured_callback_cannot_be_replayed(wechat):
    ticket_id = make_ticket("o-w6")
    body = json.dumps({"status": "accepted"}).encode()
    path = f"/api/tickets/{ticket_id}/status"
    headers = signed_headers(secret=secret_of(wechat), method="POST", path=path, body=body)
    assert wechat.client.post(path, content=body, headers=headers).status_code == 200
    assert wechat.client.post(path, content=body, headers=headers).status_code == 401
    # The same nonce with another body (and a fresh signature) is refused too.
    other = json.dumps({"status": "resolved"}).encode()
    reused = signed_headers(
        secret=secret_of(wechat), method="POST", path=path, body=other, nonce=headers[NONCE_HEADER]
    )
    assert wechat.client.post(path, content=other, headers=reused).status_code == 401
    assert status_of(ticket_id) == "accepted"


def test_a_failed_request_still_spends_its_nonce(wechat):
    # A callback for a ticket that does not exist yet must not work once the id exists.
    body = json.dumps({"status": "accepted"}).encode()
    path = "/api/tickets/424242/status"
    headers = signed_headers(secret=secret_of(wechat), method="POST", path=path, body=body)
    assert wechat.client.post(path, content=body, headers=headers).status_code == 404
    assert wechat.client.post(path, content=body, headers=headers).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b"[[null, null]]",  # pydantic's parse_raw made this keyword arguments: a TypeError
        b'[["status", "accepted"]]',
        b'"accepted"',
        b"null",
        b'{"note": "no status"}',
        b'{"status": {"nested": "accepted"}}',
        b'{"status": ["accepted"]}',
        b'{"status": "accepted", "note": {"a": 1}}',
        json.dumps({"status": "accepted", "note": "长" * 2001}).encode(),
        json.dumps({"status": "a" * 33}).encode(),
        b'{"status": "accepted"',
    ],
)
def test_signed_but_malformed_bodies_are_4xx(wechat, body):
    ticket_id = make_ticket("o-w7")
    answer = post(wechat, f"/api/tickets/{ticket_id}/status", body)
    assert answer.status_code == 422, answer.text
    assert status_of(ticket_id) == "sent"


@pytest.mark.parametrize("ticket_id", ["99999999999999999999", "0", "-1", "1.5", "七"])
def test_impossible_ticket_ids_are_4xx(wechat, ticket_id):
    answer = post(wechat, f"/api/tickets/{ticket_id}/status", b'{"status": "accepted"}')
    assert answer.status_code == 422, answer.text


def test_an_oversized_body_is_refused_before_anything(wechat):
    ticket_id = make_ticket("o-w8")
    body = json.dumps({"status": "accepted", "note": "x" * 70_000}).encode()
    assert post(wechat, f"/api/tickets/{ticket_id}/status", body).status_code == 413
    with db.session_scope() as session:
        # Nothing remembered either: the nonce memory only holds verified requests.
        count = session.execute(select(func.count()).select_from(SeenNonce)).scalar_one()
    assert count == 0


def test_headers_are_checked_case_insensitively_and_a_stale_clock_is_named_nowhere(wechat):
    ticket_id = make_ticket("o-w9")
    body = json.dumps({"status": "accepted"}).encode()
    path = f"/api/tickets/{ticket_id}/status"
    headers = signed_headers(secret=secret_of(wechat), method="POST", path=path, body=body)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert wechat.client.post(path, content=body, headers=lowered).status_code == 200
    stale = signed_headers(secret=secret_of(wechat), method="POST", path=path, body=body, now=1)
    answer = wechat.client.post(path, content=body, headers=stale)
    assert answer.status_code == 401 and answer.json() == {"detail": "bad signature"}
    assert stale[TIMESTAMP_HEADER] == "1"


def test_development_round_trip_through_the_simulated_platform(sqlite_url, monkeypatch):
    """Development end to end over real HTTP: the dispatcher sends a ticket signed with
    GOVERNANCE_SECRET to the simulator's platform, which verifies it and calls back signed
    with GOVERNANCE_CALLBACK_SECRET; the app moves the ticket along the state machine."""
    settings = gateway_settings(sqlite_url, monkeypatch)
    app = create_app(settings, start_outbox=False, probe_actions=False)
    app.include_router(partners.router)  # the test harness turns the simulator off
    with db.session_scope() as session:
        ticket = open_ticket(
            session=session,
            sender_id="o-dev",
            kind="noise",
            summary="楼上装修，我电话13912345678",
            location="骆驼街道万景社区3幢",
        )
        ticket_id = int(ticket.id)
    with LiveServer(app) as live:
        app.state.settings = dataclasses.replace(
            settings, governance_webhook_url=f"{live.url}/simulator/governance/tickets"
        )
        assert settings.governance_secret != settings.governance_callback_secret
        dispatcher = Dispatcher(
            database_url=sqlite_url,
            notifier=None,
            governance=client_from_settings(app.state.settings),
            console_url=live.url,
        )
        asyncio.run(dispatcher.run_once())
        assert status_of(ticket_id) == "sent"
        [received] = app.state.governance_standin.tickets
        assert received["payload"]["ticket_id"] == ticket_id
        assert "13912345678" not in json.dumps(received["payload"], ensure_ascii=False)

        def platform_says(status: str) -> dict:
            answer = requests.post(
                f"{live.url}/simulator/api/governance/{ticket_id}/status",
                json={"status": status, "note": "已协调"},
                timeout=10,
            )
            assert answer.status_code == 200
            return answer.json()

        assert platform_says("accepted") == {
            "status": 200,
            "body": {"ticket_id": ticket_id, "status": "accepted", "changed": True},
        }
        assert platform_says("resolved")["body"]["status"] == "resolved"
        assert platform_says("in_progress")["status"] == 409
    assert status_of(ticket_id) == "resolved"
    assert len(told("o-dev")) == 2
