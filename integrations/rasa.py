"""Rasa HTTP client: the REST channel for conversations, the HTTP API for the rest.

Rasa runs with `--auth-token` (RASA_TOKEN), which guards its HTTP API (trackers, events,
models, /status) and takes the token only as the `?token=` query parameter. The REST
channel (/webhooks/rest/webhook) is not covered by that token; Rasa listens on loopback
only (RASA_HOST), so only this machine's processes reach it. Since the token travels in
URLs, nothing we log may print a URL unredacted: `redact` and casework.logsafe's filter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from casework import logsafe

logger = logging.getLogger(__name__)


# The token travels in URLs: the one log filter hides it (and other secrets) wherever
# httpx logs a request, and `redact` hides it in the errors we raise and log.
redact = logsafe.redact_text
logsafe.install()


class RasaUnavailable(Exception):
    """Rasa (or the action server behind it) did not answer usefully."""


@dataclass(frozen=True)
class ParseResult:
    intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]] = field(default_factory=list)  # [{name, confidence}] top 5
    entities: list[dict[str, Any]] = field(default_factory=list)  # [{entity, value, start, end}]


class RasaClient:
    """One shared async HTTP client per process (connection pooling)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        # Every call carries the token (Rasa ignores it on the REST channel).
        params = {"token": token} if token else None
        self._http = httpx.AsyncClient(base_url=self.base_url, params=params, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def send(
        self, sender: str, text: str, metadata: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Send a resident's message through the REST channel; returns the bot messages."""
        payload = {"sender": sender, "message": text, "metadata": metadata or {}}
        try:
            response = await self._http.post("/webhooks/rest/webhook", json=payload)
        except httpx.HTTPError as error:
            raise RasaUnavailable(f"{type(error).__name__}: {redact(str(error))}") from error
        if response.status_code != 200:
            raise RasaUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        messages = response.json()
        if not isinstance(messages, list):
            raise RasaUnavailable(f"unexpected answer: {str(messages)[:200]}")
        return messages

    async def latest_parse(self, sender: str) -> ParseResult:
        """Intent, ranking and entities of the sender's latest message (from the tracker)."""
        try:
            response = await self._http.get(
                f"/conversations/{sender}/tracker", params={"include_events": "NONE"}
            )
            response.raise_for_status()
            latest = response.json().get("latest_message") or {}
        except (httpx.HTTPError, ValueError) as error:
            logger.warning(
                "could not read the parse of %s's message: %s", sender, redact(str(error))
            )
            return ParseResult(None, None)
        intent = latest.get("intent") or {}
        ranking = [
            {"name": r.get("name"), "confidence": r.get("confidence")}
            for r in (latest.get("intent_ranking") or [])[:5]
        ]
        entities = [
            {k: e.get(k) for k in ("entity", "value", "start", "end")}
            for e in latest.get("entities") or []
        ]
        return ParseResult(intent.get("name"), intent.get("confidence"), ranking, entities)

    async def resume(self, sender: str) -> bool:
        """Give the conversation back to the bot after an officer closes the case: end any
        intake the officer took over mid-way, and un-pause the conversation."""
        events = [
            {"event": "active_loop", "name": None},
            {"event": "slot", "name": "requested_slot", "value": None},
            {"event": "resume"},
        ]
        try:
            response = await self._http.post(f"/conversations/{sender}/tracker/events", json=events)
            response.raise_for_status()
        except httpx.HTTPError as error:
            logger.error(
                "could not resume %s's conversation in Rasa: %s", sender, redact(str(error))
            )
            return False
        return True

    async def healthy(self) -> bool:
        try:
            response = await self._http.get("/status", timeout=3)
            return response.status_code == 200
        except httpx.HTTPError:
            return False
