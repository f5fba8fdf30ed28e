"""End to end: a real Rasa 3.6 started the way the launcher starts it
(`launch.rasa_server` + `launch.rasa_environment`): its API token is nowhere on its
command line yet guards its API, and its own log lines for a message carry the request id
the gateway's client sent.

Needs the model for the current data (`make train`); no training happens here.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from casework import logconfig
from integrations.rasa import RasaClient
from jmt import launch, paths
from jmt.train import data_hash, model_path
from tests.e2e.test_conversation import free_port, wait_for

pytestmark = pytest.mark.e2e


def test_rasa_hides_its_token_and_logs_the_gateways_request_id(tmp_path):
    model = model_path(data_hash())
    if not model.exists():
        pytest.fail(f"no model for the current data ({model.name}); run `make train` first")
    port, token = free_port(), secrets.token_urlsafe(16)
    env = {
        **os.environ,
        **launch.rasa_environment(token),
        "RASA_TELEMETRY_ENABLED": "false",
        "ACTION_ENDPOINT_URL": "http://127.0.0.1:9/webhook",  # no custom action is needed
        "ACTIONS_TOKEN": "unused",
        "RASA_TRACKER_DB": str(tmp_path / "tracker.sqlite3"),
        "LOG_LEVEL": "DEBUG",  # Rasa's processor logs each message it handles at DEBUG
    }
    env.pop("RASA_TOKEN", None)  # the token reaches Rasa only through the launcher's variable
    log = tmp_path / "rasa.log"
    server = subprocess.Popen(
        launch.rasa_server(port, model=model),
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/status?token={token}", server, timeout=600)
        # What every local user sees of it: no token.
        with open(f"/proc/{server.pid}/cmdline", "rb") as cmdline:
            command = cmdline.read()
        assert b"jmt.rasa_process\0run\0--enable-api" in command
        assert token.encode() not in command and b"--auth-token" not in command
        # ... yet the API is closed without it.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/status", timeout=10)
        assert refused.value.code == 401

        request_id = f"e2e-rasa-{uuid.uuid4().hex[:8]}"
        sender = f"o-e2e-{uuid.uuid4().hex[:8]}"

        async def turn() -> None:
            client = RasaClient(url, token=token)
            try:
                logconfig.REQUEST_ID.set(request_id)  # as inside a /wechat request
                await client.send(sender, "你好")
            finally:
                await client.close()

        asyncio.run(turn())
        deadline = time.monotonic() + 20
        while True:
            tagged = [row for row in log.read_text().splitlines() if f"[{request_id}]" in row]
            if any(" rasa.core." in row for row in tagged):  # Rasa's own lines for the turn
                break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
