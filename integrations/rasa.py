"""Rasa HTTP client: the REST channel for conversations, the HTTP API for the rest — over
one or several Rasa replicas.

Rasa runs with `--auth-token` (RASA_TOKEN), which guards its HTTP API (trackers, events,
models, /status) and takes the token only as the `?token=` query parameter. The REST
channel (/webhooks/rest/webhook) is not covered by that token; Rasa listens on loopback
only (RASA_HOST), so only this machine's processes reach it. Since the token travels in
URLs, nothing we log may print a URL unredacted: `redact` and casework.logsafe's filter.
Every call made while handling a gateway request sends its request id as `X-Request-ID`:
Rasa's own log lines for it carry the id (jmt/rasa_process.py).

Replicas (issue 10). The client holds N base URLs: RASA_URLS (else RASA_URL), replaced by
the live list in `$JMT_VAR_DIR/rasa-urls.json` (`{"urls": [...], "generation": n}`, written
by the launcher by atomic rename and switched during a model promotion) whenever that file
exists. The file is looked at no more than once a second, in a worker thread, so the event
loop never waits on the disk.

- A resident's turns go to one replica, chosen by rendezvous hashing of the sender over
  the live replicas. With several replicas Rasa uses the Redis lock store, so any replica
  would be correct; hashing is chosen because a resident who sends a burst then waits on
  Rasa's conversation lock inside one replica instead of tying up a request slot on every
  replica, and because when a replica goes down only its own residents move (to the
  replica that ranks next for them) while everyone else stays put.
- Tracker calls (latest_parse, tracker_state, resume, healthy) go to the live replica with
  the fewest requests in flight: every replica reads the same (shared) tracker store.
- Never twice. A request is sent to another replica ONLY when it was never delivered: the
  connection was refused or the connect timed out (CONNECT_TIMEOUT, so a dead replica is
  skipped well within 2 s). That replica is marked down and re-probed (GET /status) in the
  background after a cool-down; turns go to it again once it answers. Once a request may
  have reached Rasa (read timeout, connection reset or closed after sending, any non-200
  answer) it is never resent: `RasaUnavailable` is raised and the gateway answers with its
  fallback and an officer case.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from casework import logconfig, logsafe

logger = logging.getLogger(__name__)


# The token travels in URLs: the one log filter hides it (and other secrets) wherever
# httpx logs a request, and `redact` hides it in the errors we raise and log.
redact = logsafe.redact_text
logsafe.install()

URLS_FILE = "rasa-urls.json"  # in JMT_VAR_DIR, written by the launcher
CONNECT_TIMEOUT = 1.0  # seconds: a replica that does not accept by then is skipped
COOL_DOWN = 3.0  # seconds before a replica marked down is probed again
FILE_CHECK_EVERY = 1.0  # seconds between looks at the URLs file
# Rasa's server (Sanic) closes idle keep-alive connections after 5 s. Reusing one just as
# it closes would fail *after* sending — an ambiguous failure that must not be retried —
# so our idle connections expire well before Rasa's do.
KEEPALIVE_EXPIRY = 2.0
# Errors raised before any byte of the request left: safe to send elsewhere.
NOT_DELIVERED = (httpx.ConnectError, httpx.ConnectTimeout)


class RasaUnavailable(Exception):
    """Rasa (or the action server behind it) did not answer usefully. The request may have
    reached Rasa: it must not be sent again."""


class RasaNotReached(RasaUnavailable):
    """No replica accepted the connection: the request was never delivered."""


@dataclass(frozen=True)
class ParseResult:
    intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]] = field(default_factory=list)  # [{name, confidence}] top 5
    entities: list[dict[str, Any]] = field(default_factory=list)  # [{entity, value, start, end}]
    topic: str | None = None  # the FAQ answer chosen: "faq/<topic>" (retrieval intents)


def _retrieval_key(parse: dict[str, Any]) -> str | None:
    """The retrieval intent's full key ("faq/passport") the response selector chose for
    this message's intent, if any."""
    intent = (parse.get("intent") or {}).get("name")
    selectors = parse.get("response_selector") or {}
    chosen = selectors.get(intent) or selectors.get("default") or {}
    key = (chosen.get("response") or {}).get("intent_response_key")
    return key if isinstance(key, str) and key.startswith(f"{intent}/") else None


