"""Officers stay signed in safely (issue 12): server-side console sessions, and a line
after which a user's bearer tokens no longer count.

- `console_sessions`: one row per browser sign-in. `id` is the SHA-256 of the random
  token the browser holds in its HttpOnly cookie (a read of the table hands out no live
  session); `last_seen_at` drives the idle expiry, `expires_at` is the absolute one,
  `revoked_at` is set by a logout; client IP and user agent let officers recognise
  their own devices.
- `users.tokens_valid_after`: "log out everywhere" — bearer tokens issued before it are
  refused.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(64), primary_key=True),  # sha256 hex of the cookie's token
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),  # absolute: SESSION_MAX_HOURS
        sa.Column("revoked_at", TZ, nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(255), nullable=True),
    )
    op.create_index("ix_console_sessions_user_id", "console_sessions", ["user_id"])
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("tokens_valid_after", TZ, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.drop_column("tokens_valid_after")
    op.drop_index("ix_console_sessions_expires_at", table_name="console_sessions")
    op.drop_index("ix_console_sessions_user_id", table_name="console_sessions")
    op.drop_table("console_sessions")
