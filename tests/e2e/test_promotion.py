"""End to end: promote a model and roll it back through the real launcher (`make run`).

`jmt model promote` hands the model to the running launcher, which starts a new Rasa
process with it on the spare port, switches rasa-urls.json once GET /status names it,
and stops the old process after the drain. A resident who keeps writing (to whatever URL
rasa-urls.json names, as the gateway's pool does) is answered all along; the
conversation continues.

`--put-model` (PUT /model on a Rasa no launcher runs) is tested against a stand-in in
tests/unit/test_model_gate.py: for real it pauses every reply for 18-24 s (over 60 s on
a loaded machine), which is why it is no longer the default.

Needs the model for the current data (`make train`); no training happens here. The copy
that is promoted, LIVE and HISTORY live in a temporary folder, never in bot/models.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jmt import model as models
from jmt import paths
from jmt.evaluate import GateResult
from tests.e2e.launcher import rasa_urls, running_launcher

pytestmark = pytest.mark.e2e
TOKEN = secrets.token_urlsafe(16)  # a default for the helpers; the launcher's is in var/


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
            back = models.rollback(var_dir=var, models_dir=folder)
        assert back.resolve() == current.resolve()
        assert answered, "no message was answered during the rollback"
        print(f"{len(answered)} parses during the rollback, slowest {max(answered):.2f} s")
        assert rasa_urls(var)["urls"] == [old_url]
        assert status(old_url, token)["model_file"] == current.name
        assert models.read_live(folder) == current.resolve()
        actions = [line.split("\t")[1] for line in (folder / "HISTORY").read_text().splitlines()]
        assert actions == ["promote", "rollback"]
        log = bot["log"].read_text()
        assert "rasa-urls.json generation" in log and "draining" in log
