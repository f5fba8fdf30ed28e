"""`INSERT … ON CONFLICT` for the two databases the project runs on.

SQLAlchemy has the construct per dialect (`postgresql.insert`, `sqlite.insert`; SQLite
3.24+ understands the clause). Storing an inbound message and remembering a nonce use it
instead of a savepoint and a caught IntegrityError: one statement where that took three
or four round trips (issue 10).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session, table: Table) -> Any:
    """An insert of `table` with `on_conflict_do_nothing` / `on_conflict_do_update`, for
    the database `session` is bound to."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no INSERT … ON CONFLICT for {dialect}")
