"""Whether the database answers, for /healthz."""

from __future__ import annotations

from sqlalchemy import text

from casework import db


def database_state(database_url: str | None) -> str:
    """ "ok", or "down: <error type>" — reported, never raised (a probe must answer)."""
    try:
        with db.session_scope(database_url) as session:
            session.execute(text("select 1"))
    except Exception as error:  # noqa: BLE001 — report, never raise
        return f"down: {type(error).__name__}"
    return "ok"
