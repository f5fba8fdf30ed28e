"""The launcher's decisions that need no process: the stores several Rasa replicas need
(refused with what to set, or derived from DATABASE_URL/REDIS_URL), and its ports; and
the lock that keeps a second launcher off a var folder in use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casework.settings import Settings
from jmt import launch, paths


def settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    for name in ("RASA_DB_HOST", "RASA_DB_NAME", "RASA_DB_PORT", "RASA_DB_USER"):
        monkeypatch.delenv(name, raising=False)
    for name in ("RASA_DB_PASSWORD", "RASA_REDIS_HOST", "RASA_REDIS_PORT", "RASA_REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RASA_REDIS_PREFIX", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("JMT_ENV", "development")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("casework.settings._dotenv", lambda path: {})  # no developer's .env
    return Settings.from_env()


def test_one_replica_keeps_the_embedded_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    one = settings(monkeypatch, RASA_REPLICAS="1", DATABASE_URL="sqlite:///x.sqlite3")
    assert launch.replica_environment(one) == ({}, paths.ENDPOINTS)


def test_several_replicas_refuse_sqlite_and_a_missing_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    several = settings(monkeypatch, RASA_REPLICAS="2", DATABASE_URL="sqlite:///x.sqlite3")
    with pytest.raises(SystemExit) as refused:
        launch.replica_environment(several)
    message = str(refused.value)
    assert "RASA_REPLICAS=2" in message
    assert "DATABASE_URL must be PostgreSQL" in message and "REDIS_URL must be set" in message


def test_several_replicas_derive_rasa_stores_from_the_shared_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    several = settings(
        monkeypatch,
        RASA_REPLICAS="3",
        DATABASE_URL="postgresql+psycopg2://jmt:s%40cret@db.internal:6543/jmt",
        REDIS_URL="redis://cache.internal:6380/2",
        RASA_DB_NAME="rasa",  # set explicitly: wins over the derived value
    )
    environment, endpoints = launch.replica_environment(several)
    assert endpoints == paths.BOT / "endpoints.production.yml"
    assert environment == {
        "RASA_DB_HOST": "db.internal",
        "RASA_DB_PORT": "6543",
        "RASA_DB_NAME": "rasa",
        "RASA_DB_USER": "jmt",
        "RASA_DB_PASSWORD": "s@cret",
        "RASA_REDIS_HOST": "cache.internal",
        "RASA_REDIS_PORT": "6380",
        "RASA_REDIS_DB": "2",
        "RASA_REDIS_PREFIX": "jmt",
    }


def test_the_spare_ports_of_the_replicas_may_not_be_taken() -> None:
    launch.check_ports(5005, 2, 5055, 8000)  # 5005-5008: fine
    with pytest.raises(SystemExit, match=r"5005-5008 .* include \[5007\]"):
        launch.check_ports(5005, 2, 5007, 8000)


def test_workers_and_replicas_must_be_at_least_one() -> None:
    assert launch._positive("GATEWAY_WORKERS", 2) == 2
    with pytest.raises(SystemExit, match="GATEWAY_WORKERS=0 must be at least 1"):
        launch._positive("GATEWAY_WORKERS", 0)


def test_a_second_launcher_on_the_same_var_dir_is_refused_and_names_the_first(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    # The first launcher, as far as the folder is concerned: a process holding it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from jmt import launch\n"
            "launch.hold_var_dir(Path(sys.argv[1])); print('held', flush=True)\n"
            "sys.stdin.read()\n",
            str(var),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=paths.REPO_ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(launch.VarDirBusy) as busy:
            launch.hold_var_dir(var)
        assert busy.value.holder == str(holder.pid)
        # The real `make run` refuses before it touches anything: no database is created.
        database = tmp_path / "jmt.sqlite3"
        second = subprocess.run(
            [sys.executable, "-m", "jmt.launch"],
            env={
                **os.environ,
                "JMT_ENV": "development",
                "JMT_VAR_DIR": str(var),
                "DATABASE_URL": f"sqlite:///{database}",
            },
            capture_output=True,
            text=True,
            timeout=120,
            cwd=paths.REPO_ROOT,
        )
        assert second.returncode == launch.VAR_DIR_BUSY, second.stderr[-2000:]
        assert f"another launcher (pid {holder.pid}) is running" in second.stderr
        assert str(var) in second.stderr
        assert not database.exists()
    finally:
        holder.kill()  # as the OOM killer would: the kernel releases the lock
        holder.wait()
    fd = launch.hold_var_dir(var)  # free again, and now names this process
    try:
        assert (var / launch.LOCK_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        os.close(fd)


def test_the_var_dir_lock_is_not_inherited_by_children(tmp_path: Path) -> None:
    """A Rasa left behind by a killed launcher must not keep the folder locked."""
    fd = launch.hold_var_dir(tmp_path)
    try:
        assert not os.get_inheritable(fd)
        # close_fds=False: only the descriptor's own close-on-exec flag keeps it from Rasa.
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(30)"], close_fds=False
        )
    finally:
        os.close(fd)  # the launcher is gone; its child runs on
    try:
        # Between its fork and its exec the child shares the descriptor for an instant;
        # its exec drops it (close-on-exec), so the lock is free while the child runs on.
        deadline = time.monotonic() + 10
        while True:
            try:
                os.close(launch.hold_var_dir(tmp_path))
                break
            except launch.VarDirBusy:
                assert time.monotonic() < deadline, "the child kept the var folder locked"
                time.sleep(0.05)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_rasas_endpoint_settings_come_from_dotenv_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """bot/endpoints.yml's ACTION_ENDPOINT_URL and RASA_TRACKER_DB: Rasa reads only its
    environment, so the launcher hands on what `.env` says (the environment first)."""
    monkeypatch.delenv("ACTION_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("RASA_TRACKER_DB", raising=False)
    defaults = settings(monkeypatch, ACTIONS_HOST="10.0.0.5", JMT_VAR_DIR=str(tmp_path))
    assert launch.rasa_endpoint_environment(defaults, 5123) == {
        "ACTION_ENDPOINT_URL": "http://10.0.0.5:5123/webhook",
        "RASA_TRACKER_DB": str(tmp_path / "rasa-tracker.sqlite3"),
    }
    dotenv = {"ACTION_ENDPOINT_URL": "http://actions:9/webhook", "RASA_TRACKER_DB": "/t.db"}
    monkeypatch.setattr("casework.settings._dotenv", lambda path: dotenv)
    assert launch.rasa_endpoint_environment(defaults, 5123) == dotenv
    monkeypatch.setenv("RASA_TRACKER_DB", "/env.db")  # the environment wins over .env
    assert launch.rasa_endpoint_environment(defaults, 5123)["RASA_TRACKER_DB"] == "/env.db"


def test_make_exports_no_setting_that_would_hide_dotenvs() -> None:
    """`make run` honours `.env` (CONTRACT.md): the Makefile must not export a default for
    a setting the launcher reads, or the exported value would win over `.env`'s."""
    names = ("RASA_PORT", "ACTIONS_PORT", "GATEWAY_PORT", "ACTION_ENDPOINT_URL", "RASA_TRACKER_DB")
    clean = {k: v for k, v in os.environ.items() if k not in names and k != "MAKEFLAGS"}
    probe = subprocess.run(
        ["make", "--no-print-directory", "--eval", "probe: ; @env", "probe"],
        env=clean,
        cwd=paths.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    exported = {line.split("=", 1)[0] for line in probe.stdout.splitlines() if "=" in line}
    assert not exported & set(names), f"the Makefile exports {sorted(exported & set(names))}"
    assert "JMT_ENV" in exported  # make's targets are development (on purpose)


def test_gateway_workers_trust_forwarded_for_only_from_the_listed_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The login limit per address and the audit trail see the client behind the reverse
    proxy (X-Forwarded-For) when the proxy is listed in FORWARDED_ALLOW_IPS (`.env` too),
    and the proxy's own address from anyone else."""
    import asyncio

    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from jmt import gateway_worker

    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.setattr("casework.settings._dotenv", lambda path: {})
    default = gateway_worker.uvicorn_config("gateway.app:app", host="127.0.0.1", port=8000)
    assert (default.proxy_headers, default.forwarded_allow_ips) == (True, "127.0.0.1")
    dotenv = {"FORWARDED_ALLOW_IPS": "10.0.0.7"}
    monkeypatch.setattr("casework.settings._dotenv", lambda path: dotenv)
    config = gateway_worker.uvicorn_config("gateway.app:app", host="127.0.0.1", port=8000)

    def client_seen(peer: str) -> str:
        seen: list[str] = []

        async def app(scope, receive, send) -> None:
            seen.append(scope["client"][0])

        scope = {
            "type": "http",
            "scheme": "http",
            "client": (peer, 40000),
            "headers": [(b"x-forwarded-for", b"203.0.113.9")],
        }
        middleware = ProxyHeadersMiddleware(app, trusted_hosts=config.forwarded_allow_ips)
        asyncio.run(middleware(scope, None, None))
        return seen[0]

    assert client_seen("10.0.0.7") == "203.0.113.9"  # the listed proxy: the real client
    assert client_seen("10.0.0.8") == "10.0.0.8"  # anyone else cannot claim an address
