"""Rasa's production stores, for real: conversations in PostgreSQL (SQL tracker store) and
per-conversation locks in Redis, with bot/endpoints.production.yml.

Reads TEST_DATABASE_URL and TEST_REDIS_URL (defaults: the local services); skips when one
is unreachable, except under CI=true where that fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import urllib.request
import uuid
from urllib.parse import urlparse

import pytest
import redis
import sqlalchemy as sa

from jmt import launch, paths
from jmt.train import data_hash, model_path
from tests.e2e.test_conversation import free_port, wait_for

pytestmark = pytest.mark.e2e
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def reachable_or_skip(what: str, check) -> None:
    try:
        check()
    except Exception as error:  # noqa: BLE001 — any failure means unreachable
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} unreachable under CI=true: {error}")
        pytest.skip(f"{what} unreachable: {error}")


def test_rasa_keeps_conversations_in_postgresql_and_locks_in_redis(tmp_path):
    pg_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    redis_url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS)
    engine = sa.create_engine(pg_url, future=True)
    reachable_or_skip("PostgreSQL", lambda: engine.connect().close())
    client = redis.Redis.from_url(redis_url)
    reachable_or_skip("Redis", client.ping)
    model = model_path(data_hash())
    if not model.exists():
        pytest.fail(f"no model for the current data ({model.name}); run `make train` first")

    pg, rd = urlparse(pg_url), urlparse(redis_url)
    prefix = f"jmt{uuid.uuid4().hex[:8]}"
    port, token = free_port(), secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "RASA_TELEMETRY_ENABLED": "false",
        "ACTION_ENDPOINT_URL": "http://127.0.0.1:9/webhook",  # this test runs no custom action
        "ACTIONS_TOKEN": "unused",
        "RASA_DB_HOST": pg.hostname or "127.0.0.1",
        "RASA_DB_PORT": str(pg.port or 5432),
        "RASA_DB_NAME": pg.path.lstrip("/") or "test",
        "RASA_DB_USER": pg.username or "postgres",
        "RASA_DB_PASSWORD": pg.password or "",
        "RASA_REDIS_HOST": rd.hostname or "127.0.0.1",
        "RASA_REDIS_PORT": str(rd.port or 6379),
        "RASA_REDIS_DB": (rd.path.lstrip("/") or "0"),
        "RASA_REDIS_PREFIX": prefix,
    }
    log = tmp_path / "rasa.log"
    server = subprocess.Popen(
        launch.rasa_server(port, model=model, endpoints=paths.BOT / "endpoints.production.yml"),
        cwd=paths.REPO_ROOT,
        env={**env, **launch.rasa_environment(token)},
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    sender = f"prod-{uuid.uuid4().hex[:8]}"
    seen: list[str] = []
    try:
        wait_for(f"http://127.0.0.1:{port}/status?token={token}", server)
        with client.monitor() as monitor:  # every command Redis receives

            def watch() -> None:
                for command in monitor.listen():
                    seen.append(str(command.get("command", "")))
                    if len(seen) > 500:
                        return

            threading.Thread(target=watch, daemon=True).start()
            for text in ("你好", "身份证丢了怎么补办"):
                body = json.dumps({"sender": sender, "message": text}).encode()
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/webhooks/rest/webhook",
                    body,
                    {"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=60) as reply:
                    assert json.loads(reply.read()), "the bot answered nothing"
    finally:
        server.terminate()
        server.wait(timeout=30)
    lock_key = f"{prefix}:lock:{sender}"  # RedisLockStore's key for this conversation
    assert any(lock_key in command for command in seen), (seen[:20], log.read_text()[-2000:])
    with engine.connect() as connection:
        texts = (
            connection.execute(
                sa.text("select data from events where sender_id = :s and type_name = 'user'"),
                {"s": sender},
            )
            .scalars()
            .all()
        )
        connection.execute(sa.text("delete from events where sender_id = :s"), {"s": sender})
        connection.commit()
    assert [json.loads(t)["text"] for t in texts] == ["你好", "身份证丢了怎么补办"]
