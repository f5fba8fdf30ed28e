"""Revision 0010 (SQLite and PostgreSQL): `users.dingtalk_id` comes and goes; it is
unique among the accounts that have one, and any number of accounts have none."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from casework import accounts, db
from casework.models import User
from tests.unit.test_migration_0006 import _alembic


def test_0010_goes_down_and_up_again(database_url):
    _alembic(database_url, command.downgrade, "0009")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "dingtalk_id" not in {c["name"] for c in inspector.get_columns("users")}
    _alembic(database_url, command.upgrade, "head")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "dingtalk_id" in {c["name"] for c in inspector.get_columns("users")}
    indexes = {i["name"]: i for i in inspector.get_indexes("users")}
    assert indexes["uq_users_dingtalk_id"]["unique"]


def test_one_dingtalk_id_binds_one_account_and_many_have_none(database_url):
    with db.session_scope() as session:
        for name in ("a", "b", "c"):
            accounts.create_user(
                session=session, username=name, password="long-enough", role="officer"
            )
        accounts.set_dingtalk_id(session=session, username="a", dingtalk_id="dt-1")
    with pytest.raises(IntegrityError), db.session_scope() as session:  # the index itself
        session.execute(sa.update(User).where(User.username == "b").values(dingtalk_id="dt-1"))
        session.flush()
    with db.session_scope() as session:
        bound = session.execute(sa.select(User.username, User.dingtalk_id).order_by(User.id))
        assert list(bound) == [("a", "dt-1"), ("b", None), ("c", None)]
