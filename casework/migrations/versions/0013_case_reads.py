"""Unread counts in the queue (issue 12): how far each officer has read each case.

- `case_reads(case_id, user_id, last_read_message_id, read_at)`: one row per officer and
  case, unique on the pair, written by an upsert when the officer opens the case or
  replies to it. A case's unread count is the resident's inbound messages after the
  highest marker the officer holds on any case of that resident (the case view shows the
  whole conversation).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_reads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("last_read_message_id", sa.Integer, nullable=False, server_default="0"),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("case_id", "user_id", name="uq_case_reads_case_user"),
    )
    op.create_index("ix_case_reads_user_id", "case_reads", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_case_reads_user_id", table_name="case_reads")
    op.drop_table("case_reads")
