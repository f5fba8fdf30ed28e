"""The WeChat callback protocol, on wechatpy: signatures, AES safe mode, modes, replays,
strict parsing, replies.

Everything that can go wrong with a request raises `ProtocolError` carrying the HTTP
status the caller gets (403 forged/stale/replayed/refused by the mode, 400
malformed/hostile, 413 too large); nothing is stored before a request has passed all of it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from casework.settings import WECHAT_MODES, SettingsError
from gateway import wechat_fields

MAX_BODY_BYTES = 64 * 1024  # WeChat's own messages are a few KB
MAX_CLOCK_SKEW = 300  # seconds between WeChat's timestamp and ours
_HOSTILE_XML = re.compile(rb"<!DOCTYPE|<!ENTITY|<\?xml-stylesheet", re.IGNORECASE)


class ProtocolError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class CallbackQuery:
    signature: str
    timestamp: str
    nonce: str
    encrypt_type: str | None = None
    msg_signature: str | None = None

    @property
    def encrypted(self) -> bool:
        return (self.encrypt_type or "").lower() == "aes"


def verify_signature(token: str, query: CallbackQuery, *, now: float | None = None) -> None:
    """The URL signature (sha1 of token, timestamp, nonce) and a fresh timestamp."""
    if not (query.signature and query.timestamp and query.nonce):
        raise ProtocolError(403, "missing signature")
    try:
        check_signature(token, query.signature, query.timestamp, query.nonce)
    except InvalidSignatureException as error:
        raise ProtocolError(403, "bad signature") from error
    try:
        stamp = int(query.timestamp)
    except ValueError as error:
        raise ProtocolError(403, "bad timestamp") from error
    if abs((now or time.time()) - stamp) > MAX_CLOCK_SKEW:
        raise ProtocolError(403, "stale timestamp")


def nonce_key(query: CallbackQuery) -> str:
    """What identifies one signed callback for replay memory: its URL signature
    (timestamp, nonce, signature), whatever the mode, so that the URL of an encrypted
    callback cannot come back as a plain one in compat mode. Hashed: the nonce's length
    is WeChat's choice (or an attacker's), the key's must fit the table."""
    parts = [query.timestamp, query.nonce, query.signature]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def signed_content(query: CallbackQuery, body: bytes) -> bytes:
    """What that signature was accepted with: the body, plus msg_signature in safe mode.
    WeChat's retry repeats both; anything else under the same signature is a replay."""
    if not query.encrypted:
        return body
    return (query.msg_signature or "").encode("utf-8") + b"\n" + body


def replay_window(query: CallbackQuery, *, now: float | None = None) -> timedelta:
    """How long a nonce must be remembered: until its timestamp is stale, after which
    `verify_signature` refuses the request anyway (at most 2 × MAX_CLOCK_SKEW)."""
    left = int(query.timestamp) + MAX_CLOCK_SKEW - (now or time.time())
    return timedelta(seconds=max(left, 0) + 1)


def check_mode(mode: str, crypto: WeChatCrypto | None) -> None:
    """At startup: the mode is one of WeChat's three, and the encrypted ones have a key."""
    if mode not in WECHAT_MODES:
        raise SettingsError(f"WECHAT_MODE must be one of {', '.join(WECHAT_MODES)}, not {mode!r}")
    if mode != "plain" and crypto is None:
        raise SettingsError(f"WECHAT_MODE={mode} needs WECHAT_ENCODING_AES_KEY")


def check_body(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise ProtocolError(413, "body too large")
    if not body.strip():
        raise ProtocolError(400, "empty body")
    if _HOSTILE_XML.search(body):  # XXE, billion laughs: WeChat never sends a DOCTYPE
        raise ProtocolError(400, "DOCTYPE or entity declarations are not accepted")


def crypto_for(token: str, encoding_aes_key: str | None, app_id: str | None) -> WeChatCrypto | None:
    if not encoding_aes_key:
        return None
    return WeChatCrypto(token, encoding_aes_key, app_id or "")


def decode(
    body: bytes, query: CallbackQuery, crypto: WeChatCrypto | None, *, mode: str
) -> dict[str, str]:
    """The callback's validated fields (see `wechat_fields`), decrypted in safe mode."""
    if query.encrypted and crypto is None:
        raise ProtocolError(400, "encrypted message but no WECHAT_ENCODING_AES_KEY set")
    if not query.encrypted and mode == "safe":
        # Safe mode: only the AES envelope proves the body is WeChat's; a captured URL
        # signature must not carry a plain body of someone else's making.
        raise ProtocolError(403, "plain callbacks are refused in safe mode")
    xml = body.decode("utf-8", errors="strict") if body else ""
    if query.encrypted:
        assert crypto is not None
        if not query.msg_signature:
            raise ProtocolError(403, "missing msg_signature")
        envelope = _fields_of(xml)
        if "Encrypt" not in envelope:
            raise ProtocolError(400, "encrypted message without Encrypt")
        try:
            plain = crypto.decrypt_message(
                envelope, query.msg_signature, query.timestamp, query.nonce
            )
        except (InvalidSignatureException, InvalidAppIdException) as error:
            raise ProtocolError(403, "bad message signature or app id") from error
        except Exception as error:  # noqa: BLE001 — any decryption failure is a bad request
            raise ProtocolError(400, f"cannot decrypt: {type(error).__name__}") from error
        xml = plain.decode("utf-8") if isinstance(plain, bytes) else str(plain)
        check_body(xml.encode("utf-8"))
    fields = _fields_of(xml)
    try:
        return wechat_fields.validate(fields)
    except wechat_fields.InvalidCallback as error:
        raise ProtocolError(400, str(error)) from error


def _fields_of(xml: str) -> dict[str, str]:
    try:
        return wechat_fields.parse(xml)
    except wechat_fields.InvalidCallback as error:
        raise ProtocolError(400, str(error)) from error


def render_reply(
    text: str, fields: Mapping[str, str], query: CallbackQuery, crypto: WeChatCrypto | None
) -> str:
    """A passive text reply to the sender, encrypted when the request was."""
    reply = TextReply(source=fields["ToUserName"], target=fields["FromUserName"], content=text)
    xml = reply.render()
    if query.encrypted and crypto is not None:
        return crypto.encrypt_message(xml, query.nonce, query.timestamp)
    return xml
