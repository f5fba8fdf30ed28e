"""Keep secrets out of logs: query-string values that grant access are written as ***.

One filter for every process that logs URLs: the gateway installs it at start, and the
Rasa client (used by the gateway, `jmt model` and the benchmarks) on import. `scrub`
is applied by casework.logconfig's formatter to every rendered line of every process:
secrets in URLs again, and phone, ID-card and bank-card numbers.

uvicorn's access log writes every request's path with its query string, and httpx logs
every outgoing URL. Some of those carry credentials: a console stream ticket, WeChat's
callback signature, the WeChat API access token, a DingTalk robot token. A filter on
those loggers rewrites the record's arguments before any handler formats them.

Redacted: `access_token`, `token`, `ticket`, `signature`, `msg_signature`, `sign`,
`password`, `secret`, `appsecret` (they grant access or prove a request), and `openid`
(it identifies a resident, and logs are kept outside the retention rules). `timestamp`
and `nonce` stay: they grant nothing without the signature, and they are what one needs
to read a replay.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

import httpx

from casework.privacy import mask_pii

SENSITIVE = frozenset(
    {
        "access_token",
        "token",
        "ticket",
        "signature",
        "msg_signature",
        "sign",
        "password",
        "secret",
        "appsecret",  # DingTalk's gettoken (issue 12: personal work notifications)
        "openid",
    }
)
REDACTED = "***"
LOGGERS = ("uvicorn.access", "httpx")


def redact_query(url: str) -> str:
    """`url` (a path or a full URL) with the values of sensitive parameters replaced."""
    head, mark, query = url.partition("?")
    if not mark:
        return url
    query, hash_mark, fragment = query.partition("#")
    parts = []
    for part in query.split("&"):
        name, equals, _value = part.partition("=")
        if equals and unquote_plus(name).strip().lower() in SENSITIVE:
            part = f"{name}={REDACTED}"
        parts.append(part)
    return f"{head}?{'&'.join(parts)}{hash_mark}{fragment}"


_NAMES = "|".join(sorted(SENSITIVE))
_IN_TEXT = re.compile(rf"([?&](?:{_NAMES})=)[^&\s'\"#]+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Free text (an error message quoting a URL) with sensitive query values hidden."""
    return _IN_TEXT.sub(r"\1" + REDACTED, text)


def _redact(argument: Any) -> Any:
    # httpx passes its URL object; uvicorn a str. Anything else (status, method) stays.
    if isinstance(argument, (str, httpx.URL)):
        text = str(argument)
        if "?" in text:
            return redact_query(text)
    return argument


class RedactSecrets(logging.Filter):
    """Rewrites the record's arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(argument) for argument in record.args)
        elif isinstance(record.msg, str) and "?" in record.msg and not record.args:
            record.msg = redact_query(record.msg)
        return True


def install() -> None:
    """Put the filter on uvicorn's access logger and httpx's logger (once per process)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


def scrub(text: str) -> str:
    """A rendered log message with sensitive query values hidden and phone, ID-card and
    bank-card numbers masked (`casework.privacy.mask_pii`)."""
    return mask_pii(redact_text(text))
