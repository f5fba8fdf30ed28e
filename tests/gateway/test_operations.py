"""Operations (issue 10): request ids in logs, Rasa's metadata and the response header;
/healthz (liveness) and /readyz (readiness); Prometheus /metrics and its token.

The gateway runs for real on SQLite and PostgreSQL with the stand-in Rasa of conftest.py;
the action server is a stand-in too (a local HTTP server answering /health, labelled as
such below), because what is tested is the gateway's view of it.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from casework import db, logconfig
from casework.cases import open_case, open_ticket
from casework.conversations import conversation_for
from casework.outbox import enqueue
from casework.settings import Settings
from gateway.app import create_app
from gateway.routes import health
from jmt import paths
from tests.gateway.conftest import gateway_settings, text_xml

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>[\w.]+) "
    r"\[(?P<request_id>[^\]]+)\] (?P<message>.*)$"
)


# ------------------------------------------------------------------ a stand-in action server


class StandInActionServer:
    """SIMULATED action server: answers GET /health with `status` (after `delay` s)."""

    def __init__(self) -> None:
        self.status, self.delay = 200, 0.0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 — http.server's name
                time.sleep(owner.delay)
                body = b'{"status": "ok"}'
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def actions() -> Iterator[StandInActionServer]:
    server = StandInActionServer()
    yield server
    server.stop()


def _gateway(database_url, monkeypatch, rasa, **env: str) -> TestClient:
    gateway_settings(database_url, monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app(Settings.from_env(), start_outbox=False, rasa=rasa, probe_actions=False)
    return TestClient(app)


@pytest.fixture
def ready(database_url, monkeypatch, rasa, actions) -> Iterator[TestClient]:
    """The gateway with every dependency up: its database, the stand-in Rasa, the
    stand-in action server."""
    with _gateway(database_url, monkeypatch, rasa, ACTION_SERVER_URL=actions.url) as client:
        yield client


# ------------------------------------------------------------------ logs and request ids


def _lines(text: str) -> list[re.Match]:
    return [match for line in text.splitlines() if (match := LINE.match(line))]


def test_a_request_logs_time_level_logger_and_its_id_with_the_phone_masked(wechat, rasa, capsys):
    wechat.client.headers["X-Request-ID"] = "wx-req-0001"
    answer = wechat.post(text_xml("o-log-1", "我的电话13812345678，楼上太吵"))
    assert wechat.reply_text(answer) == "收到：我的电话13812345678，楼上太吵"
    err = capsys.readouterr().err
    assert "13812345678" not in err  # masked on every line, whoever logged it
    inbound = [m for m in _lines(err) if m["message"].startswith("in  o-log-1")]
    assert len(inbound) == 1, err
    line = inbound[0]
    assert (line["level"], line["logger"], line["request_id"]) == (
        "INFO",
        "gateway.service",
        "wx-req-0001",
    )
    assert "138****5678" in line["message"]


def test_the_handler_scrubs_what_callers_forgot_and_to_thread_keeps_the_id(
    sqlite_url, monkeypatch, capsys
):
    logconfig.configure("INFO")
    logger = logging.getLogger("tests.operations")
    token = logconfig.REQUEST_ID.set("req-thread-42")
    try:
        asyncio.run(
            asyncio.to_thread(
                logger.warning,
                "raw %s, id %s, card %s, %s",
                "13912345678",
                "110101199003071234",
                "6222 0212 3456 7890",
                "https://api.example/cgi?access_token=SECRET123&x=1",
            )
        )
    finally:
        logconfig.REQUEST_ID.reset(token)
    logger.warning("outside any request")
    lines = _lines(capsys.readouterr().err)
    mine = [m for m in lines if m["logger"] == "tests.operations"]
    assert [m["request_id"] for m in mine] == ["req-thread-42", "-"]
    message = mine[0]["message"]
    for secret in ("13912345678", "110101199003071234", "6222 0212 3456 7890", "SECRET123"):
        assert secret not in message
    assert "139****5678" in message and "access_token=***" in message


def test_the_request_id_reaches_rasa_and_the_response_header(wechat, rasa):
    wechat.client.headers["X-Request-ID"] = "wx-req-0002"
    answer = wechat.post(text_xml("o-rid-1", "身份证丢了"))
    assert answer.headers["X-Request-ID"] == "wx-req-0002"
    assert rasa.request_ids[-1] == "wx-req-0002"  # in the message's metadata
    assert rasa.calls[-1][2]["message_type"] == "text"  # the gateway's own metadata stays


@pytest.mark.parametrize("header", [None, "short", "has space in it", "x" * 65, "../../etc/passwd"])
def test_a_missing_or_malformed_request_id_is_replaced_by_a_new_one(wechat, rasa, header):
    if header is not None:
        wechat.client.headers["X-Request-ID"] = header
    answer = wechat.post(text_xml("o-rid-2", "你好"))
    given = answer.headers["X-Request-ID"]
    assert given != header and re.fullmatch(r"[0-9a-f]{16}", given)
    assert rasa.request_ids[-1] == given


def test_every_response_carries_a_request_id(wechat):
    ids = {wechat.client.get(path).headers["X-Request-ID"] for path in ("/healthz", "/nope")}
    assert len(ids) == 2  # one per request


# ------------------------------------------------------------------ health and readiness


def test_readyz_is_200_when_everything_is_up(ready):
    for path in ("/healthz", "/readyz"):
        answer = ready.get(path)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "status": "ok",
            "database": "ok",
            "rasa": "ok",
            "action_server": "ok",
        }


def test_readyz_is_503_when_rasa_is_down_and_healthz_stays_200(ready, rasa):
    rasa.down = True
    readiness, liveness = ready.get("/readyz"), ready.get("/healthz")
    assert (readiness.status_code, liveness.status_code) == (503, 200)
    assert readiness.json() == liveness.json()
    assert readiness.json()["rasa"] == "down" and readiness.json()["status"] == "degraded"


def test_readyz_is_503_when_the_action_server_is_down_or_failing(ready, actions):
    actions.status = 500
    answer = ready.get("/readyz")
    assert (answer.status_code, answer.json()["action_server"]) == (503, "down: HTTP 500")
    actions.stop()
    answer = ready.get("/readyz")
    assert answer.status_code == 503 and answer.json()["action_server"].startswith("down: ")
    assert ready.get("/healthz").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable(ready):
    settings = ready.app.state.settings
    # Nothing listens on port 1: the probe's connection is refused, as with a dead server.
    ready.app.state.settings = replace(
        settings, database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    )
    try:
        answer = ready.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["database"].startswith("down: ")
        assert ready.get("/healthz").status_code == 200
    finally:
        ready.app.state.settings = settings


def test_a_hanging_dependency_is_reported_not_waited_for(ready, actions, monkeypatch):
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.3)
    actions.delay = 1.5  # longer than the bound: the probe answers without it
    answer = ready.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["action_server"].startswith("down: ")
    assert answer.json()["database"] == answer.json()["rasa"] == "ok"


def test_a_stuck_database_check_is_not_started_again_by_every_probe(ready, monkeypatch):
    """A SIMULATED database check that hangs (as on a black-holed host): probes keep
    answering 503 within the bound, and only one thread is ever stuck on it."""
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.2)
    release, started = threading.Event(), []

    def stuck(url: str | None) -> str:
        started.append(url)
        release.wait(30)
        return "ok"

    monkeypatch.setattr(health.health, "database_state", stuck)
    try:
        for _ in range(3):
            answer = ready.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["database"] == "down: no answer within 0.2 s"
        assert len(started) == 1
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while ready.get("/readyz").status_code != 200:  # the stuck check finished
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ready.get("/readyz").status_code == 200
    assert len(started) >= 2  # once it is done, probes check afresh


# ------------------------------------------------------------------ /metrics


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape(client: TestClient, **headers: str) -> dict:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return _samples(answer.text)


def test_metrics_count_requests_rasa_calls_and_turns_by_route_template(wechat, rasa):
    before = _scrape(wechat.client)
    wechat.post(text_xml("o-metrics-1", "身份证丢了"))
    for case_id in (1, 2, 987654):
        wechat.client.get(f"/api/cases/{case_id}")  # 401: no token, but routed
    wechat.client.get("/o-abcdefg/no-such-page")
    rasa.down = True
    wechat.post(text_xml("o-metrics-2", "还在吗"))  # the fallback answer, an officer case
    deadline = time.monotonic() + 10  # the parse of the first turn is fetched in background
    while True:
        after = _scrape(wechat.client)
        if (
            _value(after, "jmt_nlu_parses_total", fallback="no")
            > _value(before, "jmt_nlu_parses_total", fallback="no")
            or time.monotonic() > deadline
        ):
            break
        time.sleep(0.05)

    def grew(name: str, by: float = 1.0, **labels: str) -> bool:
        return _value(after, name, **labels) - _value(before, name, **labels) == by

    assert grew("jmt_http_requests_total", 2, method="POST", route="/wechat", status="200")
    assert grew(
        "jmt_http_requests_total", 3, method="GET", route="/api/cases/{case_id}", status="401"
    )
    assert grew("jmt_http_requests_total", method="GET", route="unmatched", status="404")
    assert grew("jmt_http_request_duration_seconds_count", 2, method="POST", route="/wechat")
    assert grew("jmt_rasa_requests_total", outcome="ok")
    assert grew("jmt_rasa_requests_total", outcome="error")
    assert grew("jmt_rasa_request_duration_seconds_count", 2)
    assert grew("jmt_bot_turns_total", result="answered")
    assert grew("jmt_bot_turns_total", result="unavailable")
    assert grew("jmt_nlu_parses_total", fallback="no")
    # bounded labels: route templates only, never a raw path, id or openid. (The registry
    # is the process's: series other tests' apps created, e.g. the simulator's routes, are
    # there too, so only the series this test's requests touched are compared.)
    templates = {route.path for route in wechat.client.app.routes} | {"unmatched"}
    routes = {
        dict(labels).get("route")
        for (name, labels), value in after.items()
        if "jmt_http" in name and value != before.get((name, labels))
    }
    assert "/api/cases/{case_id}" in routes
    assert routes <= templates, routes - templates
    assert not any("987654" in str(key) or "o-abcdefg" in str(key) for key in after)


def test_metrics_report_the_backlog_from_the_database(wechat):
    with db.session_scope() as session:
        conversation = conversation_for(session=session, openid="o-backlog")
        for _ in range(2):
            enqueue(
                session=session,
                conversation_id=conversation.id,
                openid="o-backlog",
                text="稍后回复您",
                sender="bot",
            )
        open_case(
            session=session,
            sender_id="o-backlog",
            category="emergency",
            priority="urgent",
            reason="danger",
            summary="有人拿刀",
        )
        open_ticket(session=session, sender_id="o-backlog", kind="noise", summary="楼上装修")
    samples = _scrape(wechat.client)
    assert _value(samples, "jmt_outbox_items", status="pending") == 2
    assert _value(samples, "jmt_outbox_items", status="failed") == 0  # present, zero
    assert _value(samples, "jmt_open_cases", priority="urgent") == 1
    assert _value(samples, "jmt_open_cases", priority="low") == 0
    assert _value(samples, "jmt_tickets", status="pending") == 1
    assert ("jmt_case_notifications", (("status", "failed"),)) in samples


def test_metrics_require_the_token_when_one_is_set(database_url, monkeypatch, rasa):
    with _gateway(database_url, monkeypatch, rasa, METRICS_TOKEN="scrape-token-123456") as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        refused = client.get("/metrics", headers={"Authorization": "Basic scrape-token-123456"})
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert "jmt_" not in refused.text
        samples = _scrape(client, Authorization="Bearer scrape-token-123456")
        assert ("jmt_open_cases", (("priority", "urgent"),)) in samples


# ------------------------------------------------------------------ several workers


WORKER = """
import sys
from gateway import observability
observability.HTTP_REQUESTS.labels("POST", "/wechat", "200").inc(int(sys.argv[1]))
observability.RASA_CALLS.labels("ok").inc()
"""
SCRAPE = """
import sys
from gateway import observability
print(observability.render(sys.argv[1])[0].decode())
"""


def test_metrics_add_up_the_workers_in_multiprocess_mode(sqlite_url, tmp_path):
    """Two worker processes count; a third process (the one scraped) reports both."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"stale")  # a previous run's file
    from gateway.observability import prepare_multiprocess_dir

    prepare_multiprocess_dir(directory)
    assert list(directory.iterdir()) == []
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "PYTHONPATH": str(paths.REPO_ROOT),
        "PATH": "/usr/bin:/bin",
    }
    for count in ("2", "3"):
        subprocess.run(
            [sys.executable, "-c", WORKER, count],
            env=env,
            cwd=paths.REPO_ROOT,
            check=True,
            timeout=120,
        )
    scraped = subprocess.run(
        [sys.executable, "-c", SCRAPE, sqlite_url],
        env=env,
        cwd=paths.REPO_ROOT,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout
    samples = _samples(scraped)
    assert (
        _value(samples, "jmt_http_requests_total", method="POST", route="/wechat", status="200")
        == 5
    )
    assert _value(samples, "jmt_rasa_requests_total", outcome="ok") == 2
    assert ("jmt_open_cases", (("priority", "urgent"),)) in samples  # the database part too


def test_a_single_process_needs_no_multiprocess_directory(wechat, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert "jmt_http_requests_total" in wechat.client.get("/metrics").text
