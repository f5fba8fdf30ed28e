"""One log format for every process: time, level, logger, request id, message — scrubbed.

    2026-11-30 02:51:07,412 INFO gateway.service [3f9c0a1e52b04d7e] in  o-abc text: 138****5678

Used by every process: the gateway (`configure()` in the app factory, which runs in each
uvicorn worker after uvicorn applied its own configuration, so uvicorn's error and access
loggers are routed to the same handler; the launcher also passes `--log-config
bot/logging.yml`, for uvicorn's supervisor process that never imports the app), the
action server (jmt/actions_server.py), the launcher (jmt/launch.py) and Rasa (`rasa run
--logging-config-file bot/logging.yml`, whose handler comes from `console_handler`).

The request id: the gateway takes a well-formed `X-Request-ID` header or makes one for
every inbound request (gateway/observability.py), keeps it in `REQUEST_ID` (a contextvar,
so lines logged from `asyncio.to_thread` and from tasks the request starts carry it too),
sends it to Rasa as the `X-Request-ID` header (integrations/rasa.py; a middleware in
jmt/rasa_process.py sets it for Rasa's lines) and as `metadata["request_id"]`, and the
action server sets it from the tracker's latest message — one grep follows a message
across the processes.

Every line is scrubbed by `logsafe.scrub` (secrets in URLs, phone/ID/bank numbers).
`LOG_LEVEL` (default INFO) sets the level; Rasa reads the same variable for its loggers.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from typing import Any

from casework import logsafe
from casework.settings import LOG_LEVELS, _env  # the one settings reader

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
NO_REQUEST = "-"
REQUEST_ID_HEADER = "X-Request-ID"  # gateway → Rasa, and the gateway's own callers
REQUEST_ID: ContextVar[str] = ContextVar("jmt_request_id", default=NO_REQUEST)
# What we accept from a caller's X-Request-ID: short, and nothing that could forge a line.
WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{8,64}")
# Loggers that come with handlers of their own (uvicorn's, sanic's): ours replace them.
SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "sanic.root",
    "sanic.error",
    "sanic.access",
)

# Chatty at INFO (httpx: a line per outgoing call, probes included; alembic: a line per
# plugin at every start): WARNING unless LOG_LEVEL=DEBUG.
CHATTY = ("httpx", "alembic.runtime.plugins")


def request_id_from(header: str | None) -> str:
    """The caller's id when it is well-formed, else a new one (never a caller's garbage)."""
    if header and WELL_FORMED.fullmatch(header):
        return header
    return uuid.uuid4().hex[:16]


class RequestIdFilter(logging.Filter):
    """Puts the current request id on the record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class Formatter(logging.Formatter):
    """`FORMAT`, the message and any traceback scrubbed (`logsafe.scrub`): whoever logged
    it — our code, uvicorn, Rasa, rasa-sdk, a library's debug line quoting a resident's
    words — no secret and no personal number is printed. The record itself is left as it
    was for any other handler."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 — logging's name
        record.message = logsafe.scrub(record.message)  # set by format() just before
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802 — logging's name
        return logsafe.scrub(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 — logging's name
        return logsafe.scrub(super().formatStack(stack_info))


class ConsoleHandler(logging.Handler):
    """Writes formatted lines to the process's current stderr.

    Deliberately not a `logging.StreamHandler`: Rasa's CLI calls `coloredlogs.install()`
    after applying `--logging-config-file`, and coloredlogs replaces any StreamHandler on
    stderr with its own format. bot/logging.yml gives it a muted placeholder to replace.
    """

    def __init__(self, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(Formatter())
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 — logging must never break the caller
            self.handleError(record)


class Muted(logging.Filter):
    """Drops everything (the placeholder handler of bot/logging.yml)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def log_level(value: str | None = None) -> str:
    """LOG_LEVEL (default INFO), validated: a typo must not silence the logs."""
    level = (_env("LOG_LEVEL") if value is None else value) or "INFO"
    level = level.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL={level!r} is unknown: use one of {', '.join(LOG_LEVELS)}")
    return level


def console_handler() -> logging.Handler:
    """The handler factory bot/logging.yml names (Rasa's process), at LOG_LEVEL."""
    return ConsoleHandler(log_level())


def configure(level: str | None = None) -> None:
    """Apply the project's logging to this process: our handler on the root logger (added
    once, beside any other — a test harness's capture keeps working), the servers' own
    loggers (uvicorn's, sanic's) routed to it instead of their handlers, LOG_LEVEL."""
    level = log_level(level)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, ConsoleHandler)), None)
    if handler is None:
        handler = ConsoleHandler()
        root.addHandler(handler)
    root.setLevel(level)
    for name in SERVER_LOGGERS:
        server = logging.getLogger(name)
        for own in [h for h in server.handlers if isinstance(h, logging.StreamHandler)]:
            server.removeHandler(own)  # the server's console handlers, in its own format
        # uvicorn.error propagates into uvicorn (uvicorn's own layout): no handler of its own.
        server.propagate = name == "uvicorn.error"
        if not server.propagate and handler not in server.handlers:
            server.addHandler(handler)
        if name.startswith("uvicorn"):  # sanic's levels stay as rasa-sdk sets them
            server.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
    logsafe.install()
