"""Revision 0007 (SQLite and PostgreSQL): a message left 'received' under 0006 has no
turn claim after the upgrade, so the stalled-turn sweep leaves it alone (no "an officer
will reply" to an old message); the revision goes down and up again."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from casework import db, intake
from casework.clock import utcnow
from casework.conversations import conversation_for
from casework.models import Message
from tests.unit.test_migration_0006 import _alembic


def test_0007_goes_down_and_up_again_and_leaves_old_messages_unclaimed(database_url):
    with db.session_scope(database_url) as session:
        conversation_id = conversation_for(session=session, openid="o-old").id
    _alembic(database_url, command.downgrade, "0006")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "claimed_by" not in {c["name"] for c in inspector.get_columns("messages")}
    old_messages = sa.Table(
        "messages",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(c, sa.String) for c in ("direction", "msg_type", "content", "status")),
        sa.Column("conversation_id", sa.Integer),
        sa.Column("media", sa.JSON),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    with db.get_engine(database_url).begin() as connection:
        connection.execute(
            old_messages.insert().values(
                conversation_id=conversation_id,
                direction="in",
                msg_type="text",
                content="升级前没回复的消息",
                status="received",
                media={},
                created_at=utcnow() - timedelta(days=3),
            )
        )
    _alembic(database_url, command.upgrade, "head")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "ix_messages_turn_claim" in {i["name"] for i in inspector.get_indexes("messages")}
    with db.session_scope(database_url) as session:
        taken = intake.recover_stalled_turns(
            session=session, owner="w:1", now=utcnow() + timedelta(days=1), fallback="兜底"
        )
        assert taken == []
        old = session.execute(select(Message).where(Message.content == "升级前没回复的消息"))
        assert old.scalar_one().claimed_by is None
