"""Signed webhooks between 警民通 and its partners, in both directions (CONTRACT.md).

Headers `X-JMT-Timestamp` (unix seconds), `X-JMT-Nonce` and `X-JMT-Signature` = hex
HMAC-SHA256 with the endpoint's own secret over
`"{timestamp}.{nonce}.{METHOD}.{path}." + raw body`.

Method and path are signed so a captured request cannot be replayed against another
record (`/api/tickets/7/status` → `/api/tickets/8/status`); the nonce, remembered in the
shared database for the whole timestamp window, so it cannot be replayed at all.

- Senders (our outgoing tickets, the simulator's stand-ins, tests): `signed_headers`.
- Receivers: `verify` — the signature check (`check`, pure) followed by the nonce memory
  (`casework.replay`, any second sighting refused). Both raise `SignatureRefused`; routes
  answer it with 401 and never say which check failed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from casework import replay

TIMESTAMP_HEADER = "X-JMT-Timestamp"
NONCE_HEADER = "X-JMT-Nonce"
SIGNATURE_HEADER = "X-JMT-Signature"
MAX_SKEW = 300  # seconds a timestamp may be off, either way
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_\-]{8,64}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


class SignatureRefused(Exception):
    """The request is not provably fresh and from the holder of the secret."""


@dataclass(frozen=True)
class Signed:
    """What a verified request was signed with."""

    timestamp: int
    nonce: str


def message(*, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes that are signed."""
    head = f"{timestamp}.{nonce}.{method.upper()}.{path}."
    return head.encode("utf-8") + body


def sign(*, secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `message(...)` with `secret`."""
    signed = message(method=method, path=path, timestamp=timestamp, nonce=nonce, body=body)
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signed_headers(
    *,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of one signed JSON request (a fresh random nonce unless given)."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_hex(16)
    return {
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(
            secret=secret, method=method, path=path, timestamp=timestamp, nonce=nonce, body=body
        ),
        "Content-Type": "application/json",
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    # Starlette's headers are case-insensitive; a plain dict (tests, the stand-in) may not be.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return (value or "").strip()


def check(
    *,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    secret: str | None,
    now: float | None = None,
    max_skew: int = MAX_SKEW,
) -> Signed:
    """The signature and timestamp check alone (no memory of nonces): `Signed` or
    `SignatureRefused`. An empty secret verifies nothing."""
    timestamp = _header(headers, TIMESTAMP_HEADER)
    nonce = _header(headers, NONCE_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if not secret:
        raise SignatureRefused("no secret configured")
    if not _TIMESTAMP.fullmatch(timestamp) or not _NONCE.fullmatch(nonce):
        raise SignatureRefused("missing or malformed timestamp or nonce")
    if not _SIGNATURE.fullmatch(signature):
        raise SignatureRefused("missing or malformed signature")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > max_skew:
        raise SignatureRefused("timestamp outside the window")
    expected = sign(
        secret=secret, method=method, path=path, timestamp=timestamp, nonce=nonce, body=body
    )
    if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii")):
        raise SignatureRefused("wrong signature")
    return Signed(int(timestamp), nonce)


def verify(
    *,
    session: Session,
    scope: str,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    secret: str | None,
    now: float | None = None,
    max_skew: int = MAX_SKEW,
) -> Signed:
    """`check`, then remember the nonce in `scope` for as long as its timestamp could
    still be accepted; a nonce seen before (same body or not) is refused. The caller
    should commit at once, so a request that fails later still burns its nonce."""
    signed = check(
        headers=headers,
        method=method,
        path=path,
        body=body,
        secret=secret,
        now=now,
        max_skew=max_skew,
    )
    # A timestamp accepted now stays acceptable for up to 2 × max_skew from now.
    sighting = replay.remember(
        session=session,
        scope=scope,
        nonce_key=signed.nonce,
        body=body,
        window=timedelta(seconds=2 * max_skew),
    )
    if sighting is not replay.Sighting.NEW:
        raise SignatureRefused("nonce already used")
    return signed
