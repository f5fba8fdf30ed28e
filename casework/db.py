"""The one database engine and session factory, and schema migrations (Alembic)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from casework.settings import get_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Bound values are residents' words, openids and numbers: an SQL error (logged, or shown
# in a traceback) must name the statement, never the values.
HIDE_PARAMETERS = True


# Every engine this process made, so `dispose_engines` can close their pooled
# connections (clearing the caches alone leaves them open until garbage collection: a
# test suite that makes an engine per PostgreSQL schema ran the server out of clients).
_MADE: list[Engine] = []


def dispose_engines() -> None:
    """Close every pooled connection and forget the engines (tests, between databases)."""
    get_engine.cache_clear()
    foreign_engine.cache_clear()
    _session_factory.cache_clear()
    while _MADE:
        _MADE.pop().dispose()


def _made(engine: Engine) -> Engine:
    _MADE.append(engine)
    return engine


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """One engine per database URL for the life of the process (created lazily)."""
    url = url or get_settings().database_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # FastAPI runs sync dependencies and async routes on different threads; a session
        # is still used by one request at a time, so sharing the connection is safe.
        # Pooled, not SQLAlchemy 1.4's default NullPool for SQLite files: opening and
        # closing the file for every session cost ~20 ms a transaction (issue 10).
        engine = create_engine(
            url,
            future=True,
            hide_parameters=HIDE_PARAMETERS,
            connect_args={"check_same_thread": False},
            poolclass=QueuePool,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return _made(engine)
    return _made(
        create_engine(url, future=True, pool_pre_ping=True, hide_parameters=HIDE_PARAMETERS)
    )


@lru_cache(maxsize=4)
def foreign_engine(url: str) -> Engine:
    """An engine for another program's database (Rasa's SQL tracker store): pooled, and
    without our SQLite pragmas — its journal mode is that program's business."""
    if url.startswith("sqlite:///"):
        return _made(
            create_engine(
                url,
                future=True,
                hide_parameters=HIDE_PARAMETERS,
                connect_args={"check_same_thread": False},
                poolclass=QueuePool,
            )
        )
    return _made(
        create_engine(url, future=True, pool_pre_ping=True, hide_parameters=HIDE_PARAMETERS)
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL, SQLite's recommended set-up for an application
    database: readers no longer block the writer, and a commit costs no fsync (the WAL is
    synced at checkpoints), where the default rollback journal cost two or more per commit
    (~20 ms each on this disk). The file stays consistent after any crash; a power loss
    may undo the last commits before a checkpoint. Deployments that need more use
    PostgreSQL (DATABASE_URL)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker:
    return sessionmaker(bind=get_engine(url), future=True, expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None, *, durable: bool = True) -> Iterator[Session]:
    """A session that commits on success and rolls back on error. `durable=False` is for
    records that may be lost in a database crash without harm (a passive reply already
    sent, a parse kept for trainers): on PostgreSQL the commit then does not wait for the
    WAL flush (`synchronous_commit = off` for this transaction only; the database stays
    consistent, only the last few hundred ms of such commits can be lost on a crash)."""
    session: Session = _session_factory(url or get_settings().database_url)()
    try:
        if not durable and session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # configparser interpolates %; URLs may contain %-escapes (options=-csearch_path%3D...)
    config.set_main_option(
        "sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%")
    )
    return config


def migrate(url: str | None = None) -> None:
    """Bring the schema up to date (idempotent; safe to run at every start)."""
    url = url or get_settings().database_url
    with get_engine(url).begin() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
