"""The WeChat callback protocol, on wechatpy: signatures, AES safe mode, parsing, replies.

Everything that can go wrong with a request raises `ProtocolError` carrying the HTTP
status the caller gets (403 forged/stale, 400 malformed/hostile, 413 too large); nothing
is stored before a request has passed all of it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

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


def decode(body: bytes, query: CallbackQuery, crypto: WeChatCrypto | None) -> tuple[Any, str]:
    """The wechatpy message and the plain XML it came from."""
    xml = body.decode("utf-8", errors="strict") if body else ""
    if query.encrypted:
        if crypto is None:
            raise ProtocolError(400, "encrypted message but no WECHAT_ENCODING_AES_KEY set")
        if not query.msg_signature:
            raise ProtocolError(403, "missing msg_signature")
        try:
            xml = crypto.decrypt_message(xml, query.msg_signature, query.timestamp, query.nonce)
        except (InvalidSignatureException, InvalidAppIdException) as error:
            raise ProtocolError(403, "bad message signature or app id") from error
        except Exception as error:  # noqa: BLE001 — any decryption failure is a bad request
            raise ProtocolError(400, f"cannot decrypt: {type(error).__name__}") from error
        if isinstance(xml, bytes):
            xml = xml.decode("utf-8")
        check_body(xml.encode("utf-8"))
    try:
        message = parse_message(xml)
    except Exception as error:  # noqa: BLE001 — xmltodict raises several kinds
        raise ProtocolError(400, f"malformed XML: {type(error).__name__}") from error
    if message is None or not getattr(message, "source", None):
        raise ProtocolError(400, "not a WeChat message")
    return message, xml


def render_reply(text: str, message: Any, query: CallbackQuery, crypto: WeChatCrypto | None) -> str:
    """A passive text reply, encrypted when the request was."""
    xml = create_reply(text, message).render()
    if query.encrypted and crypto is not None:
        return crypto.encrypt_message(xml, query.nonce, query.timestamp)
    return xml
