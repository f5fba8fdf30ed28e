"""Request ids and Prometheus metrics of the gateway (issue 10, Operations).

- `RequestContext` (ASGI middleware): a request id per request — the caller's
  `X-Request-ID` when well-formed, else a new one — in `logconfig.REQUEST_ID` for every
  log line of the request, and in the `X-Request-ID` response header; the request's
  count and latency by route *template* (`/api/cases/{case_id}`, never a raw path: no
  ids or openids in labels) and status.
- `rasa_call()`, `count_turn()`, `count_parse()`: Rasa calls (count, latency, failures)
  and the fallback rate (turns the bot could not answer, parses that were nlu_fallback).
- `render()`: the exposition for GET /metrics. Backlog gauges (outbox, tickets, open
  cases, notifications) are read from the database at scrape time through
  `casework.backlog`, so every worker reports the same truth.

Several gateway workers: with `PROMETHEUS_MULTIPROC_DIR` set (before the worker starts),
prometheus_client keeps each worker's samples in files there and `render()` adds them up,
whichever worker answers the scrape. The launcher empties the directory before starting
the workers (`prepare_multiprocess_dir`). Unset, the process's own registry is served.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from casework import audit, backlog, db, logconfig

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = logconfig.REQUEST_ID_HEADER
UNMATCHED = "unmatched"  # any path no route serves (scanners, typos): one label value

REGISTRY = CollectorRegistry(auto_describe=True)  # this process's own samples

HTTP_REQUESTS = Counter(
    "jmt_http_requests_total",
    "HTTP requests answered by the gateway, by method, route template and status.",
    ("method", "route", "status"),
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "jmt_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ("method", "route"),
    registry=REGISTRY,
)
RASA_CALLS = Counter(
    "jmt_rasa_requests_total",
    "Messages sent to Rasa's REST channel, by outcome (ok | error).",
    ("outcome",),
    registry=REGISTRY,
)
RASA_LATENCY = Histogram(
    "jmt_rasa_request_duration_seconds",
    "Time Rasa took to answer a message (failures included).",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.5, 10.0, 30.0),
    registry=REGISTRY,
)
BOT_TURNS = Counter(
    "jmt_bot_turns_total",
    "Residents' messages given to the bot, by result: answered, or unavailable (Rasa or "
    "the action server down: the fallback answer and an officer case).",
    ("result",),
    registry=REGISTRY,
)
NLU_PARSES = Counter(
    "jmt_nlu_parses_total",
    "Parsed resident messages, by whether the intent was nlu_fallback (fallback rate = "
    'jmt_nlu_parses_total{fallback="yes"} / jmt_nlu_parses_total).',
    ("fallback",),
    registry=REGISTRY,
)


# ------------------------------------------------------------------ requests


def route_label(scope: Scope) -> str:
    """The template of the route that served the request, never the raw path."""
    route = scope.get("route")  # FastAPI's APIRoute puts itself here
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL and hasattr(candidate, "path"):
            return str(candidate.path)
    return UNMATCHED


class RequestContext:
    """Pure ASGI middleware (no per-request task, streams untouched): request id, the
    X-Request-ID response header, the client address for the audit trail, HTTP count and
    latency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = logconfig.request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        token = logconfig.REQUEST_ID.set(request_id)
        # The peer (uvicorn puts a trusted proxy's X-Forwarded-For there): the audit
        # trail's "from where" for every entry this request makes.
        client = scope.get("client")
        address = audit.CLIENT_IP.set(str(client[0]) if client else None)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route, method = route_label(scope), scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
            logconfig.REQUEST_ID.reset(token)
            audit.CLIENT_IP.reset(address)


def current_request_id() -> str | None:
    """The id of the request being handled (None outside one)."""
    value = logconfig.REQUEST_ID.get()
    return None if value == logconfig.NO_REQUEST else value


# ------------------------------------------------------------------ the bot


@asynccontextmanager
async def rasa_call() -> AsyncIterator[None]:
    """Wraps one call to Rasa's REST channel: counted, timed, failures counted."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        RASA_LATENCY.observe(time.perf_counter() - started)
        RASA_CALLS.labels(outcome).inc()


def count_turn(*, answered: bool) -> None:
    BOT_TURNS.labels("answered" if answered else "unavailable").inc()


def count_parse(intent: str | None) -> None:
    if intent is not None:
        NLU_PARSES.labels("yes" if intent == "nlu_fallback" else "no").inc()


# ------------------------------------------------------------------ exposition


class BacklogCollector(Collector):
    """Gauges read from the database when scraped (casework.backlog: a few COUNTs)."""

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url

    def collect(self) -> Iterable[Any]:
        with db.session_scope(self.database_url) as session:
            waiting = backlog.snapshot(session=session)
        families = (
            (
                "jmt_outbox_items",
                "Customer-service messages waiting or failed, by status.",
                "status",
                waiting.outbox,
            ),
            (
                "jmt_tickets",
                "Governance tickets still open or failed, by status.",
                "status",
                waiting.tickets,
            ),
            ("jmt_open_cases", "Cases not closed, by priority.", "priority", waiting.open_cases),
            (
                "jmt_case_notifications",
                "DingTalk notifications of cases not yet sent, by status.",
                "status",
                waiting.notifications,
            ),
        )
        for name, documentation, label, counts in families:
            family = GaugeMetricFamily(name, documentation, labels=[label])
            for value, count in sorted(counts.items()):
                family.add_metric([value], count)
            yield family


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render(database_url: str | None) -> tuple[bytes, str]:
    """(body, content type) of GET /metrics: every worker's samples, then the backlog."""
    if multiprocess_dir():
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers)
        own = generate_latest(workers)
    else:
        own = generate_latest(REGISTRY)
    database = CollectorRegistry()
    database.register(BacklogCollector(database_url))
    return own + generate_latest(database), CONTENT_TYPE_LATEST


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create `path` and remove every sample file a previous run left there.

    For the launcher, before it starts the gateway workers with PROMETHEUS_MULTIPROC_DIR
    set to `path`: stale files of dead processes would otherwise be added in for ever.
    Only prometheus_client's files (`*.db`) are removed."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path
