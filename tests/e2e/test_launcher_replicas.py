"""End to end on PostgreSQL and Redis: the real launcher with RASA_REPLICAS=2 and
GATEWAY_WORKERS=2. Both replicas run on Rasa's production stores (derived from
DATABASE_URL/REDIS_URL), so a conversation begun on one continues on the other; a killed
replica is restarted while the other keeps its process; a promotion replaces them one by
one on their spare ports, each switch a new generation of rasa-urls.json.

Reads TEST_DATABASE_URL / TEST_REDIS_URL; skips when one is unreachable (fails under
CI=true). Needs the model for the current data (`make train`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from jmt import model as models
from jmt import paths
from jmt.evaluate import GateResult
from tests.conftest import _postgres_schema_url
from tests.e2e.launcher import (
    children_of,
    is_rasa_server,
    rasa_urls,
    running_launcher,
    wait_until,
)
from tests.e2e.test_production_stores import DEFAULT_PG, DEFAULT_REDIS, reachable_or_skip

pytestmark = pytest.mark.e2e


def say(url: str, sender: str, text: str) -> list[str]:
    request = urllib.request.Request(
        f"{url}/webhooks/rest/webhook",
        json.dumps({"sender": sender, "message": text}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return [m.get("text", "") for m in json.loads(reply.read())]


def status(url: str, token: str) -> str:
    with urllib.request.urlopen(f"{url}/status?token={token}", timeout=10) as reply:
        return str(json.loads(reply.read())["model_file"])


def rasa_pids(launcher_pid: int) -> dict[int, int]:
    """port -> pid of every `rasa run` the launcher runs."""
    found = {}
    for pid, command in children_of(launcher_pid).items():
        if is_rasa_server(command):
            words = command.split()
            found[int(words[words.index("--port") + 1])] = pid
    return found


def test_two_replicas_share_conversations_survive_a_kill_and_swap_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS))
    reachable_or_skip("Redis", client.ping)
    urls = _postgres_schema_url()  # a schema of its own for the case store; skips if down
    database = next(urls)
    prefix = f"jmt{uuid.uuid4().hex[:8]}"
    sender = f"rep-{uuid.uuid4().hex[:8]}"
    try:
        with running_launcher(
            tmp_path / "run",
            DATABASE_URL=database,
            REDIS_URL=os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS),
            RASA_REPLICAS="2",
            GATEWAY_WORKERS="2",
            RASA_REDIS_PREFIX=prefix,
            RASA_DRAIN_SECONDS="3",
        ) as bot:
            var, token, base = bot["var"], bot["token"], bot["rasa_port"]
            first = rasa_urls(var)
            assert first["urls"] == [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"]
            one, two = first["urls"]
            say(one, sender, "你好")  # the conversation starts on replica 0 ...
            say(two, sender, "身份证丢了怎么补办")  # ... and goes on on replica 1
            with urllib.request.urlopen(
                f"{one}/conversations/{sender}/tracker?token={token}", timeout=30
            ) as reply:
                events = json.loads(reply.read())["events"]
            texts = [e["text"] for e in events if e["event"] == "user"]
            assert texts == ["你好", "身份证丢了怎么补办"]  # one tracker ...
            engine = sa.create_engine(os.environ.get("TEST_DATABASE_URL", DEFAULT_PG))
            with engine.connect() as connection:  # ... in PostgreSQL
                stored = connection.execute(
                    sa.text("select count(*) from events where sender_id = :s"), {"s": sender}
                ).scalar_one()
            engine.dispose()
            assert stored >= 2

            before = rasa_pids(bot["launcher"].pid)
            os.kill(before[base + 1], signal.SIGKILL)
            wait_until(lambda: status(two, token), "replica 1 restarted")
            after = rasa_pids(bot["launcher"].pid)
            assert after[base] == before[base] and after[base + 1] != before[base + 1]

            current = paths.MODELS / status(one, token)
            folder = tmp_path / "models"
            folder.mkdir()
            copy = folder / f"{current.name.removesuffix('.tar.gz')}-copy.tar.gz"
            shutil.copyfile(current, copy)
            models.write_live(current, folder)
            monkeypatch.setattr(models, "run_gate", lambda *a, **k: GateResult(True, [], []))
            models.promote(
                model=copy, var_dir=var, models_dir=folder, reports_root=tmp_path, force=True
            )
            switched = rasa_urls(var)
            spare = [f"http://127.0.0.1:{base + 2}", f"http://127.0.0.1:{base + 3}"]
            assert switched["urls"] == spare
            assert switched["generation"] == first["generation"] + 2  # replica by replica
            assert [status(url, token) for url in spare] == [copy.name, copy.name]
            assert sorted(rasa_pids(bot["launcher"].pid)) == [base + 2, base + 3]
            assert say(spare[1], sender, "谢谢")  # the same conversation, on the new model
            commands = [c for c in children_of(bot["launcher"].pid).values() if is_rasa_server(c)]
            assert len(commands) == 2
            assert all("endpoints.production.yml" in command for command in commands)
    finally:
        engine = sa.create_engine(os.environ.get("TEST_DATABASE_URL", DEFAULT_PG), future=True)
        with engine.begin() as connection:  # Rasa's events table lives in the public schema
            connection.execute(sa.text("delete from events where sender_id = :s"), {"s": sender})
        engine.dispose()
        next(urls, None)
