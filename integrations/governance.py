"""The governance platform (区级治理指挥中心 / 街道综治): tickets out, status callbacks in.

Both directions use the signed-webhook scheme of `integrations.signed_webhooks`
(timestamp, nonce, method and path under the HMAC), each with its own secret: our tickets
are signed with `GOVERNANCE_SECRET`, the platform's status callbacks with
`GOVERNANCE_CALLBACK_SECRET` (checked by `gateway/routes/webhooks.py`). One leaked secret
then cannot forge the other direction.

- `GovernanceClient.send_ticket` POSTs one ticket and classifies failures: 5xx, 408, 429,
  timeouts and refused connections are transient, other 4xx and redirects permanent.
  It does not retry: the ticket loop tries again later.
- What a ticket carries is decided by `casework.tickets.payload` (no raw phone, ID-card
  or bank-card numbers of the resident).
- Development's `GOVERNANCE_WEBHOOK_URL` points at the simulator's stand-in
  (`gateway/simulator/partners.py`), which verifies the signature the same way.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from casework.privacy import mask_pii
from integrations.signed_webhooks import signed_headers

logger = logging.getLogger(__name__)

TRANSIENT_4XX = {408, 429}  # request timeout, too many requests: worth trying again


class GovernanceError(Exception):
    """The ticket was not accepted; `permanent` means sending it again cannot help."""

    def __init__(self, message: str, *, permanent: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status_code = status_code


class GovernanceClient:
    """Sends tickets to the governance platform's webhook."""

    def __init__(self, webhook_url: str, secret: str, *, timeout: float = 5.0) -> None:
        self.webhook_url = webhook_url
        self.secret = secret
        self.timeout = timeout
        self.session = requests.Session()
        # The platform verifies the path it was called on (what its server sees).
        self.path = urlsplit(webhook_url).path or "/"

    def send_ticket(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one ticket; the platform's JSON answer (or {}), else GovernanceError."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        ticket = payload.get("id", "?")
        started = time.monotonic()
        try:
            response = self.session.post(
                self.webhook_url,
                data=body,
                headers=signed_headers(
                    secret=self.secret, method="POST", path=self.path, body=body
                ),
                timeout=self.timeout,
                allow_redirects=False,  # requests would turn a redirected POST into a GET
            )
        except requests.RequestException as error:  # timeouts, refused connections
            logger.warning("governance ticket %s: %s", ticket, type(error).__name__)
            raise GovernanceError(f"network: {type(error).__name__}", permanent=False) from error
        status = response.status_code
        if 200 <= status < 300:
            logger.info(
                "governance ticket %s sent: HTTP %d in %.0f ms",
                ticket,
                status,
                (time.monotonic() - started) * 1000,
            )
            try:
                answer = response.json()
            except ValueError:
                return {}
            return answer if isinstance(answer, dict) else {}
        permanent = status < 500 and status not in TRANSIENT_4XX
        detail = mask_pii(response.text[:200].strip())
        logger.warning(
            "governance ticket %s refused: HTTP %d%s %s",
            ticket,
            status,
            " (permanent)" if permanent else "",
            detail,
        )
        message = f"HTTP {status}" + (f": {detail}" if detail else "")
        raise GovernanceError(message, permanent=permanent, status_code=status)


def client_from_settings(settings: Any) -> GovernanceClient | None:
    """The configured client, or None without GOVERNANCE_WEBHOOK_URL and
    GOVERNANCE_SECRET (unsigned tickets are never sent)."""
    url = getattr(settings, "governance_webhook_url", None)
    secret = getattr(settings, "governance_secret", None)
    if not url:
        return None
    if not secret:
        logger.warning("GOVERNANCE_WEBHOOK_URL set without GOVERNANCE_SECRET: tickets stay queued")
        return None
    return GovernanceClient(url, secret)
