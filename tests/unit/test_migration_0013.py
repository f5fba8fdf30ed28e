"""Revision 0013 (SQLite and PostgreSQL): `case_reads` comes and goes; one marker per
officer and case (the unique pair the upsert relies on)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from casework import accounts, db
from casework.cases import open_case
from casework.clock import utcnow
from casework.models import CaseRead
from tests.unit.test_migration_0006 import _alembic


def test_0013_goes_down_and_up_again(database_url):
    _alembic(database_url, command.downgrade, "0012")
    assert "case_reads" not in sa.inspect(db.get_engine(database_url)).get_table_names()
    _alembic(database_url, command.upgrade, "head")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "case_reads" in inspector.get_table_names()
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("case_reads")}
    assert ("case_id", "user_id") in unique


def test_one_marker_per_officer_and_case(database_url):
    with db.session_scope() as session:
        user = accounts.create_user(
            session=session, username="zhang", password="long-enough", role="officer"
        )
        case = open_case(
            session=session,
            sender_id="o-reads",
            category="other",
            priority="normal",
            reason="test",
            summary="测试",
        )
        session.add(CaseRead(case_id=case.id, user_id=user.id, last_read_message_id=3))
        session.flush()
        ids = (case.id, user.id)
    with pytest.raises(IntegrityError), db.session_scope() as session:
        session.add(CaseRead(case_id=ids[0], user_id=ids[1], read_at=utcnow()))
        session.flush()
