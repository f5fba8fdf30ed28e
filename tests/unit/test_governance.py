"""The governance platform: `GovernanceClient` against the simulator's platform stand-in
served over real HTTP (uvicorn on a free local port), and the stand-in's status callback
to the app (received here by a test-only route). Both directions use the signed-webhook
scheme (tests/unit/test_signed_webhooks.py), each with its own secret."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import requests
from fastapi import FastAPI, Request

from gateway.simulator import partners
from integrations import governance
from integrations.governance import GovernanceClient, GovernanceError, client_from_settings
from integrations.signed_webhooks import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRefused,
    check,
    sign,
    signed_headers,
)
from tests.live_server import LiveServer

SECRET = "gov-test-secret"
CALLBACK_SECRET = "gov-test-callback-secret"
INTAKE_PATH = "/simulator/governance/tickets"
TICKET = {
    "id": 7,
    "kind": "noise",
    "summary": "楼上每天深夜装修噪音",
    "street": "骆驼街道",
    "community": "万景社区",
    "location": "浙江省宁波市镇海区骆驼街道万景社区3幢",
}


def _settings() -> SimpleNamespace:
    return SimpleNamespace(
        dingtalk_secret="unused",
        governance_secret=SECRET,
        governance_callback_secret=CALLBACK_SECRET,
    )


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """The partners router, plus a test-only stand-in for the app's callback route."""
    app = FastAPI()
    app.include_router(partners.router)
    app.state.settings = _settings()
    app.state.callbacks = []

    @app.post("/api/tickets/{ticket_id}/status")
    async def status(ticket_id: int, request: Request) -> dict:
        body = await request.body()
        try:
            check(
                headers=request.headers,
                method=request.method,
                path=request.url.path,
                body=body,
                secret=request.app.state.settings.governance_callback_secret,
            )
            ok = True
        except SignatureRefused:
            ok = False
        request.app.state.callbacks.append((ticket_id, ok, json.loads(body)))
        return {"ticket_id": ticket_id, "verified": ok}

    return app


