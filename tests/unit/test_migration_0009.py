"""Revision 0009 (SQLite and PostgreSQL): the warnings tables come and go; a delivery is
unique per (broadcast, resident)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from casework import db
from tests.unit.test_migration_0006 import _alembic

TABLES = {"warning_preferences", "warning_consents", "broadcasts", "broadcast_deliveries"}


def test_0009_goes_down_and_up_again(database_url):
    _alembic(database_url, command.downgrade, "0008")
    inspector = sa.inspect(db.get_engine(database_url))
    assert not TABLES & set(inspector.get_table_names())
    _alembic(database_url, command.upgrade, "head")
    inspector = sa.inspect(db.get_engine(database_url))
    assert TABLES <= set(inspector.get_table_names())
    unique = {
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("broadcast_deliveries")
    }
    assert ("broadcast_id", "resident_id") in unique
