"""The audit trail: every officer action and every read of a resident's words.

One writer (`record`) so every entry has the same shape: who (`actor`, None for the
system), what (`action`), which record (`target_type`, `target_id`), from where
(`client_ip`) and any detail. Entries are never anonymised by retention.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from casework.models import AuditEntry, User


def record(
    session: Session,
    actor: User | None,
    action: str,
    target_type: str,
    target_id: int | None,
    *,
    client_ip: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEntry(
            actor_id=actor.id if actor else None,
            action=action,
            target_type=target_type,
            target_id=target_id,
            client_ip=client_ip[:64] if client_ip else None,
            detail=detail,
        )
    )
