"""Session set-up that the gateway's speed rests on (issue 10): SQLite pooled and in WAL
with synchronous=NORMAL; on PostgreSQL, `durable=False` commits without waiting for the
WAL flush, for that transaction only."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from casework import db


def test_commit_durability_per_session(database_url):
    if database_url.startswith("sqlite"):
        assert isinstance(db.get_engine(database_url).pool, QueuePool)
        with db.session_scope(database_url) as session:
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        return
    with db.session_scope(database_url, durable=False) as session:
        assert session.execute(text("SHOW synchronous_commit")).scalar() == "off"
    with db.session_scope(database_url) as session:  # SET LOCAL ended with that transaction
        assert session.execute(text("SHOW synchronous_commit")).scalar() == "on"


def test_another_programs_sqlite_file_keeps_its_journal_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'rasa-tracker.sqlite3'}"
    with db.foreign_engine(url).connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "delete"