def parse_result(parse: dict[str, Any]) -> ParseResult:
    """A ParseResult from Rasa's parse data (a tracker's latest_message, or the
    parse_data of a stored user event)."""
    intent = parse.get("intent") or {}
    ranking = [
        {"name": r.get("name"), "confidence": r.get("confidence")}
        for r in (parse.get("intent_ranking") or [])[:5]
    ]
    entities = [
        {k: e.get(k) for k in ("entity", "value", "start", "end")}
        for e in parse.get("entities") or []
    ]
    return ParseResult(
        intent.get("name"), intent.get("confidence"), ranking, entities, _retrieval_key(parse)
    )


@dataclass(frozen=True)
class TrackerState:
    """What the gateway needs of a conversation's tracker (GET …/tracker)."""

    paused: bool
    latest_message: dict[str, Any]


@dataclass
class Replica:
    url: str
    down: bool = False
    in_flight: int = 0
    probe: asyncio.Task | None = None


def _rank(sender: str, url: str) -> int:
    """Rendezvous (highest random weight) hashing: each sender's order of replicas."""
    digest = hashlib.blake2b(f"{url}\0{sender}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def normalise_urls(urls: Sequence[str]) -> list[str]:
    """Base URLs without trailing slashes, blanks or repeats, in their given order."""
    seen: list[str] = []
    for url in urls:
        url = url.strip().rstrip("/")
        if url and url not in seen:
            seen.append(url)
    return seen


def read_urls_file(path: Path) -> tuple[list[str], int] | None:
    """(urls, generation) from the launcher's file, or None when it is missing or unusable
    (the caller keeps what it has)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("ignoring %s: %s", path, error)
        return None
    urls = data.get("urls") if isinstance(data, dict) else None
    generation = data.get("generation", 0) if isinstance(data, dict) else None
    if (
        not isinstance(urls, list)
        or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls)
        or not normalise_urls(urls)
        or not isinstance(generation, int)
    ):
        logger.warning('ignoring %s: expected {"urls": [base URLs], "generation": n}', path)
        return None
    return normalise_urls(urls), generation


def user_turns(events: list[dict[str, Any]]) -> int:
    """Resident turns a tracker's events hold: user events less those reverted by a
    `rewind` (UserUtteranceReverted) — what counting duplicated turns must use."""
    turns = 0
    for event in events:
        if event.get("event") == "user":
            turns += 1
        elif event.get("event") == "rewind" and turns:
            turns -= 1
    return turns


class RasaClient:
    """One shared async HTTP client per process (connection pooling) over the replicas."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        token: str | None = None,
        timeout: float = 30.0,
        urls_file: Path | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        cool_down: float = COOL_DOWN,
        file_check_every: float = FILE_CHECK_EVERY,
    ) -> None:
        configured = normalise_urls([base_url] if isinstance(base_url, str) else base_url)
        if not configured:
            raise ValueError("RasaClient needs at least one base URL")
        self.configured = configured
        self.urls_file = urls_file
        self.generation: int | None = None  # of the URLs file in use; None: configured list
        self.cool_down = cool_down
        self.file_check_every = file_check_every
        self._replicas: list[Replica] = [Replica(url) for url in configured]
        self._file_stamp: tuple[int, int] | None = None
        self._file_checked_at = time.monotonic()
        self._file_check: asyncio.Task | None = None
        if urls_file is not None:  # at start-up, before the event loop serves anything
            self._apply_file(self._read_if_changed())
        # Every call carries the token (Rasa ignores it on the REST channel).
        self._http = httpx.AsyncClient(
            params={"token": token} if token else None,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=200, max_keepalive_connections=50, keepalive_expiry=KEEPALIVE_EXPIRY
            ),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> RasaClient:
        """RASA_URLS (else RASA_URL), then the launcher's live list in JMT_VAR_DIR."""
        return cls(
            settings.rasa_urls or [settings.rasa_url],
            token=settings.rasa_token,
            urls_file=Path(settings.var_dir) / URLS_FILE,
        )

    @property
    def base_url(self) -> str:
        return self._replicas[0].url

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self._replicas]

    @property
    def live_urls(self) -> list[str]:
        return [r.url for r in self._replicas if not r.down]

    async def close(self) -> None:
        for task in [r.probe for r in self._replicas] + [self._file_check]:
            if task is not None:
                task.cancel()
        await self._http.aclose()

    # ------------------------------------------------------------------ the URLs file

    def _read_if_changed(self) -> tuple[bool, tuple[list[str], int] | None]:
        """(changed since the last look, the file's content or None when it is gone or
        unusable). Blocking: runs in a worker thread."""
        assert self.urls_file is not None
        try:
            stat = os.stat(self.urls_file)
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp == self._file_stamp:
            return False, None
        self._file_stamp = stamp
        return True, None if stamp is None else read_urls_file(self.urls_file)

    def _apply_file(self, looked: tuple[bool, tuple[list[str], int] | None]) -> None:
        changed, found = looked
        if not changed:
            return
        if found is None:
            if self._file_stamp is None and self.generation is not None:
                logger.warning("%s is gone: back to the configured Rasa URLs", self.urls_file)
                self.generation = None
                self._set_urls(self.configured)
            return  # unusable: keep the list in use
        urls, generation = found
        if urls != self.urls or generation != self.generation:
            logger.info("Rasa replicas, generation %s: %s", generation, ", ".join(urls))
        self.generation = generation
        self._set_urls(urls)

    def _set_urls(self, urls: list[str]) -> None:
        """Switch to `urls`, keeping what is known (down, in flight) of replicas kept."""
        known = {r.url: r for r in self._replicas}
        for gone in set(known) - set(urls):
            probe = known[gone].probe
            if probe is not None:
                probe.cancel()
        self._replicas = [known.get(url) or Replica(url) for url in urls]

    async def refresh(self) -> None:
        """Re-read the URLs file now if it changed (off the event loop)."""
        if self.urls_file is not None:
            self._apply_file(await asyncio.to_thread(self._read_if_changed))

    def _maybe_refresh(self) -> None:
        """At most once a second, look at the URLs file in the background; this call
        goes on with the list it has."""
        if self.urls_file is None:
            return
        now = time.monotonic()
        if now - self._file_checked_at < self.file_check_every:
            return
        if self._file_check is not None and not self._file_check.done():
            return
        self._file_checked_at = now
        self._file_check = asyncio.create_task(self.refresh())

    # ------------------------------------------------------------------ choosing replicas

    def _candidates(self, sender: str | None) -> list[Replica]:
        """Replicas to try in order: live ones first (by the sender's rank, or fewest in
        flight), then those marked down, as a last resort (a refused connection costs
        little, and one may be back before its probe says so)."""
        self._maybe_refresh()
        for replica in self._replicas:
            if replica.down and replica.probe is None:
                replica.probe = asyncio.create_task(self._probe(replica))
        if sender is not None:
            ordered = sorted(self._replicas, key=lambda r: _rank(sender, r.url), reverse=True)
        else:
            ordered = sorted(self._replicas, key=lambda r: r.in_flight)
        return [r for r in ordered if not r.down] + [r for r in ordered if r.down]

    def _mark_down(self, replica: Replica, error: Exception) -> None:
        if not replica.down:
            logger.warning(
                "Rasa replica %s is down (%s): skipped until it answers again",
                replica.url,
                type(error).__name__,
            )
        replica.down = True

    async def _probe(self, replica: Replica) -> None:
        """Bring a replica marked down back once GET /status answers."""
        try:
            while replica.down:
                await asyncio.sleep(self.cool_down)
                try:
                    response = await self._http.get(f"{replica.url}/status", timeout=3)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    replica.down = False
                    logger.info("Rasa replica %s is back", replica.url)
        finally:
            replica.probe = None

    async def _request(
        self, method: str, path: str, *, sender: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send to the first replica that accepts the connection. Raises `RasaNotReached`
        when none did (nothing was delivered), `RasaUnavailable` when the one that accepted
        failed afterwards (never sent elsewhere)."""
        tried: set[str] = set()
        refused: list[str] = []
        request_id = logconfig.REQUEST_ID.get()
        if request_id != logconfig.NO_REQUEST:  # Rasa's lines for this call carry it
            kwargs["headers"] = {
                **kwargs.get("headers", {}),
                logconfig.REQUEST_ID_HEADER: request_id,
            }
        for attempt in range(2):
            for replica in self._candidates(sender):
                if replica.url in tried:
                    continue
                tried.add(replica.url)
                replica.in_flight += 1
                try:
                    response = await self._http.request(method, replica.url + path, **kwargs)
                except NOT_DELIVERED as error:
                    self._mark_down(replica, error)
                    refused.append(f"{replica.url}: {type(error).__name__}")
                    continue
                except httpx.HTTPError as error:
                    # It may have reached Rasa: never resent.
                    raise RasaUnavailable(
                        f"{type(error).__name__} from {replica.url}: {redact(str(error))}"
                    ) from error
                finally:
                    replica.in_flight -= 1
                if replica.down:  # it answered: whatever the probe thinks, it is up
                    replica.down = False
                return response
            if attempt == 0 and self.urls_file is not None:
                await self.refresh()  # the launcher may have switched replicas just now
        raise RasaNotReached("no Rasa replica accepted the connection: " + "; ".join(refused))

    # ------------------------------------------------------------------ the calls

    async def send(
        self, sender: str, text: str, metadata: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Send a resident's message through the REST channel; returns the bot messages.
        Delivered at most once (see the module docstring)."""
        payload = {"sender": sender, "message": text, "metadata": metadata or {}}
        response = await self._request(
            "POST", "/webhooks/rest/webhook", sender=sender, json=payload
        )
        if response.status_code != 200:
            raise RasaUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            messages = response.json()
        except ValueError as error:
            raise RasaUnavailable(f"unreadable answer: {response.text[:200]}") from error
        if not isinstance(messages, list):
            raise RasaUnavailable(f"unexpected answer: {str(messages)[:200]}")
        return messages

    async def tracker_state(self, sender: str) -> TrackerState | None:
        """The conversation's `paused` flag and latest message, or None when unreadable."""
        try:
            response = await self._request(
                "GET", f"/conversations/{sender}/tracker", params={"include_events": "NONE"}
            )
            response.raise_for_status()
            data = response.json()
        except (RasaUnavailable, httpx.HTTPError, ValueError) as error:
            logger.warning("could not read %s's tracker: %s", sender, redact(str(error)))
            return None
        if not isinstance(data, dict):
            return None
        return TrackerState(bool(data.get("paused")), data.get("latest_message") or {})

    async def parse(self, text: str) -> ParseResult | None:
        """Rasa's NLU on `text` alone (`POST /model/parse`): no conversation is touched, so
        it is safe while an officer owns one. None when Rasa cannot answer."""
        try:
            response = await self._request("POST", "/model/parse", json={"text": text})
            response.raise_for_status()
            data = response.json()
        except (RasaUnavailable, httpx.HTTPError, ValueError) as error:
            logger.warning("could not parse a message: %s", redact(str(error)))
            return None
        return parse_result(data) if isinstance(data, dict) else None

    async def latest_parse(self, sender: str) -> ParseResult:
        """Intent, ranking and entities of the sender's latest message (from the tracker)."""
        state = await self.tracker_state(sender)
        if state is None:
            logger.warning("could not read the parse of %s's message", sender)
            return ParseResult(None, None)
        return parse_result(state.latest_message)

    async def resume(self, sender: str, *, revert_latest: bool = False) -> bool:
        """Give the conversation back to the bot after an officer closes the case: end any
        intake the officer took over mid-way, un-pause the conversation, and listen (a
        paused tracker ran no `action_listen`; without one the policies would answer the
        next message with silence). With `revert_latest`, the latest user message is
        first reverted (`rewind`): a paused tracker logged it without running the turn,
        and it is about to be sent again. (In Rasa, a rewind also drops the events back to
        the action before that message — the pause among them.)"""
        events = [
            *([{"event": "rewind"}] if revert_latest else []),
            {"event": "active_loop", "name": None},
            {"event": "slot", "name": "requested_slot", "value": None},
            {"event": "resume"},
            {"event": "action", "name": "action_listen"},
        ]
        try:
            response = await self._request(
                "POST", f"/conversations/{sender}/tracker/events", json=events
            )
            response.raise_for_status()
        except (RasaUnavailable, httpx.HTTPError) as error:
            logger.error(
                "could not resume %s's conversation in Rasa: %s", sender, redact(str(error))
            )
            return False
        return True

    async def healthy(self) -> bool:
        """At least one replica answers GET /status."""
        for replica in self._candidates(None):
            try:
                response = await self._http.get(f"{replica.url}/status", timeout=3)
            except NOT_DELIVERED as error:
                self._mark_down(replica, error)
                continue
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                return True
        return False
