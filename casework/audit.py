"""The audit trail: every officer action and every read of a resident's words.

One writer (`record`) so every entry has the same shape: who (`actor`, None for the
system), what (`action`), which record (`target_type`, `target_id`), from where
(`client_ip`) and any detail. Entries are never anonymised by retention.

The client's address: a caller may pass it; otherwise the address of the HTTP request
being served (`CLIENT_IP`, set by the gateway's request middleware for every request),
so every officer action — a claim, a reply, a transfer — says where it came from
without each route and service threading it through. Outside a request (background
loops, the CLI) it stays empty.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlalchemy.orm import Session

from casework.models import AuditEntry, User

CLIENT_IP: ContextVar[str | None] = ContextVar("jmt_client_ip", default=None)


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
    client_ip = client_ip or CLIENT_IP.get()
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
