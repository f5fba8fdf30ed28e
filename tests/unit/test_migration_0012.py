"""Revision 0012 (SQLite and PostgreSQL): `cases.escalated_at` and `case_notices` come and
go; one notice per case, kind, channel and recipient."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from casework import db
from casework.cases import open_case
from casework.models import CaseNotice
from tests.unit.test_migration_0006 import _alembic


def test_0012_goes_down_and_up_again(database_url):
    _alembic(database_url, command.downgrade, "0011")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "case_notices" not in inspector.get_table_names()
    assert "escalated_at" not in {c["name"] for c in inspector.get_columns("cases")}
    _alembic(database_url, command.upgrade, "head")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "escalated_at" in {c["name"] for c in inspector.get_columns("cases")}
    assert {"recipient", "claimed_by", "claim_expires_at"} <= {
        c["name"] for c in inspector.get_columns("case_notices")
    }


def test_one_notice_per_case_kind_channel_and_recipient(database_url):
    with db.session_scope() as session:
        case = open_case(
            session=session,
            sender_id="o-m12",
            category="other",
            priority="normal",
            reason="test",
            summary="x",
        )
        for recipient in ("dt-1", "dt-2", ""):
            session.add(
                CaseNotice(
                    case_id=case.id, kind="announce", channel="personal", recipient=recipient
                )
            )
        session.add(
            CaseNotice(case_id=case.id, kind="escalate", channel="personal", recipient="dt-1")
        )
        case_id = case.id
    with pytest.raises(IntegrityError), db.session_scope() as session:
        session.add(
            CaseNotice(case_id=case_id, kind="announce", channel="personal", recipient="dt-1")
        )
        session.flush()
