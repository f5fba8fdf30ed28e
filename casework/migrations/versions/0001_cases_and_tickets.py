"""Cases (hand-offs) and diversion tickets.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sender_id", sa.String(128), nullable=False, index=True),
        sa.Column("category", sa.String(32), nullable=False, index=True),
        sa.Column("priority", sa.String(16), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("desk", sa.String(16), nullable=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("location", sa.Text, nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sender_id", sa.String(128), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("location", sa.Text, nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        *_timestamps(),
    )


def downgrade() -> None:
    op.drop_table("tickets")
    op.drop_table("cases")
