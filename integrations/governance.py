"""The governance platform (区级治理指挥中心 / 街道综治): tickets out, status callbacks in.

Both directions are signed the same way: headers `X-JMT-Timestamp` (unix seconds) and
`X-JMT-Signature` = hex HMAC-SHA256 with `GOVERNANCE_SECRET` over
`"{timestamp}." + raw body` (`sign`, `verify`; see docs/console-api.md).

- `GovernanceClient.send_ticket` POSTs one ticket and classifies failures: 5xx, 408, 429,
  timeouts and refused connections are transient, other 4xx and redirects permanent.
  It does not retry: the ticket loop tries again later.
- `verify` checks a callback: constant-time comparison, and a timestamp more than
  `max_skew` seconds off is refused (a replayed old callback).
- Development's `GOVERNANCE_WEBHOOK_URL` points at the simulator's stand-in
  (`gateway/simulator/partners.py`), which verifies the signature the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any

import requests

from casework.privacy import mask_pii

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-JMT-Timestamp"
SIGNATURE_HEADER = "X-JMT-Signature"
TRANSIENT_4XX = {408, 429}  # request timeout, too many requests: worth trying again
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def sign(body: bytes, timestamp: str, secret: str) -> str:
    """Hex HMAC-SHA256 with `secret` over `timestamp + "." + body`."""
    message = timestamp.encode("utf-8") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    secret: str,
    *,
    now: float | None = None,
    max_skew: int = 300,
) -> bool:
    """True only for a correct signature over a timestamp at most `max_skew` seconds off.
    An empty secret verifies nothing."""
    if not secret or not timestamp or not signature:
        return False
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > max_skew:
        return False
    expected = sign(body, timestamp, secret).encode("ascii")
    given = signature.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(expected, given)


def signed_headers(body: bytes, secret: str, *, now: float | None = None) -> dict[str, str]:
    """The headers of a signed JSON request carrying `body`."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(body, timestamp, secret),
        "Content-Type": "application/json",
    }


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

    def send_ticket(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one ticket; the platform's JSON answer (or {}), else GovernanceError."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        ticket = payload.get("id", "?")
        started = time.monotonic()
        try:
            response = self.session.post(
                self.webhook_url,
                data=body,
                headers=signed_headers(body, self.secret),
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
