"""Officers answer residents from DingTalk (issue 12): each account may carry the
DingTalk user id (staffId) of the officer, so the robot's outgoing callback can tell who
wrote.

- `users.dingtalk_id`: String(64), nullable; unique among the accounts that have one
  (a partial unique index), so one DingTalk user never speaks for two accounts.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEX = "uq_users_dingtalk_id"
BOUND = sa.text("dingtalk_id IS NOT NULL")


def upgrade() -> None:
    op.add_column("users", sa.Column("dingtalk_id", sa.String(64), nullable=True))
    op.create_index(
        INDEX, "users", ["dingtalk_id"], unique=True, postgresql_where=BOUND, sqlite_where=BOUND
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="users")
    with op.batch_alter_table("users") as table:
        table.drop_column("dingtalk_id")
