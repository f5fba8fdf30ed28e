"""Officers take over: routing and handling of cases, notes, audit, ticket loop, ratings.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cases") as table:
        table.add_column(sa.Column("street", sa.String(64), nullable=True))
        table.add_column(sa.Column("community", sa.String(64), nullable=True))
        table.add_column(sa.Column("assigned_to_id", sa.Integer, nullable=True))
        table.add_column(sa.Column("claimed_by_id", sa.Integer, nullable=True))
        table.add_column(sa.Column("claimed_at", TZ, nullable=True))
        table.add_column(sa.Column("due_at", TZ, nullable=True))
        table.add_column(sa.Column("first_reply_at", TZ, nullable=True))
        table.add_column(sa.Column("closed_at", TZ, nullable=True))
        table.add_column(sa.Column("resolution", sa.Text, nullable=True))
        table.add_column(sa.Column("rating", sa.Integer, nullable=True))
        table.add_column(sa.Column("rating_requested_at", TZ, nullable=True))
        table.add_column(sa.Column("original_category", sa.String(32), nullable=True))
        table.add_column(sa.Column("notify_status", sa.String(16), nullable=True))
        table.add_column(sa.Column("notify_error", sa.Text, nullable=True))
        table.create_index("ix_cases_community", ["community"])
        table.create_foreign_key("fk_cases_assigned_to", "users", ["assigned_to_id"], ["id"])
        table.create_foreign_key("fk_cases_claimed_by", "users", ["claimed_by_id"], ["id"])
    with op.batch_alter_table("tickets") as table:
        table.add_column(sa.Column("street", sa.String(64), nullable=True))
        table.add_column(sa.Column("community", sa.String(64), nullable=True))
        table.add_column(sa.Column("case_id", sa.Integer, nullable=True))
        table.add_column(sa.Column("linked_to_id", sa.Integer, nullable=True))
        table.add_column(sa.Column("sent_at", TZ, nullable=True))
        table.add_column(sa.Column("send_attempts", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("send_error", sa.Text, nullable=True))
        table.add_column(sa.Column("status_note", sa.Text, nullable=True))
        table.add_column(sa.Column("due_at", TZ, nullable=True))
        table.add_column(sa.Column("resolved_at", TZ, nullable=True))
        table.create_index("ix_tickets_community", ["community"])
        table.create_foreign_key("fk_tickets_case", "cases", ["case_id"], ["id"])
        table.create_foreign_key("fk_tickets_linked_to", "tickets", ["linked_to_id"], ["id"])
    with op.batch_alter_table("conversations") as table:
        table.add_column(sa.Column("awaiting_rating_case_id", sa.Integer, nullable=True))
        table.create_foreign_key(
            "fk_conversations_rating_case", "cases", ["awaiting_rating_case_id"], ["id"]
        )
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("display_name", sa.String(64), nullable=True))
        table.add_column(sa.Column("mobile", sa.String(20), nullable=True))
        table.add_column(
            sa.Column("on_duty", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_table(
        "case_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("author_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("actor_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("action", sa.String(32), nullable=False, index=True),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("target_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("case_notes")
    with op.batch_alter_table("users") as table:
        for column in ("on_duty", "mobile", "display_name"):
            table.drop_column(column)
    with op.batch_alter_table("conversations") as table:
        table.drop_constraint("fk_conversations_rating_case", type_="foreignkey")
        table.drop_column("awaiting_rating_case_id")
    with op.batch_alter_table("tickets") as table:
        table.drop_constraint("fk_tickets_linked_to", type_="foreignkey")
        table.drop_constraint("fk_tickets_case", type_="foreignkey")
        table.drop_index("ix_tickets_community")
        for column in (
            "resolved_at",
            "due_at",
            "status_note",
            "send_error",
            "send_attempts",
            "sent_at",
            "linked_to_id",
            "case_id",
            "community",
            "street",
        ):
            table.drop_column(column)
    with op.batch_alter_table("cases") as table:
        table.drop_constraint("fk_cases_claimed_by", type_="foreignkey")
        table.drop_constraint("fk_cases_assigned_to", type_="foreignkey")
        table.drop_index("ix_cases_community")
        for column in (
            "notify_error",
            "notify_status",
            "original_category",
            "rating_requested_at",
            "rating",
            "resolution",
            "closed_at",
            "first_reply_at",
            "due_at",
            "claimed_at",
            "claimed_by_id",
            "assigned_to_id",
            "community",
            "street",
        ):
            table.drop_column(column)
