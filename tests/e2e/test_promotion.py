"""End to end: promote a model into a real running Rasa server through its HTTP API, check
GET /status, roll back, check again; messages sent during the switch are all answered.

Needs the model for the current data (`make train`); no training happens here. The copy
that is promoted, LIVE and HISTORY live in a temporary folder, never in bot/models.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jmt import launch, paths
from jmt import model as models
from jmt.evaluate import GateResult
from jmt.train import data_hash, model_path
from tests.e2e.test_conversation import free_port, wait_for

pytestmark = pytest.mark.e2e
TOKEN = secrets.token_urlsafe(16)  # the Rasa server's --auth-token


@pytest.fixture(scope="module")
def rasa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    model = model_path(data_hash())
    if not model.exists():
        pytest.fail(f"no model for the current data ({model.name}); run `make train` first")
    port = free_port()
    logs = tmp_path_factory.mktemp("logs")
    env = {
        **os.environ,
        "RASA_TELEMETRY_ENABLED": "false",
        "RASA_TRACKER_DB": str(logs / "tracker.sqlite3"),  # as in production: persistent
        "ACTION_ENDPOINT_URL": "http://127.0.0.1:9/webhook",
        "ACTIONS_TOKEN": "unused",
    }  # no custom action is run here
    log = logs / "rasa.log"
    server = subprocess.Popen(
        launch.rasa_server(port, token=TOKEN, model=model),
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/status?token={TOKEN}", server)
        yield {"url": f"http://127.0.0.1:{port}", "model": model, "log": log}
    finally:
        server.terminate()
        server.wait(timeout=30)


def say(url: str, sender: str, text: str) -> None:
    body = json.dumps({"sender": sender, "message": text}).encode()
    request = urllib.request.Request(
        f"{url}/webhooks/rest/webhook", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def latest_text(url: str, sender: str) -> str | None:
    with urllib.request.urlopen(
        f"{url}/conversations/{sender}/tracker?token={TOKEN}", timeout=30
    ) as response:
        return (json.loads(response.read()).get("latest_message") or {}).get("text")


def status(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/status?token={TOKEN}", timeout=30) as response:
        return dict(json.loads(response.read()))


def parse(url: str, text: str) -> str:
    request = urllib.request.Request(
        f"{url}/model/parse?token={TOKEN}",
        json.dumps({"text": text}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(json.loads(response.read())["intent"]["name"])


@contextmanager
def keeps_answering(url: str) -> Iterator[list[float]]:
    """Residents keep writing while a model loads: every parse must be answered (Rasa
    loads the new model in-process, so answers may wait, but none is refused)."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def resident() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                parse(url, "身份证丢了怎么补办")
                latencies.append(time.monotonic() - started)
            except OSError as error:
                failures.append(error)
            time.sleep(0.05)

    thread = threading.Thread(target=resident, daemon=True)
    thread.start()
    try:
        yield latencies
    finally:
        done.set()
        thread.join(timeout=90)
    assert not failures, f"messages not answered during the switch: {failures[:3]}"


def test_promote_and_rollback_on_a_running_server(
    rasa: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current: Path = rasa["model"]
    folder = tmp_path / "models"
    folder.mkdir()
    copy = folder / f"{current.name.removesuffix('.tar.gz')}-copy.tar.gz"
    shutil.copyfile(current, copy)
    models.write_live(current, folder)  # what the server was started with
    assert status(rasa["url"])["model_file"] == current.name

    # The gate's verdict for exactly this copy (the gate itself is tested in unit tests).
    reports = tmp_path / "reports"
    reports.mkdir()
    models.write_gate(copy, current, paths.HELDOUT, GateResult(True, [], []), reports)
    monkeypatch.setattr(models, "run_gate", lambda *a, **k: pytest.fail("gate re-run"))

    say(rasa["url"], "promotion-witness", "你好")  # a conversation in progress
    with keeps_answering(rasa["url"]) as answered:
        models.promote(
            rasa_url=rasa["url"],
            rasa_token=TOKEN,
            model=copy,
            models_dir=folder,
            reports_root=reports,
        )
    assert answered, "no message was answered while the model was loading"
    print(f"\n{len(answered)} parses during the switch, slowest {max(answered):.1f} s")
    assert status(rasa["url"])["model_file"] == copy.name
    assert parse(rasa["url"], "救命有人拿刀") == "emergency"  # the new model answers
    assert models.read_live(folder) == copy
    assert latest_text(rasa["url"], "promotion-witness") == "你好"  # not wiped by the switch

    with pytest.raises(models.PromotionError):  # Rasa's API refuses a caller without the token
        models.rollback(rasa_url=rasa["url"], models_dir=folder)
    assert models.rollback(rasa_url=rasa["url"], rasa_token=TOKEN, models_dir=folder) == current
    assert status(rasa["url"])["model_file"] == current.name
    assert parse(rasa["url"], "救命有人拿刀") == "emergency"
    assert models.read_live(folder) == current
    actions = [line.split("\t")[1] for line in (folder / "HISTORY").read_text().splitlines()]
    assert actions == ["promote", "rollback"]
