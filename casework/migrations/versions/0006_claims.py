"""Exactly one delivery (issue 10): claims with an owner and an expiry, patient retries,
one open case per resident and category.

- `outbox.claimed_by` / `claim_expires_at`: which worker sends the item, until when.
- `tickets.claimed_by` / `claim_expires_at` / `next_attempt_at` / `first_attempt_at`:
  the governance send is claimed and retried with backoff for up to 24 h.
- `cases.notify_claimed_by` / `notify_claim_expires_at` / `notify_attempts` /
  `notify_next_attempt_at` / `notify_first_attempt_at`: the same for the DingTalk
  announcement (a worker that died mid-announcement no longer leaves it pending for ever).
- `uq_cases_open_sender_category`: a partial unique index (WHERE status <> 'closed').
  Open duplicates left by the old check-then-insert race are merged first: the oldest
  stays open with every duplicate's details and the highest priority; the others are
  closed with a resolution that names it.

Rows claimed under the old scheme (outbox `sending`, case `notify_status='pending'`) get
an owner 'pre-0006' and an expiry five minutes from now: taken over then, if still there.

Revision ID: 0006
Revises: 0005
"""

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
LEGACY_OWNER = "pre-0006"
PRIORITIES = ("urgent", "high", "normal", "low")  # most urgent first
INDEX = "uq_cases_open_sender_category"
OPEN = sa.text("status <> 'closed'")

cases = sa.table(
    "cases",
    sa.column("id", sa.Integer),
    sa.column("sender_id", sa.String),
    sa.column("category", sa.String),
    sa.column("priority", sa.String),
    sa.column("status", sa.String),
    sa.column("details", sa.JSON),
    sa.column("resolution", sa.Text),
    sa.column("closed_at", TZ),
    sa.column("notify_status", sa.String),
    sa.column("notify_claimed_by", sa.String),
    sa.column("notify_claim_expires_at", TZ),
)
outbox = sa.table(
    "outbox",
    sa.column("status", sa.String),
    sa.column("claimed_by", sa.String),
    sa.column("claim_expires_at", TZ),
)


def _merge_open_duplicates(now: datetime) -> None:
    bind = op.get_bind()
    groups = bind.execute(
        sa.select(cases.c.sender_id, cases.c.category)
        .where(cases.c.status != "closed")
        .group_by(cases.c.sender_id, cases.c.category)
        .having(sa.func.count() > 1)
    ).all()
    for sender_id, category in groups:
        rows = bind.execute(
            sa.select(cases.c.id, cases.c.priority, cases.c.details)
            .where(
                cases.c.sender_id == sender_id,
                cases.c.category == category,
                cases.c.status != "closed",
            )
            .order_by(cases.c.id)
        ).all()
        kept, duplicates = rows[0], rows[1:]
        details: dict = {}
        for row in rows:
            details.update(row.details or {})
        priority = min(
            (row.priority for row in rows),
            key=lambda p: PRIORITIES.index(p) if p in PRIORITIES else len(PRIORITIES),
        )
        bind.execute(
            sa.update(cases).where(cases.c.id == kept.id).values(details=details, priority=priority)
        )
        bind.execute(
            sa.update(cases)
            .where(cases.c.id.in_([row.id for row in duplicates]))
            .values(
                status="closed",
                closed_at=now,
                resolution=f"重复案件，已并入案件 #{kept.id}（数据库迁移 0006）",
            )
        )


def upgrade() -> None:
    now = datetime.now(timezone.utc)
    with op.batch_alter_table("outbox") as table:
        table.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))
        table.add_column(sa.Column("claim_expires_at", TZ, nullable=True))
    with op.batch_alter_table("tickets") as table:
        table.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))
        table.add_column(sa.Column("claim_expires_at", TZ, nullable=True))
        table.add_column(sa.Column("next_attempt_at", TZ, nullable=True))
        table.add_column(sa.Column("first_attempt_at", TZ, nullable=True))
    with op.batch_alter_table("cases") as table:
        table.add_column(sa.Column("notify_claimed_by", sa.String(128), nullable=True))
        table.add_column(sa.Column("notify_claim_expires_at", TZ, nullable=True))
        table.add_column(
            sa.Column("notify_attempts", sa.Integer, nullable=False, server_default="0")
        )
        table.add_column(sa.Column("notify_next_attempt_at", TZ, nullable=True))
        table.add_column(sa.Column("notify_first_attempt_at", TZ, nullable=True))
    expires = now + timedelta(minutes=5)
    op.execute(
        sa.update(outbox)
        .where(outbox.c.status == "sending")
        .values(claimed_by=LEGACY_OWNER, claim_expires_at=expires)
    )
    op.execute(
        sa.update(cases)
        .where(cases.c.notify_status == "pending")
        .values(notify_claimed_by=LEGACY_OWNER, notify_claim_expires_at=expires)
    )
    _merge_open_duplicates(now)
    op.create_index(
        INDEX,
        "cases",
        ["sender_id", "category"],
        unique=True,
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="cases")
    with op.batch_alter_table("cases") as table:
        for name in (
            "notify_first_attempt_at",
            "notify_next_attempt_at",
            "notify_attempts",
            "notify_claim_expires_at",
            "notify_claimed_by",
        ):
            table.drop_column(name)
    with op.batch_alter_table("tickets") as table:
        for name in ("first_attempt_at", "next_attempt_at", "claim_expires_at", "claimed_by"):
            table.drop_column(name)
    with op.batch_alter_table("outbox") as table:
        table.drop_column("claim_expires_at")
        table.drop_column("claimed_by")
