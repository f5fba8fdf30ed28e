"""A promotion without a pause, with SIMULATED Rasa processes (a tiny HTTP server that
answers GET /status with the model it was started with, after a start-up delay), so the
switching itself is tested in seconds: the new process comes up on the spare port, the
URL list changes only once it names the new model, the old process is stopped after the
drain, a failed start switches nothing, and `jmt model promote` talks to the launcher
through the control folder. The real thing: tests/e2e/test_promotion.py."""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jmt import model as models
from jmt.evaluate import GateResult
from jmt.rasa_fleet import (
    LOADING_NICENESS,
    STATE_FILE,
    URLS_FILE,
    WARM_UP_ROUNDS,
    WARM_UP_TEXTS,
    RasaFleet,
    read_json,
)
from jmt.supervisor import Backoff, Supervisor

STAND_IN = textwrap.dedent(
    """
    import http.server, json, os, sys, time
    port, model = int(sys.argv[1]), os.path.basename(sys.argv[2])
    started_at_nice = os.nice(0)  # the CPU priority it was started with
    if model.startswith("broken"):
        raise SystemExit("simulated: this model does not load")
    # a pool thread started while "loading", as TensorFlow's are: it inherits the priority
    import threading
    pool = threading.Thread(target=time.sleep, args=(3600,), daemon=True)
    pool.start()
    time.sleep(0.3)  # "loading the model"
    parsed = []  # texts parsed (POST /model/parse), in order

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, code, data):
            body = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._answer(200, {"model_file": model, "nice": started_at_nice, "parsed": parsed,
                               "pool_thread": pool.native_id})

        def do_POST(self):
            text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"]
            if model.startswith("noparse") or "token=t" not in self.path:
                self._answer(500, {"error": "simulated: the model cannot parse"})
                return
            parsed.append(text)
            self._answer(200, {"text": text, "intent": {"name": "greet", "confidence": 1.0}})

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


def free_base_port(count: int) -> int:
    """A port p with p .. p+count-1 free (good enough for a test)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def status(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{url}/status?token=t", timeout=5) as response:
        return str(json.loads(response.read())["model_file"])


def parsed(url: str) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/status?token=t", timeout=5) as response:
        return list(json.loads(response.read())["parsed"])


def pool_thread(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/status?token=t", timeout=5) as response:
        return int(json.loads(response.read())["pool_thread"])


def started_nice(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/status?token=t", timeout=5) as response:
        return int(json.loads(response.read())["nice"])


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RasaFleet]:
    supervisor = Supervisor(backoff=Backoff(0.05, 0.4, 5.0), grace=5.0, tick=0.02)
    replicas = 2
    fleet = RasaFleet(
        supervisor,
        command=lambda port, model: [sys.executable, "-c", STAND_IN, str(port), str(model)],
        environment=lambda: dict(os.environ),
        cwd=tmp_path,
        host="127.0.0.1",
        token="t",
        base_port=free_base_port(2 * replicas),
        replicas=replicas,
        var_dir=tmp_path / "var",
        drain=0.2,
        start_timeout=30,
    )
    old = tmp_path / "jmt-aaaaaaaaaaaa.tar.gz"
    old.write_bytes(b"old")
    fleet.start(old)
    fleet.wait_ready()
    fleet.publish()
    supervisor.every_tick(fleet.check_requests)
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    yield fleet
    supervisor.request_stop()
    thread.join(timeout=30)


def test_a_promotion_switches_each_replica_only_once_the_new_process_serves(
    fleet: RasaFleet, tmp_path: Path
) -> None:
    var = fleet.var_dir
    first = read_json(var / URLS_FILE)
    assert first is not None
    assert first["urls"] == [fleet.url(fleet.base_port), fleet.url(fleet.base_port + 1)]
    old_children = [r.child for r in fleet.replicas]
    old_pids = [c.pid for c in old_children]
    new = tmp_path / "jmt-bbbbbbbbbbbb.tar.gz"
    new.write_bytes(b"new")

    fleet.promote(new)

    urls = read_json(var / URLS_FILE)
    assert urls is not None
    spare = fleet.base_port + 2
    assert urls["urls"] == [fleet.url(spare), fleet.url(spare + 1)]  # the spare ports
    assert urls["generation"] == first["generation"] + 2  # one switch per replica
    assert [status(url) for url in urls["urls"]] == [new.name, new.name]
    assert all(not c.running() for c in old_children)  # drained and stopped
    assert [r.child.pid for r in fleet.replicas] != old_pids
    assert all(r.child in fleet.supervisor.children for r in fleet.replicas)
    state = read_json(var / STATE_FILE)
    assert state is not None and state["serving"] == new.name
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    for replica, url in zip(fleet.replicas, urls["urls"], strict=True):
        assert started_nice(url) == min(19, ours + LOADING_NICENESS)  # loaded in the background
        assert os.getpriority(os.PRIO_PROCESS, replica.child.pid) == ours  # ... and serves,
        assert os.getpriority(os.PRIO_PROCESS, pool_thread(url)) == ours  # every thread of it

    fleet.promote(tmp_path / "jmt-aaaaaaaaaaaa.tar.gz")  # and back to the first ports
    back = read_json(var / URLS_FILE)
    assert back is not None and back["urls"] == first["urls"]


def test_a_model_that_does_not_start_switches_nothing(fleet: RasaFleet, tmp_path: Path) -> None:
    before = read_json(fleet.var_dir / URLS_FILE)
    children = [r.child for r in fleet.replicas]
    broken = tmp_path / "broken-model.tar.gz"
    broken.write_bytes(b"x")
    with pytest.raises(Exception, match="exited while starting"):
        fleet.promote(broken)
    assert read_json(fleet.var_dir / URLS_FILE) == before
    assert [r.child for r in fleet.replicas] == children and all(c.running() for c in children)
    assert len(fleet.supervisor.children) == 2  # the failed candidate is not restarted


def test_a_new_process_is_warmed_up_before_it_takes_traffic(
    fleet: RasaFleet, tmp_path: Path
) -> None:
    """Its first parse is slow (TensorFlow traces): it parses every warm-up text, short to
    long, before the URL list names it — and no resident's message is among them."""
    new = tmp_path / "jmt-bbbbbbbbbbbb.tar.gz"
    new.write_bytes(b"new")
    fleet.promote(new)
    for url in fleet.urls():
        assert parsed(url) == list(WARM_UP_TEXTS) * WARM_UP_ROUNDS


def test_a_model_that_cannot_parse_switches_nothing(fleet: RasaFleet, tmp_path: Path) -> None:
    before = read_json(fleet.var_dir / URLS_FILE)
    children = [r.child for r in fleet.replicas]
    mute = tmp_path / "noparse-model.tar.gz"
    mute.write_bytes(b"x")
    with pytest.raises(Exception, match="does not parse"):
        fleet.promote(mute)
    assert read_json(fleet.var_dir / URLS_FILE) == before
    assert [r.child for r in fleet.replicas] == children and all(c.running() for c in children)
    assert len(fleet.supervisor.children) == 2  # the candidate was retired, not restarted


def test_a_crashed_replica_comes_back_with_the_promoted_model(
    fleet: RasaFleet, tmp_path: Path
) -> None:
    new = tmp_path / "jmt-bbbbbbbbbbbb.tar.gz"
    new.write_bytes(b"new")
    fleet.promote(new)
    replica = fleet.replicas[0]
    assert replica.child.process is not None
    replica.child.process.kill()
    deadline = time.monotonic() + 20
    while replica.child.restarts == 0 or not replica.child.running():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    deadline = time.monotonic() + 20
    while True:
        try:
            assert status(fleet.url(replica.port)) == new.name
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_jmt_model_promote_asks_the_running_launcher(
    fleet: RasaFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    current = tmp_path / "jmt-aaaaaaaaaaaa.tar.gz"
    candidate = folder / "jmt-cccccccccccc.tar.gz"
    candidate.write_bytes(b"candidate")
    models.write_live(current, folder)
    monkeypatch.setattr(models, "run_gate", lambda *a, **k: GateResult(True, [], []))
    live = models.promote(
        model=candidate,
        var_dir=fleet.var_dir,
        models_dir=folder,
        heldout=tmp_path / "heldout.yml",
        reports_root=tmp_path,
    )
    assert live == candidate and models.read_live(folder) == candidate
    assert [status(url) for url in fleet.urls()] == [candidate.name] * 2
    assert models.rollback(var_dir=fleet.var_dir, models_dir=folder) == current
    assert [status(url) for url in fleet.urls()] == [current.name] * 2
    assert list((fleet.var_dir / "control").glob("*.json")) == []  # requests and answers taken


def test_without_a_launcher_promote_refuses_and_names_the_put_model_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    candidate = tmp_path / "jmt-cccccccccccc.tar.gz"
    candidate.write_bytes(b"candidate")
    monkeypatch.setattr(models, "run_gate", lambda *a, **k: GateResult(True, [], []))
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 2**22 + 12345}))  # a dead launcher
    with pytest.raises(models.PromotionError, match="--put-model"):
        models.promote(
            model=candidate,
            var_dir=tmp_path,
            models_dir=tmp_path,
            heldout=tmp_path / "heldout.yml",
            reports_root=tmp_path,
        )
    assert not (tmp_path / "LIVE").exists()
