"""Precision dissuasion (精准劝阻) and 紧急止付 (issue 11).

- `residents.mobile` (digits only) / `mobile_consent_at` / `community`: the registered
  mobile a lead is matched by, when the resident consented to give it, and where they
  live. Nullable: nobody has given one before this revision.
- `dissuasion_leads`: what the municipal warning platform sent; (source, external_id) is
  unique, so the same lead again is a lookup, not a second task.
- `dissuasion_tasks`: one per lead (`lead_id` unique): assignee, deadline, outcome,
  amount protected (分), the fraud case opened when the person was already defrauded,
  escalation and the resident's WeChat warning (each recorded once).
- `dissuasion_attempts`: every contact attempt (phone, WeChat, visit).
- `dissuasion_notices`: DingTalk notices of a task (announce, escalate), unique per kind,
  claimed with an owner and an expiry like the case announcements of revision 0006.
- `stop_payments`: 紧急止付 requests on cases and their results (amounts in 分).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("residents") as table:
        table.add_column(sa.Column("mobile", sa.String(20), nullable=True))
        table.add_column(sa.Column("mobile_consent_at", TZ, nullable=True))
        table.add_column(sa.Column("community", sa.String(64), nullable=True))
    op.create_index("ix_residents_mobile", "residents", ["mobile"])
    op.create_index("ix_residents_community", "residents", ["community"])

    op.create_table(
        "dissuasion_leads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("address", sa.Text, nullable=True),
        sa.Column("risk_type", sa.String(32), nullable=False),
        sa.Column("risk_type_original", sa.String(64), nullable=True),
        sa.Column("risk_level", sa.String(8), nullable=False),
        sa.Column("warned_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.UniqueConstraint("source", "external_id", name="uq_dissuasion_leads_ext"),
    )
    op.create_index("ix_dissuasion_leads_phone", "dissuasion_leads", ["phone"])

    op.create_table(
        "dissuasion_tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "lead_id", sa.Integer, sa.ForeignKey("dissuasion_leads.id"), nullable=False, unique=True
        ),
        sa.Column("resident_id", sa.Integer, sa.ForeignKey("residents.id"), nullable=True),
        sa.Column("street", sa.String(64), nullable=True),
        sa.Column("community", sa.String(64), nullable=True),
        sa.Column("assignee_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("desk", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("deadline_at", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("amount_protected_fen", sa.BigInteger, nullable=True),
        sa.Column("closed_at", TZ, nullable=True),
        sa.Column("closed_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("escalated_at", TZ, nullable=True),
        sa.Column("resident_warned_at", TZ, nullable=True),
    )
    for column in ("community", "assignee_id", "status", "deadline_at"):
        op.create_index(f"ix_dissuasion_tasks_{column}", "dissuasion_tasks", [column])

    op.create_table(
        "dissuasion_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("dissuasion_tasks.id"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("reached", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("officer_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_dissuasion_attempts_task_id", "dissuasion_attempts", ["task_id"])

    op.create_table(
        "dissuasion_notices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("dissuasion_tasks.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claim_expires_at", TZ, nullable=True),
        sa.Column("next_attempt_at", TZ, nullable=True),
        sa.Column("first_attempt_at", TZ, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.UniqueConstraint("task_id", "kind", name="uq_dissuasion_notices_kind"),
    )
    op.create_index("ix_dissuasion_notices_status", "dissuasion_notices", ["status"])

    op.create_table(
        "stop_payments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("bank", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("frozen_fen", sa.BigInteger, nullable=True),
        sa.Column("recovered_fen", sa.BigInteger, nullable=True),
        sa.Column("result_at", TZ, nullable=True),
        sa.Column("requested_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("result_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_stop_payments_case_id", "stop_payments", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_stop_payments_case_id", table_name="stop_payments")
    op.drop_table("stop_payments")
    op.drop_index("ix_dissuasion_notices_status", table_name="dissuasion_notices")
    op.drop_table("dissuasion_notices")
    op.drop_index("ix_dissuasion_attempts_task_id", table_name="dissuasion_attempts")
    op.drop_table("dissuasion_attempts")
    for column in ("community", "assignee_id", "status", "deadline_at"):
        op.drop_index(f"ix_dissuasion_tasks_{column}", table_name="dissuasion_tasks")
    op.drop_table("dissuasion_tasks")
    op.drop_index("ix_dissuasion_leads_phone", table_name="dissuasion_leads")
    op.drop_table("dissuasion_leads")
    op.drop_index("ix_residents_community", table_name="residents")
    op.drop_index("ix_residents_mobile", table_name="residents")
    with op.batch_alter_table("residents") as table:
        table.drop_column("community")
        table.drop_column("mobile_consent_at")
        table.drop_column("mobile")
