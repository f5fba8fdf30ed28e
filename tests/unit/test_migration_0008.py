"""Revision 0008 (SQLite and PostgreSQL): the dissuasion tables and the residents' mobile
columns come and go; a resident stored before the revision has no mobile afterwards."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from casework import db
from casework.conversations import conversation_for
from casework.models import Resident
from tests.unit.test_migration_0006 import _alembic

TABLES = {
    "dissuasion_leads",
    "dissuasion_tasks",
    "dissuasion_attempts",
    "dissuasion_notices",
    "stop_payments",
}


def test_0008_goes_down_and_up_again(database_url):
    with db.session_scope(database_url) as session:
        conversation_for(session=session, openid="o-before-0008")
    _alembic(database_url, command.downgrade, "0007")
    inspector = sa.inspect(db.get_engine(database_url))
    assert not TABLES & set(inspector.get_table_names())
    assert "mobile" not in {c["name"] for c in inspector.get_columns("residents")}
    _alembic(database_url, command.upgrade, "head")
    inspector = sa.inspect(db.get_engine(database_url))
    assert TABLES <= set(inspector.get_table_names())
    unique = {
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("dissuasion_leads")
    }
    assert ("source", "external_id") in unique
    with db.session_scope(database_url) as session:
        resident = session.execute(sa.select(Resident)).scalar_one()
        assert (resident.mobile, resident.mobile_consent_at, resident.community) == (
            None,
            None,
            None,
        )
