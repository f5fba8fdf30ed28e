"""Warnings (预警推送, issue 11): residents' warning preferences and broadcasts.

- `warning_preferences`: one row per resident who chose topics or left (退订); no row
  means every topic, not opted out.
- `warning_consents`: every change of those preferences, with the wording and the time.
- `broadcasts`: a warning composed in the console, its audience, state and figures.
- `broadcast_deliveries`: one per (broadcast, resident) — UNIQUE, so a resident gets a
  broadcast at most once across restarts and workers — claimed with an owner and an
  expiry like the outbox.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "warning_preferences",
        sa.Column("resident_id", sa.Integer, sa.ForeignKey("residents.id"), primary_key=True),
        sa.Column("topics", sa.String(200), nullable=True),
        sa.Column("warnings_opted_out_at", TZ, nullable=True),
        sa.Column("consent_text", sa.Text, nullable=True),
        sa.Column("consent_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "warning_consents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("resident_id", sa.Integer, sa.ForeignKey("residents.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("topics", sa.String(200), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_warning_consents_resident_id", "warning_consents", ["resident_id"])
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("topic", sa.String(16), nullable=False),
        sa.Column("title", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("audience", sa.JSON, nullable=False),
        sa.Column("community", sa.String(64), nullable=True),
        sa.Column("send_at", TZ, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("pause_reason", sa.Text, nullable=True),
        sa.Column("figures", sa.JSON, nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claim_expires_at", TZ, nullable=True),
    )
    op.create_index("ix_broadcasts_send_at", "broadcasts", ["send_at"])
    op.create_index("ix_broadcasts_status", "broadcasts", ["status"])
    op.create_index("ix_broadcasts_community", "broadcasts", ["community"])
    op.create_table(
        "broadcast_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("broadcast_id", sa.Integer, sa.ForeignKey("broadcasts.id"), nullable=False),
        sa.Column("resident_id", sa.Integer, sa.ForeignKey("residents.id"), nullable=False),
        sa.Column("community", sa.String(64), nullable=True),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("wechat_msgid", sa.String(64), nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claim_expires_at", TZ, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TZ, nullable=True),
        sa.Column("sent_at", TZ, nullable=True),
        sa.UniqueConstraint("broadcast_id", "resident_id", name="uq_broadcast_deliveries_resident"),
    )
    op.create_index(
        "ix_broadcast_deliveries_queue", "broadcast_deliveries", ["broadcast_id", "status"]
    )
    op.create_index("ix_broadcast_deliveries_resident_id", "broadcast_deliveries", ["resident_id"])
    op.create_index(
        "ix_broadcast_deliveries_wechat_msgid", "broadcast_deliveries", ["wechat_msgid"]
    )


def downgrade() -> None:
    op.drop_table("broadcast_deliveries")
    op.drop_table("broadcasts")
    op.drop_index("ix_warning_consents_resident_id", table_name="warning_consents")
    op.drop_table("warning_consents")
    op.drop_table("warning_preferences")
