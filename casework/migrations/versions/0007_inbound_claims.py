"""A bot turn's claim (issue 10): the worker that stored an inbound message for the bot
owns the turn until the claim expires.

- `messages.claimed_by` / `claim_expires_at`: which gateway worker is asking the bot
  about this message, until when. A worker killed mid-turn leaves the message
  'received' with an expired claim; another worker's sweep answers it with the fallback
  and opens an officer case (`casework.intake.recover_stalled_turns`), so a message
  WeChat's retries were told `success` for is never silently dropped.
- `ix_messages_turn_claim`: partial index on the expiry of turns in progress only.

Messages stored before this revision have no claim and are left alone (the sweep takes
only expired claims): answering month-old messages with "an officer will reply" would be
wrong.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEX = "ix_messages_turn_claim"
IN_PROGRESS = sa.text("status = 'received'")


def upgrade() -> None:
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))
        table.add_column(sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        INDEX,
        "messages",
        ["claim_expires_at"],
        postgresql_where=IN_PROGRESS,
        sqlite_where=IN_PROGRESS,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="messages")
    with op.batch_alter_table("messages") as table:
        table.drop_column("claim_expires_at")
        table.drop_column("claimed_by")
