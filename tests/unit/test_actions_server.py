"""The action server (jmt/actions_server.py) refuses every call without ACTIONS_TOKEN but
/health, and serves the actions with it — a real process, as `make run` starts it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from jmt import launch, paths

TOKEN = "actions-secret-for-tests"
LOGS: dict[str, Path] = {}  # the running server's log file, for the logging test


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def actions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("actions") / "actions.log"
    LOGS["actions"] = log
    env = {
        **os.environ,
        "JMT_ENV": "development",
        "ACTIONS_TOKEN": TOKEN,
        "DATABASE_URL": f"sqlite:///{log.parent / 'jmt.sqlite3'}",
        "PYTHONPATH": str(paths.REPO_ROOT),
    }
    process = subprocess.Popen(
        launch.action_server(port),
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, Path(log).read_text()[-2000:]
            assert time.monotonic() < deadline, "the action server did not start"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert TOKEN not in log.read_text()  # its own log never prints the token


ACTION_CALL = {"next_action": "action_no_such_action", "tracker": {}, "domain": {}}


def test_health_is_open(actions):
    assert call(f"{actions}/health") == (200, {"status": "ok"})


@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong", f"?token={TOKEN}x"])
def test_webhook_refuses_a_missing_or_wrong_token(actions, query):
    assert call(f"{actions}/webhook{query}", ACTION_CALL) == (401, {"error": "unauthorized"})
    assert call(f"{actions}/actions{query}")[0] == 401


def test_webhook_runs_actions_with_the_token(actions):
    status, body = call(f"{actions}/webhook?token={TOKEN}", ACTION_CALL)
    assert (status, body["action_name"]) == (404, "action_no_such_action")  # reached rasa-sdk
    status, listed = call(f"{actions}/actions?token={TOKEN}")
    assert status == 200 and {"name": "action_handoff"} in listed


def test_refuses_to_listen_beyond_loopback_without_a_token():
    env = {**os.environ, "JMT_ENV": "production", "ACTIONS_TOKEN": "", "PYTHONPATH": "."}
    done = subprocess.run(
        launch.action_server(_free_port(), host="0.0.0.0"),
        cwd=paths.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ACTIONS_TOKEN is required to listen on 0.0.0.0" in done.stderr


def test_action_runs_log_the_gateways_request_id_in_the_project_format(actions):
    """The gateway puts its request id in the message metadata; the action server logs
    the run (and anything the action logs) under it: one grep follows a message."""
    call_with_id = {
        **ACTION_CALL,
        "tracker": {"latest_message": {"metadata": {"request_id": "wx-req-actions-1"}}},
    }
    status, _ = call(f"{actions}/webhook?token={TOKEN}", call_with_id)
    assert status == 404  # reached rasa-sdk, which knows no such action
    deadline = time.monotonic() + 10
    pattern = re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO jmt\.actions_server "
        r"\[wx-req-actions-1\] run action_no_such_action$",
        re.MULTILINE,
    )
    while not pattern.search(LOGS["actions"].read_text()):
        assert time.monotonic() < deadline, LOGS["actions"].read_text()[-2000:]
        time.sleep(0.1)
    # rasa-sdk's own error line for the same call carries the id too
    tagged = [line for line in LOGS["actions"].read_text().splitlines() if "[wx-req-" in line]
    assert any(" ERROR rasa_sdk.endpoint [wx-req-actions-1] No registered" in t for t in tagged)
