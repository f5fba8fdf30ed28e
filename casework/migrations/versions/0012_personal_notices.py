"""Personal DingTalk work notifications and the urgent-case escalation (issue 12).

- `cases.escalated_at`: when an urgent case still unclaimed after its response target
  was re-notified to the commanders; set once by one conditional UPDATE
  (`casework.dispatch.escalate_unclaimed`), so a case is escalated at most once.
- `case_notices`: one DingTalk message to send about a case besides its group
  announcement (which stays on `cases.notify_*`): a personal work notification to one
  officer (`channel` personal, `recipient` = the officer's DingTalk user id) for the
  announcement or the escalation, or the escalation's group message (`channel` group,
  `recipient` ''). UNIQUE (case_id, kind, channel, recipient): one delivery per case per
  officer and kind, whatever the number of workers. Claimed with an owner and an expiry
  and retried with backoff like every other send (`casework.claims`).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cases") as table:
        table.add_column(sa.Column("escalated_at", TZ, nullable=True))
    op.create_table(
        "case_notices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claim_expires_at", TZ, nullable=True),
        sa.Column("next_attempt_at", TZ, nullable=True),
        sa.Column("first_attempt_at", TZ, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.UniqueConstraint(
            "case_id", "kind", "channel", "recipient", name="uq_case_notices_recipient"
        ),
    )
    op.create_index("ix_case_notices_status", "case_notices", ["status"])


def downgrade() -> None:
    op.drop_index("ix_case_notices_status", table_name="case_notices")
    op.drop_table("case_notices")
    with op.batch_alter_table("cases") as table:
        table.drop_column("escalated_at")
