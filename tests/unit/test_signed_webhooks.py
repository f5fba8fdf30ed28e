"""The signed-webhook scheme (CONTRACT.md): a fixed vector, every way a signature can be
wrong, the timestamp window, and the nonce memory on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from casework import db
from integrations.signed_webhooks import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRefused,
    check,
    sign,
    signed_headers,
    verify,
)

SECRET = "gov-test-secret"
PATH = "/api/tickets/7/status"
BODY = b'{"status":"resolved","note":""}'
TIMESTAMP = "1764324000"
NONCE = "n0nce-0001"
SIGNATURE = "d6f5848fef168886537e335ae35d7a81f0bf7fdb13be69c22f0a9219aedaa955"
NOW = float(TIMESTAMP)


def headers(**changes: str) -> dict[str, str]:
    values = {TIMESTAMP_HEADER: TIMESTAMP, NONCE_HEADER: NONCE, SIGNATURE_HEADER: SIGNATURE}
    return {**values, **changes}


def test_the_signature_is_hex_hmac_over_timestamp_nonce_method_path_and_body():
    by_hand = hmac.new(
        SECRET.encode(), f"{TIMESTAMP}.{NONCE}.POST.{PATH}.".encode() + BODY, hashlib.sha256
    ).hexdigest()
    assert by_hand == SIGNATURE
    kwargs = {"method": "post", "path": PATH, "timestamp": TIMESTAMP, "nonce": NONCE}
    assert sign(secret=SECRET, body=BODY, **kwargs) == SIGNATURE  # method is upper-cased


def test_signed_headers_carry_a_fresh_nonce_each_time():
    first = signed_headers(secret=SECRET, method="POST", path=PATH, body=BODY, now=NOW)
    second = signed_headers(secret=SECRET, method="POST", path=PATH, body=BODY, now=NOW)
    assert first[NONCE_HEADER] != second[NONCE_HEADER]
    assert first[TIMESTAMP_HEADER] == TIMESTAMP
    assert check(headers=first, method="POST", path=PATH, body=BODY, secret=SECRET, now=NOW)
    fixed = signed_headers(secret=SECRET, method="POST", path=PATH, body=BODY, now=NOW, nonce=NONCE)
    assert fixed == {**headers(), "Content-Type": "application/json"}


def test_check_accepts_the_vector_within_the_window_in_any_header_case():
    for now in (NOW, NOW + 300, NOW - 300):
        signed = check(
            headers=headers(), method="POST", path=PATH, body=BODY, secret=SECRET, now=now
        )
        assert (signed.timestamp, signed.nonce) == (int(TIMESTAMP), NONCE)
    lower = {k.lower(): v for k, v in headers(**{SIGNATURE_HEADER: SIGNATURE.upper()}).items()}
    assert check(headers=lower, method="POST", path=PATH, body=BODY, secret=SECRET, now=NOW)


@pytest.mark.parametrize(
    "changed, method, path, body, secret, now",
    [
        ({SIGNATURE_HEADER: SIGNATURE[:-1] + "0"}, "POST", PATH, BODY, SECRET, NOW),
        ({}, "POST", PATH, BODY, "another-secret", NOW),
        ({}, "POST", PATH, BODY + b" ", SECRET, NOW),  # tampered body
        ({}, "POST", "/api/tickets/8/status", BODY, SECRET, NOW),  # another ticket
        ({}, "PUT", PATH, BODY, SECRET, NOW),  # another method
        ({NONCE_HEADER: "n0nce-0002"}, "POST", PATH, BODY, SECRET, NOW),
        ({TIMESTAMP_HEADER: "1764324001"}, "POST", PATH, BODY, SECRET, NOW),
        ({}, "POST", PATH, BODY, SECRET, NOW + 301),  # stale
        ({}, "POST", PATH, BODY, SECRET, NOW - 301),  # from the future
        ({TIMESTAMP_HEADER: ""}, "POST", PATH, BODY, SECRET, NOW),
        ({TIMESTAMP_HEADER: "1764324000.0"}, "POST", PATH, BODY, SECRET, NOW),
        ({TIMESTAMP_HEADER: "-1764324000"}, "POST", PATH, BODY, SECRET, NOW),
        ({NONCE_HEADER: ""}, "POST", PATH, BODY, SECRET, NOW),
        ({NONCE_HEADER: "short"}, "POST", PATH, BODY, SECRET, NOW),
        ({NONCE_HEADER: "随机数随机数随机数"}, "POST", PATH, BODY, SECRET, NOW),
        ({NONCE_HEADER: "n" * 65}, "POST", PATH, BODY, SECRET, NOW),
        ({SIGNATURE_HEADER: ""}, "POST", PATH, BODY, SECRET, NOW),
        ({SIGNATURE_HEADER: SIGNATURE[:32]}, "POST", PATH, BODY, SECRET, NOW),
        ({SIGNATURE_HEADER: "签名" + SIGNATURE[2:]}, "POST", PATH, BODY, SECRET, NOW),
        ({}, "POST", PATH, BODY, "", NOW),  # no secret verifies nothing
        ({}, "POST", PATH, BODY, None, NOW),
    ],
)
def test_check_refuses(changed, method, path, body, secret, now):
    with pytest.raises(SignatureRefused):
        check(
            headers=headers(**changed), method=method, path=path, body=body, secret=secret, now=now
        )


def test_missing_headers_are_refused():
    for name in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER):
        partial = {k: v for k, v in headers().items() if k != name}
        with pytest.raises(SignatureRefused):
            check(headers=partial, method="POST", path=PATH, body=BODY, secret=SECRET, now=NOW)


def test_a_nonce_is_accepted_once_per_scope(database_url):
    def attempt(scope: str, body: bytes = BODY, nonce: str = "nonce-abcdef") -> bool:
        signed = signed_headers(secret=SECRET, method="POST", path=PATH, body=body, nonce=nonce)
        with db.session_scope() as session:
            try:
                verify(
                    session=session,
                    scope=scope,
                    headers=signed,
                    method="POST",
                    path=PATH,
                    body=body,
                    secret=SECRET,
                )
            except SignatureRefused:
                return False
        return True

    assert attempt("governance") is True
    assert attempt("governance") is False  # the same request again: a replay
    assert attempt("governance", body=b"{}") is False  # the same nonce with another body
    assert attempt("dissuasion") is True  # scopes do not share nonces
    assert attempt("governance", nonce="nonce-ghijkl") is True


def test_a_bad_signature_does_not_spend_the_nonce(database_url):
    good = signed_headers(secret=SECRET, method="POST", path=PATH, body=BODY)
    forged = {**good, SIGNATURE_HEADER: "0" * 64}
    with db.session_scope() as session, pytest.raises(SignatureRefused):
        verify(
            session=session,
            scope="governance",
            headers=forged,
            method="POST",
            path=PATH,
            body=BODY,
            secret=SECRET,
        )
    with db.session_scope() as session:
        verify(
            session=session,
            scope="governance",
            headers=good,
            method="POST",
            path=PATH,
            body=BODY,
            secret=SECRET,
        )
