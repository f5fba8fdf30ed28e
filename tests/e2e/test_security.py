"""Secure by default, checked from outside against the real launcher (`make run`'s
`python -m jmt.launch`, JMT_ENV=development, demo data): Rasa and the action server are
closed to the network and to callers without their tokens, and an officer of another
community is refused every record of a fraud victim.

One launcher for the module, on free ports, with a temporary var/ (its generated tokens
are read from there, as an operator would) and a temporary SQLite database. Rasa loads
the trained model from bot/models (30-90 s on this machine).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from casework import db, demo
from casework.models import Case, Conversation, Ticket
from casework.settings import DEV_WECHAT_TOKEN
from jmt import paths
from tests.e2e.test_conversation import free_port
from tests.gateway.conftest import sign, text_xml

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 300  # model loading, the action server and the gateway, on 2 busy cores


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not any(paths.MODELS.glob("*.tar.gz")):
        pytest.fail(f"no trained model in {paths.MODELS}; run `make train` first")
    work = tmp_path_factory.mktemp("launch")
    ports = {"RASA_PORT": free_port(), "ACTIONS_PORT": free_port(), "GATEWAY_PORT": free_port()}
    env = {
        name: value
        for name, value in os.environ.items()
        # what an operator's shell would not have: the tests' own and other runs' settings
        if not name.startswith(("WECHAT_", "RASA_", "ACTION", "GATEWAY_", "JMT_"))
        and name not in ("DATABASE_URL", "SECRET_KEY", "DINGTALK_WEBHOOK_URL", "CONSOLE_URL")
    }
    env.update({name: str(port) for name, port in ports.items()})
    env.update(
        {
            "JMT_ENV": "development",
            "JMT_VAR_DIR": str(work / "var"),  # the launcher generates the tokens here
            "DATABASE_URL": f"sqlite:///{work / 'jmt.sqlite3'}",
            "RASA_TRACKER_DB": str(work / "rasa-tracker.sqlite3"),
            "RASA_TELEMETRY_ENABLED": "false",
            "PYTHONPATH": str(paths.REPO_ROOT),  # the children import this checkout's code
        }
    )
    log = work / "launch.log"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "jmt.launch"],
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its children in a group of their own, to clean up
    )
    gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        health: Any = None
        while health != {"status": "ok", "database": "ok", "rasa": "ok", "action_server": "ok"}:
            if launcher.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the launcher did not come up ({health}):\n{tail(log)}")
            time.sleep(2)
            try:
                health = request(f"{gateway}/healthz")[1]
            except OSError:
                continue
        var = work / "var"
        yield {
            "gateway": gateway,
            "rasa": f"http://127.0.0.1:{ports['RASA_PORT']}",
            "actions": f"http://127.0.0.1:{ports['ACTIONS_PORT']}",
            "ports": ports,
            "rasa_token": (var / "rasa-token").read_text().strip(),
            "actions_token": (var / "actions-token").read_text().strip(),
            "database": env["DATABASE_URL"],
            "log": log,
        }
    finally:
        launcher.send_signal(signal.SIGTERM)  # the launcher stops its children (Ctrl-C path)
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=10)
        db.get_engine.cache_clear()


def tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]


def request(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, JSON or text), HTTP errors included; connection errors raise OSError."""
    sent = urllib.request.Request(url, body, headers or {}, method=method)
    try:
        with urllib.request.urlopen(sent, timeout=60) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", errors="replace")


