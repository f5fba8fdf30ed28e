"""Revision 0006 on a database that has lived under 0005 (SQLite and PostgreSQL): open
duplicate cases are merged before the unique index, work claimed under the old scheme
gets an owner and an expiry, and the revision goes down and up again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from casework import db, dispatch, outbox
from casework.models import Case, OutboxItem

NOW = datetime.now(timezone.utc)
TZ = sa.DateTime(timezone=True)


def _alembic(url: str, action, revision: str) -> None:
    with db.get_engine(url).begin() as connection:
        config = db.alembic_config(url)
        config.attributes["connection"] = connection
        action(config, revision)


def _table(name: str, *columns: sa.Column) -> sa.Table:
    return sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), *columns)


OLD_CASES = _table(
    "cases",
    *(sa.Column(c, sa.String) for c in ("sender_id", "category", "priority", "status")),
    *(sa.Column(c, sa.String) for c in ("reason", "summary", "notify_status")),
    sa.Column("details", sa.JSON),
    sa.Column("created_at", TZ),
    sa.Column("updated_at", TZ),
)


def _old_case(connection, sender: str, priority: str, status: str = "open", **extra) -> int:
    values = dict(
        sender_id=sender,
        category="fraud_suspicion",
        priority=priority,
        status=status,
        reason="money_lost",
        summary="被骗",
        created_at=NOW,
        updated_at=NOW,
        details=extra.pop("details", {}),
        **extra,
    )
    return int(connection.execute(sa.insert(OLD_CASES).values(**values)).inserted_primary_key[0])


def _old_outbox_item(connection) -> int:
    stamp = {"created_at": NOW}
    resident = connection.execute(
        sa.insert(_table("residents", sa.Column("openid", sa.String), *_cols("subscribed"))),
        {"openid": "o-old", "subscribed": True, **stamp, "last_seen_at": NOW},
    ).inserted_primary_key[0]
    conversation = connection.execute(
        sa.insert(_table("conversations", *_cols("resident_id", "openid", "owner"))),
        {"resident_id": resident, "openid": "o-old", "owner": "bot", **stamp, "updated_at": NOW},
    ).inserted_primary_key[0]
    message = connection.execute(
        sa.insert(_table("messages", *_cols("conversation_id", "direction", "msg_type"))),
        {
            "conversation_id": conversation,
            "direction": "out",
            "msg_type": "text",
            "content": "旧消息",
            "media": {},
            "status": "queued",
            **stamp,
        },
    ).inserted_primary_key[0]
    return int(
        connection.execute(
            sa.insert(_table("outbox", *_cols("message_id", "openid", "text", "status"))),
            {
                "message_id": message,
                "openid": "o-old",
                "text": "旧消息",
                "status": "sending",  # claimed by a worker of the old version
                "attempts": 1,
                "next_attempt_at": NOW,
                **stamp,
            },
        ).inserted_primary_key[0]
    )


def _cols(*names: str) -> list[sa.Column]:
    """Loosely typed columns: enough for Core to bind whatever the test inserts."""
    types = {"subscribed": sa.Boolean, "resident_id": sa.Integer, "conversation_id": sa.Integer}
    types |= {"message_id": sa.Integer, "attempts": sa.Integer, "media": sa.JSON}
    stamps = ("created_at", "updated_at", "last_seen_at", "next_attempt_at")
    others = ("content", "media", "status", "attempts")
    return [
        sa.Column(n, types.get(n, TZ if n in stamps else sa.String))
        for n in dict.fromkeys((*names, *stamps, *others))
    ]


def test_upgrading_from_0005_merges_duplicates_and_gives_old_claims_an_expiry(database_url):
    _alembic(database_url, command.downgrade, "0005")
    with db.get_engine(database_url).begin() as connection:
        oldest = _old_case(connection, "o-dup", "normal", details={"amount_yuan": 500})
        newer = _old_case(connection, "o-dup", "urgent", details={"payment_method": "微信"})
        closed = _old_case(connection, "o-dup", "low", status="closed")
        stuck = _old_case(connection, "o-stuck", "high", notify_status="pending")
        item_id = _old_outbox_item(connection)
    _alembic(database_url, command.upgrade, "head")
    with db.session_scope() as session:
        kept, merged, untouched = (session.get(Case, i) for i in (oldest, newer, closed))
        assert (kept.status, kept.priority) == ("open", "urgent")
        assert kept.details == {"amount_yuan": 500, "payment_method": "微信"}
        assert merged.status == "closed" and f"#{oldest}" in merged.resolution
        assert untouched.resolution is None
        pending = session.get(Case, stuck)
        assert (pending.notify_status, pending.notify_claimed_by) == ("pending", "pre-0006")
        item = session.get(OutboxItem, item_id)
        assert (item.status, item.claimed_by) == ("sending", "pre-0006")
    later = datetime.now(timezone.utc) + timedelta(minutes=6)
    with db.session_scope() as session:  # an old worker's claims are taken over in time
        assert [c.id for c in outbox.claim_due(session=session, owner="new:1", now=later)] == [
            item_id
        ]
        routed = dispatch.route_new_cases(
            session=session, can_notify=True, owner="new:1", now=later
        )
        assert [r.id for r in routed] == [oldest, stuck]  # never announced, and the stuck one
    with db.session_scope() as session:
        rows = session.execute(
            select(Case.id).where(Case.sender_id == "o-dup", Case.status != "closed")
        ).all()
        assert [r.id for r in rows] == [oldest]


def test_0006_goes_down_and_up_again(database_url):
    _alembic(database_url, command.downgrade, "0005")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "claimed_by" not in {c["name"] for c in inspector.get_columns("outbox")}
    _alembic(database_url, command.upgrade, "head")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "uq_cases_open_sender_category" in {i["name"] for i in inspector.get_indexes("cases")}
