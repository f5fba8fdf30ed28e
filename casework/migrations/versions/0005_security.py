"""Secure by default (issue 8): replay windows, login throttling, audit IPs, retention.

- `seen_nonces`: every signed request accepted within its timestamp window (WeChat
  callbacks, signed webhooks), so a captured signature cannot carry another body.
- `login_attempts`: failed logins counted atomically per (username, client IP) and per
  client IP, shared by every gateway worker.
- `audit_log.client_ip`: where an officer's request came from.
- `redacted_at` on messages, cases and tickets: when retention anonymised them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "seen_nonces",
        sa.Column("scope", sa.String(32), primary_key=True),  # wechat | governance | ...
        sa.Column("nonce_key", sa.String(255), primary_key=True),
        sa.Column("body_hash", sa.String(64), nullable=False),  # sha256 of what it signed
        sa.Column("expires_at", TZ, nullable=False),
    )
    op.create_index("ix_seen_nonces_expires_at", "seen_nonces", ["expires_at"])
    op.create_table(
        "login_attempts",
        sa.Column("key", sa.String(200), primary_key=True),  # user:<name>|<ip> or ip:<ip>
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_started_at", TZ, nullable=False),
        sa.Column("locked_until", TZ, nullable=True),
    )
    with op.batch_alter_table("audit_log") as table:
        table.add_column(sa.Column("client_ip", sa.String(64), nullable=True))
    for name in ("messages", "cases", "tickets"):
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("redacted_at", TZ, nullable=True))


def downgrade() -> None:
    for name in ("messages", "cases", "tickets"):
        with op.batch_alter_table(name) as table:
            table.drop_column("redacted_at")
    with op.batch_alter_table("audit_log") as table:
        table.drop_column("client_ip")
    op.drop_table("login_attempts")
    op.drop_index("ix_seen_nonces_expires_at", table_name="seen_nonces")
    op.drop_table("seen_nonces")