@pytest.fixture(scope="module")
def live(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def standin(app, live) -> partners.GovernanceStandIn:
    """A fresh stand-in (and callback log) for each test."""
    app.state.settings = _settings()
    app.state.callbacks = []
    app.state.governance_standin = partners.GovernanceStandIn(SECRET)
    return app.state.governance_standin


def intake(live: LiveServer) -> str:
    return f"{live.url}/simulator/governance/tickets"


# ---------------------------------------------------------------------- the client over HTTP


def test_ticket_reaches_the_platform_signed_as_utf8_json(standin, live):
    client = GovernanceClient(intake(live), SECRET)
    sent: list[requests.PreparedRequest] = []
    client.session.hooks["response"].append(lambda response, **_: sent.append(response.request))
    answer = client.send_ticket(TICKET)
    assert answer == {"ok": True, "platform_id": "GOV-1"}
    [ticket] = standin.tickets
    assert ticket["payload"] == TICKET
    assert (ticket["platform_id"], ticket["status"], ticket["times_received"]) == (
        "GOV-1",
        "received",
        1,
    )
    body = sent[0].body
    assert isinstance(body, bytes)
    assert "楼上每天深夜装修噪音" in body.decode("utf-8") and b"\\u" not in body
    assert sent[0].headers["Content-Type"] == "application/json"
    timestamp = str(sent[0].headers[TIMESTAMP_HEADER])
    nonce = str(sent[0].headers[NONCE_HEADER])
    assert abs(int(timestamp) - time.time()) < 60
    expected = sign(
        secret=SECRET, method="POST", path=INTAKE_PATH, timestamp=timestamp, nonce=nonce, body=body
    )
    assert sent[0].headers[SIGNATURE_HEADER] == expected
    listed = requests.get(f"{live.url}/simulator/api/governance", timeout=5).json()
    assert [(t["id"], t["platform_id"], t["payload"]["summary"]) for t in listed] == [
        (1, "GOV-1", "楼上每天深夜装修噪音")
    ]


def test_a_ticket_sent_again_is_the_same_platform_ticket(standin, live):
    client = GovernanceClient(intake(live), SECRET)
    first = client.send_ticket(TICKET)
    again = client.send_ticket(TICKET)
    other = client.send_ticket({**TICKET, "id": 8})
    assert (first["platform_id"], again["platform_id"], other["platform_id"]) == (
        "GOV-1",
        "GOV-1",
        "GOV-2",
    )
    assert [t["times_received"] for t in standin.tickets] == [2, 1]


def test_server_errors_are_transient_and_a_later_send_succeeds(standin, live):
    standin.fail_next(http_status=503)
    client = GovernanceClient(intake(live), SECRET)
    with pytest.raises(GovernanceError) as caught:
        client.send_ticket(TICKET)
    assert (caught.value.permanent, caught.value.status_code) == (False, 503)
    assert str(caught.value) == "HTTP 503: Service Unavailable"
    assert standin.tickets == []
    assert client.send_ticket(TICKET) == {"ok": True, "platform_id": "GOV-1"}
    assert standin.attempts == 2


@pytest.mark.parametrize("status, permanent", [(400, True), (404, True), (429, False)])
def test_client_errors_are_permanent_except_throttling(standin, live, status, permanent):
    standin.fail_next(http_status=status)
    with pytest.raises(GovernanceError) as caught:
        GovernanceClient(intake(live), SECRET).send_ticket(TICKET)
    assert (caught.value.permanent, caught.value.status_code) == (permanent, status)
    assert standin.tickets == []


def test_a_wrong_secret_is_refused_permanently(standin, live):
    with pytest.raises(GovernanceError) as caught:
        GovernanceClient(intake(live), "not-the-secret").send_ticket(TICKET)
    assert (caught.value.permanent, caught.value.status_code) == (True, 403)
    assert "bad or stale signature" in str(caught.value)
    assert standin.tickets == []


def test_unsigned_stale_replayed_and_misdirected_requests_are_refused_by_the_standin(standin, live):
    body = json.dumps(TICKET).encode()

    def signed(**kwargs) -> dict[str, str]:
        return signed_headers(
            **{"secret": SECRET, "method": "POST", "path": INTAKE_PATH, "body": body, **kwargs}
        )

    unsigned = requests.post(intake(live), data=body, timeout=5)
    stale = requests.post(intake(live), data=body, headers=signed(now=1e9), timeout=5)
    elsewhere = requests.post(intake(live), data=body, headers=signed(path="/other"), timeout=5)
    old_scheme = {k: v for k, v in signed().items() if k != NONCE_HEADER}
    no_nonce = requests.post(intake(live), data=body, headers=old_scheme, timeout=5)
    callback_secret = requests.post(
        intake(live), data=body, headers=signed(secret=CALLBACK_SECRET), timeout=5
    )
    assert [r.status_code for r in (unsigned, stale, elsewhere, no_nonce, callback_secret)] == [
        403
    ] * 5
    assert standin.tickets == []
    headers = signed()
    first = requests.post(intake(live), data=body, headers=headers, timeout=5)
    replayed = requests.post(intake(live), data=body, headers=headers, timeout=5)
    assert (first.status_code, replayed.status_code) == (200, 403)
    assert [t["times_received"] for t in standin.tickets] == [1]


def test_timeouts_are_transient(standin, live):
    standin.fail_next(delay=1.0)
    client = GovernanceClient(intake(live), SECRET, timeout=0.3)
    with pytest.raises(GovernanceError) as caught:
        client.send_ticket(TICKET)
    assert caught.value.permanent is False
    assert str(caught.value) == "network: ReadTimeout"
    deadline = time.monotonic() + 5
    while not standin.tickets:  # the platform still takes it, late
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.send_ticket(TICKET) == {"ok": True, "platform_id": "GOV-1"}


def test_refused_connections_are_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(GovernanceError) as caught:
            GovernanceClient(f"http://127.0.0.1:{port}/tickets", SECRET).send_ticket(TICKET)
    assert (caught.value.permanent, str(caught.value)) == (False, "network: ConnectionError")


def test_client_from_settings():
    url = "https://gov.example/api/tickets"
    assert client_from_settings(SimpleNamespace(governance_webhook_url=None)) is None
    missing_secret = SimpleNamespace(governance_webhook_url=url, governance_secret=None)
    assert client_from_settings(missing_secret) is None
    client = client_from_settings(
        SimpleNamespace(governance_webhook_url=url, governance_secret="s")
    )
    assert isinstance(client, governance.GovernanceClient)
    assert (client.webhook_url, client.secret, client.timeout) == (url, "s", 5.0)


# ---------------------------------------------------------------------- the callback


def test_the_platform_calls_back_with_a_valid_signature(app, standin, live):
    GovernanceClient(intake(live), SECRET).send_ticket(TICKET)
    answer = requests.post(
        f"{live.url}/simulator/api/governance/7/status",
        json={"status": "resolved", "note": "已协调物业，装修时间已调整"},
        timeout=5,
    )
    assert answer.status_code == 200
    assert answer.json() == {"status": 200, "body": {"ticket_id": 7, "verified": True}}
    assert app.state.callbacks == [
        (7, True, {"status": "resolved", "note": "已协调物业，装修时间已调整"})
    ]
    [ticket] = standin.tickets
    assert ticket["status"] == "resolved"
    assert ticket["callbacks"] == [
        {"status": "resolved", "note": "已协调物业，装修时间已调整", "http_status": 200}
    ]


def test_the_callback_reports_the_apps_answer_as_is(standin, live):
    answer = requests.post(
        f"{live.url}/simulator/api/governance/not-a-number/status",
        json={"status": "resolved"},
        timeout=5,
    )
    assert answer.status_code == 422  # the simulator's own validation
    answer = requests.post(
        f"{live.url}/simulator/api/governance/99/status", json={"status": "accepted"}, timeout=5
    )
    assert answer.json() == {"status": 200, "body": {"ticket_id": 99, "verified": True}}
    assert standin.tickets == []  # unknown to the platform: nothing to update


def test_the_callback_needs_the_callback_secret(app, standin, live):
    app.state.settings = SimpleNamespace(
        dingtalk_secret=None, governance_secret=SECRET, governance_callback_secret=None
    )
    answer = requests.post(
        f"{live.url}/simulator/api/governance/7/status", json={"status": "accepted"}, timeout=5
    )
    assert answer.status_code == 409
    assert app.state.callbacks == []


def test_the_callback_to_an_app_without_the_route_reports_404():
    from fastapi.testclient import TestClient

    bare = FastAPI()
    bare.include_router(partners.router)
    bare.state.settings = _settings()
    with TestClient(bare) as client:
        answer = client.post("/simulator/api/governance/7/status", json={"status": "accepted"})
    assert answer.json() == {"status": 404, "body": {"detail": "Not Found"}}
