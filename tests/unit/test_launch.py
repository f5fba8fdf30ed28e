"""The launcher's decisions that need no process: the stores several Rasa replicas need
(refused with what to set, or derived from DATABASE_URL/REDIS_URL), and its ports."""

from __future__ import annotations

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
