"""End to end: promote a model and roll it back, for real.

- Through the launcher (`make run`, the default): `jmt model promote` hands the model to
  the running launcher, which starts a new Rasa process with it on the spare port,
  switches rasa-urls.json once GET /status names it, and stops the old process after the
  drain. A resident who keeps writing (to whatever URL rasa-urls.json names, as the
  gateway's pool does) is answered all along; the conversation continues.
- With `--put-model` (Rasa managed by someone else): PUT /model on the serving process.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jmt import launch, paths
from jmt import model as models
from jmt.evaluate import GateResult
from jmt.train import data_hash, model_path
from tests.e2e.launcher import rasa_urls, running_launcher
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


def latest_text(url: str, sender: str, token: str = TOKEN) -> str | None:
    with urllib.request.urlopen(
        f"{url}/conversations/{sender}/tracker?token={token}", timeout=30
    ) as response:
        return (json.loads(response.read()).get("latest_message") or {}).get("text")


def status(url: str, token: str = TOKEN) -> dict:
    with urllib.request.urlopen(f"{url}/status?token={token}", timeout=30) as response:
        return dict(json.loads(response.read()))


def parse(url: str, text: str, token: str = TOKEN) -> str:
    request = urllib.request.Request(
        f"{url}/model/parse?token={token}",
        json.dumps({"text": text}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(json.loads(response.read())["intent"]["name"])


@contextmanager
def keeps_answering(url: str | Callable[[], str], token: str = TOKEN) -> Iterator[list[float]]:
    """Residents keep writing while a model loads: every parse must be answered (with
    PUT /model Rasa loads the new model in-process, so answers wait, but none is refused;
    through the launcher `url` is read anew for each message, as the gateway's pool
    re-reads rasa-urls.json)."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def resident() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                parse(url() if callable(url) else url, "身份证丢了怎么补办", token)
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


def test_put_model_promotes_and_rolls_back_a_server_without_launcher(
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
            put_model=True,
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
        models.rollback(rasa_url=rasa["url"], put_model=True, models_dir=folder)
    assert (
        models.rollback(rasa_url=rasa["url"], rasa_token=TOKEN, put_model=True, models_dir=folder)
        == current
    )
    assert status(rasa["url"])["model_file"] == current.name
    assert parse(rasa["url"], "救命有人拿刀") == "emergency"
    assert models.read_live(folder) == current
    actions = [line.split("\t")[1] for line in (folder / "HISTORY").read_text().splitlines()]
    assert actions == ["promote", "rollback"]


def test_the_launcher_swaps_the_model_without_a_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_launcher(tmp_path / "run", RASA_DRAIN_SECONDS="3") as bot:
        var, token = bot["var"], bot["token"]
        first = rasa_urls(var)
        [old_url] = first["urls"]
        current = paths.MODELS / status(old_url, token)["model_file"]
        folder = tmp_path / "models"
        folder.mkdir()
        copy = folder / f"{current.name.removesuffix('.tar.gz')}-copy.tar.gz"
        shutil.copyfile(current, copy)
        models.write_live(current, folder)  # what the launcher was started with
        reports = tmp_path / "reports"
        reports.mkdir()
        models.write_gate(copy, current, paths.HELDOUT, GateResult(True, [], []), reports)
        monkeypatch.setattr(models, "run_gate", lambda *a, **k: pytest.fail("gate re-run"))

        def live_url() -> str:
            return str(rasa_urls(var)["urls"][0])

        say(old_url, "promotion-witness", "你好")  # a conversation in progress
        with keeps_answering(live_url, token) as answered:
            models.promote(model=copy, var_dir=var, models_dir=folder, reports_root=reports)
        assert answered, "no message was answered during the promotion"
        slowest = max(answered)
        print(f"\n{len(answered)} parses during the promotion, slowest {slowest:.2f} s")
        switched = rasa_urls(var)
        [new_url] = switched["urls"]
        assert new_url == f"http://127.0.0.1:{bot['rasa_port'] + 1}"  # the spare port
        assert switched["generation"] > first["generation"]
        assert status(new_url, token)["model_file"] == copy.name
        with pytest.raises(OSError):  # the old process drained and stopped
            status(old_url, token)
        assert parse(new_url, "救命有人拿刀", token) == "emergency"
        assert models.read_live(folder) == copy
        assert latest_text(new_url, "promotion-witness", token) == "你好"  # same tracker store

        with keeps_answering(live_url, token) as answered:
            assert models.rollback(var_dir=var, models_dir=folder) == current
        assert answered
        assert rasa_urls(var)["urls"] == [old_url]
        assert status(old_url, token)["model_file"] == current.name
        assert models.read_live(folder) == current
        actions = [line.split("\t")[1] for line in (folder / "HISTORY").read_text().splitlines()]
        assert actions == ["promote", "rollback"]
        log = bot["log"].read_text()
        assert "rasa-urls.json generation" in log and "draining" in log