# ------------------------------------------------------------------ (a) closed to the network


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine other than 127.x (one we can bind, so it is ours)."""
    candidates: list[str] = []
    try:
        found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
        candidates += found.stdout.split()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        candidates += [str(info[4][0]) for info in infos]
    except OSError:
        pass
    for address in candidates:
        if ":" in address or address.startswith("127."):
            continue
        with socket.socket() as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                continue
        return address
    return None


def connects(address: str, port: int) -> bool:
    with socket.socket() as client:
        client.settimeout(3)
        try:
            client.connect((address, port))
        except OSError:  # refused (nothing listens there) or filtered
            return False
    return True


def test_rasa_and_the_action_server_are_unreachable_beyond_loopback(launched):
    address = non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try from")
    # Control: a server listening on every interface is reachable on that address, so a
    # refusal below means "not listening there", not "this address never answers".
    with socket.socket() as everywhere:
        everywhere.bind(("0.0.0.0", 0))
        everywhere.listen()
        assert connects(address, everywhere.getsockname()[1])
    ports = launched["ports"]
    assert not connects(address, ports["RASA_PORT"]), f"Rasa answers on {address}"
    assert not connects(address, ports["ACTIONS_PORT"]), f"the action server answers on {address}"
    assert not connects(address, ports["GATEWAY_PORT"]), f"the gateway answers on {address}"
    # ... while on loopback everything is up, as the gateway's health check sees it
    assert request(f"{launched['gateway']}/healthz") == (
        200,
        {"status": "ok", "database": "ok", "rasa": "ok", "action_server": "ok"},
    )


# ------------------------------------------------------------------ (b) Rasa's token


def test_rasa_api_refuses_calls_without_the_token(launched):
    rasa, token = launched["rasa"], launched["rasa_token"]
    tracker = f"{rasa}/conversations/someone/tracker"
    assert request(tracker)[0] == 401
    assert request(f"{tracker}?token=wrong")[0] == 401
    assert request(f"{rasa}/status")[0] == 401
    model = json.dumps({"model_file": "/tmp/nothing.tar.gz"}).encode()
    assert request(f"{rasa}/model", method="PUT", body=model)[0] == 401
    events = json.dumps([{"event": "pause"}]).encode()
    assert request(f"{tracker}/events", method="POST", body=events)[0] == 401
    status, body = request(f"{tracker}?token={token}")
    assert status == 200 and body["sender_id"] == "someone"
    assert request(f"{rasa}/status?token={token}")[0] == 200


def test_rasa_sends_no_cors_headers(launched):
    """Without `--cors "*"` a page on another origin cannot call Rasa from a browser."""
    sent = urllib.request.Request(
        f"{launched['rasa']}/version", headers={"Origin": "http://evil.example"}
    )
    with urllib.request.urlopen(sent, timeout=30) as answer:
        assert answer.headers.get("Access-Control-Allow-Origin") is None


# ------------------------------------------------------------------ (c) the action server's token


def test_action_server_refuses_calls_without_the_token(launched):
    actions, token = launched["actions"], launched["actions_token"]
    call = json.dumps({"next_action": "action_handoff", "sender_id": "x", "tracker": {}}).encode()
    json_body = {"Content-Type": "application/json"}
    assert request(f"{actions}/webhook", method="POST", body=call, headers=json_body) == (
        401,
        {"error": "unauthorized"},
    )
    assert request(f"{actions}/webhook?token=wrong", method="POST", body=call)[0] == 401
    assert request(f"{actions}/actions")[0] == 401
    assert request(f"{actions}/health") == (200, {"status": "ok"})
    status, listed = request(f"{actions}/actions?token={token}")
    assert status == 200 and {"name": "action_handoff"} in listed


def test_no_token_in_the_logs(launched):
    """Rasa takes its token in the URL; nothing the launcher and its children print
    (our logs, Rasa's, the action server's, uvicorn's access log) may contain a token."""
    text = launched["log"].read_text(encoding="utf-8", errors="replace")
    assert "Rasa" in text  # the log is really the launcher's output
    assert launched["rasa_token"] not in text
    assert launched["actions_token"] not in text


def test_development_mode_is_announced_loudly(launched):
    text = launched["log"].read_text(encoding="utf-8", errors="replace")
    assert "DEVELOPMENT MODE (JMT_ENV=development)" in text
    assert "never expose this to a network" in text


# ------------------------------------------------------------------ (d) scoping, from outside


def wechat(launched: dict, openid: str, text: str) -> int:
    """POST a text message to /wechat signed as WeChat does (plain mode, dev token)."""
    stamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    query = f"signature={sign(stamp, nonce, DEV_WECHAT_TOKEN)}&timestamp={stamp}&nonce={nonce}"
    status, _ = request(
        f"{launched['gateway']}/wechat?{query}",
        method="POST",
        body=text_xml(openid, text).encode("utf-8"),
        headers={"Content-Type": "text/xml"},
    )
    return status


def login(launched: dict, username: str) -> dict[str, str]:
    status, body = request(
        f"{launched['gateway']}/api/auth/token",
        method="POST",
        body=f"username={username}&password={demo.DEMO_PASSWORD}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    return {"Authorization": f"Bearer {body['access_token']}"}


def wait_for_records(database: str, openid: str, timeout: float = 120) -> tuple[Any, ...]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session_scope(database) as session:
            conversation = session.execute(
                select(Conversation).where(Conversation.openid == openid)
            ).scalar_one_or_none()
            fraud = session.execute(
                select(Case).where(Case.sender_id == openid, Case.desk == "反诈")
            ).scalar_one_or_none()
            tickets = session.execute(select(Ticket).where(Ticket.sender_id == openid)).scalars()
            ticket_rows = [(t.id, t.community) for t in tickets]
            if conversation and fraud and ticket_rows:
                return conversation.id, fraud.id, fraud.community, ticket_rows
        time.sleep(1)
    raise AssertionError("the victim's conversation, fraud case and ticket were not recorded")


def test_an_officer_of_another_community_is_refused_every_record_of_a_fraud_victim(launched):
    gateway = launched["gateway"]
    victim = f"o-victim-{uuid.uuid4().hex[:8]}"
    # A noise complaint (a ticket for 万景社区) and then the fraud report (an urgent case for
    # the 反诈 desk), all through /wechat as WeChat sends them.
    for text in (
        "楼上装修太吵了",
        "骆驼街道万景社区3幢",
        "电钻打墙",
        "是的还在吵",
        "早上七点就开始了",
        "我刚才被刷单骗了3万，扫码付的",
        "对方手机13912345678",
    ):
        assert wechat(launched, victim, text) == 200
        time.sleep(1)  # one message at a time, as a person types
    conversation_id, case_id, case_community, tickets = wait_for_records(
        launched["database"], victim
    )
    ticket_ids = {ticket_id for ticket_id, _ in tickets}
    theirs = {case_community, *(community for _, community in tickets)}
    outsider = next(
        spec["username"]
        for spec in demo.demo_accounts()
        if spec["role"] == "officer" and spec.get("community") not in (None, *theirs)
    )

    # Control: the commander sees all of it, so "absent" below means "refused".
    boss = login(launched, "commander")
    assert case_id in [c["id"] for c in request(f"{gateway}/api/cases", headers=boss)[1]]
    assert ticket_ids <= {t["id"] for t in request(f"{gateway}/api/tickets", headers=boss)[1]}
    status, found = request(f"{gateway}/api/conversations?openid={victim}", headers=boss)
    assert (status, [c["id"] for c in found]) == (200, [conversation_id])

    other = login(launched, outsider)
    assert request(f"{gateway}/api/conversations?openid={victim}", headers=other) == (200, [])
    assert request(f"{gateway}/api/conversations/{conversation_id}", headers=other)[0] == 404
    assert request(f"{gateway}/api/cases/{case_id}", headers=other)[0] == 404
    status, queue = request(f"{gateway}/api/cases", headers=other)
    assert status == 200 and case_id not in [c["id"] for c in queue]
    status, listed = request(f"{gateway}/api/tickets", headers=other)
    assert status == 200 and not ticket_ids & {t["id"] for t in listed}

    # The 反诈 desk does see the fraud case (scoping by desk).
    desk = login(launched, demo.DESK_ACCOUNTS["反诈"])
    assert case_id in [c["id"] for c in request(f"{gateway}/api/cases", headers=desk)[1]]
    assert request(f"{gateway}/api/cases/{case_id}", headers=desk)[0] == 200
