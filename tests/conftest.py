"""Shared fixtures: a real database per test (SQLite always; PostgreSQL when reachable),
and the local Redis (TEST_REDIS_URL) for what is shared through it.

PostgreSQL tests read TEST_DATABASE_URL (default: the local server's `test` database) and
run in a schema of their own that is dropped afterwards. They skip with the reason when
the server is unreachable — except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

# Tests are development unless a test says otherwise (unset JMT_ENV means production).
os.environ.setdefault("JMT_ENV", "development")

from actions import records  # noqa: E402
from casework import db  # noqa: E402
from casework.settings import get_settings  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _reset_caches() -> None:
    db.dispose_engines()  # the previous test's pooled connections, closed now
    get_settings.cache_clear()
    records._schema_ready.cache_clear()


def _postgres_schema_url() -> Iterator[str]:
    base = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    try:
        engine = sa.create_engine(base, future=True)
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except Exception as error:  # noqa: BLE001 — any failure to connect means "unreachable"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {base} is unreachable under CI=true: {error}")
        pytest.skip(f"PostgreSQL at {base} is unreachable: {error}")
    schema = f"jmt_test_{uuid.uuid4().hex[:10]}"
    with engine.begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        db.dispose_engines()  # close the pools' connections, not only forget the engines
        with engine.begin() as connection:
            connection.execute(sa.text(f'drop schema "{schema}" cascade'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, monkeypatch) -> Iterator[str]:
    """A migrated, empty database on each backend; DATABASE_URL points at it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jmt.sqlite3'}"
        urls: Iterator[str] = iter([url])
    else:
        urls = _postgres_schema_url()
    url = next(urls)
    monkeypatch.setenv("DATABASE_URL", url)
    _reset_caches()
    db.migrate(url)
    yield url
    next(urls, None)  # runs the generator's cleanup
    _reset_caches()


@pytest.fixture
def sqlite_url(tmp_path, monkeypatch) -> Iterator[str]:
    """A migrated SQLite database (for tests that are not about the backend)."""
    url = f"sqlite:///{tmp_path / 'jmt.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    _reset_caches()
    db.migrate(url)
    yield url
    _reset_caches()


DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The local Redis (TEST_REDIS_URL, default database 15). Skips with the reason when
    unreachable — except under CI=true, where that is a failure. Tests write under
    `redis_prefix`, which is cleaned up afterwards."""
    import redis

    url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS)
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {url} is unreachable under CI=true: {error}")
        pytest.skip(f"Redis at {url} is unreachable: {error}")
    yield url
    client.close()


@pytest.fixture
def redis_prefix(redis_url) -> Iterator[str]:
    """A key prefix of this test's own in the test Redis, cleaned up afterwards."""
    import redis

    prefix = f"jmt-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()
