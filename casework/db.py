"""The one database engine and session factory, and schema migrations (Alembic)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from casework.settings import get_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Bound values are residents' words, openids and numbers: an SQL error (logged, or shown
# in a traceback) must name the statement, never the values.
HIDE_PARAMETERS = True


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """One engine per database URL for the life of the process (created lazily)."""
    url = url or get_settings().database_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # FastAPI runs sync dependencies and async routes on different threads; a session
        # is still used by one request at a time, so sharing the connection is safe.
        return create_engine(
            url,
            future=True,
            hide_parameters=HIDE_PARAMETERS,
            connect_args={"check_same_thread": False},
        )
    return create_engine(url, future=True, pool_pre_ping=True, hide_parameters=HIDE_PARAMETERS)


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker:
    return sessionmaker(bind=get_engine(url), future=True, expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session: Session = _session_factory(url or get_settings().database_url)()
    try:
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
