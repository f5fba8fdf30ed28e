"""The trainers' NLU inbox: what a trainer decided about a resident's message.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "nlu_annotations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("text", sa.Text, nullable=False),  # the masked text the offsets refer to
        sa.Column("intent", sa.String(100), nullable=True),  # None when discarded
        sa.Column("entities", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # annotated | discarded
        sa.Column("annotator_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("exported_at", TZ, nullable=True),
        sa.UniqueConstraint("message_id", name="uq_nlu_annotations_message_id"),
    )
    op.create_index("ix_nlu_annotations_status", "nlu_annotations", ["status"])


def downgrade() -> None:
    op.drop_index("ix_nlu_annotations_status", table_name="nlu_annotations")
    op.drop_table("nlu_annotations")
