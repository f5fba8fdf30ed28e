"""Start the real launcher (`python -m jmt.launch`, what `make run` runs) for an e2e test:
its own ports, database, tracker file and var folder; stopped with SIGTERM as a service
manager would, and its whole process group killed if that fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from casework import db, demo
from jmt import paths
from jmt.ports import free_port_range
from jmt.train import data_hash, model_path
from tests.e2e.test_conversation import free_port
from tests.gateway.conftest import TOKEN


def is_rasa_server(command: str) -> bool:
    """A `rasa run` the launcher started (through jmt/rasa_process.py: Rasa without JAX)."""
    return "jmt.rasa_process run " in command


def children_of(pid: int) -> dict[int, str]:
    """The direct children of `pid` and their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            state = stat.rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and state != "Z":
            found[int(entry.name)] = command
    return found


def wait_until(check, what: str, timeout: float = 300.0, process=None):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the launcher exited with {process.returncode} ({what})")
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


@contextmanager
def running_launcher(tmp: Path, **settings: str) -> Iterator[dict]:
    model = model_path(data_hash())
    if not model.exists():
        raise RuntimeError(f"no model for the current data ({model.name}); run `make train`")
    var = tmp / "var"
    database = f"sqlite:///{tmp / 'jmt.sqlite3'}"
    replicas = int(settings.get("RASA_REPLICAS", "1"))
    rasa_port = free_port_range(2 * replicas)
    actions_port, gateway_port = free_port(), free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name
        not in {
            "ACTION_ENDPOINT_URL",  # the Makefile exports one for its own ports
            "ACTION_SERVER_URL",
            "RASA_URL",
            "RASA_URLS",
            "RASA_TOKEN",
            "ACTIONS_TOKEN",
            "WECHAT_API_BASE_URL",
            "WECHAT_ENCODING_AES_KEY",
            "WECHAT_APP_ID",
            "WECHAT_APP_SECRET",
            "JMT_SIMULATOR",
        }
    }
    env.update(
        {
            "JMT_ENV": "development",
            "JMT_VAR_DIR": str(var),  # tokens are generated here, rasa-urls.json lives here
            "DATABASE_URL": database,
            "RASA_TRACKER_DB": str(tmp / "rasa-tracker.sqlite3"),
            "RASA_TELEMETRY_ENABLED": "false",
            "RASA_PORT": str(rasa_port),
            "ACTIONS_PORT": str(actions_port),
            "GATEWAY_PORT": str(gateway_port),
            "WECHAT_TOKEN": TOKEN,
            "RASA_MODEL": str(model),  # the current data's, whatever else bot/models holds
            "PYTHONPATH": str(paths.REPO_ROOT),
            **settings,
        }
    )
    db.migrate(database)
    with db.session_scope(database) as session:
        demo.load(session=session)
    log = tmp / "launcher.log"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "jmt.launch"],
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the cleanup can reach every child
    )
    gateway = f"http://127.0.0.1:{gateway_port}"
    try:

        def healthy() -> bool:
            with urllib.request.urlopen(f"{gateway}/healthz", timeout=5) as reply:
                return reply.status == 200

        # Rasa takes 1-2 min to load on a busy machine; several replicas load at once.
        wait_until(
            healthy, "the gateway's /healthz", timeout=300 + 300 * replicas, process=launcher
        )
        token = (var / "rasa-token").read_text().strip()
        # Every local user can read a command line: the token is on none of them (Rasa
        # gets it through its environment, jmt/rasa_process.py).
        shown = [c for c in children_of(launcher.pid).values() if token in c]
        assert not shown, "RASA_TOKEN on a child's command line"
        yield {
            "launcher": launcher,
            "gateway": gateway,
            "database": database,
            "var": var,
            "rasa_port": rasa_port,
            "token": token,
            "log": log,
        }
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
        try:  # whatever is left in its process group (nothing, when the launcher works)
            os.killpg(launcher.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        db.get_engine.cache_clear()


def rasa_urls(var: Path) -> dict:
    return dict(json.loads((var / "rasa-urls.json").read_text()))
