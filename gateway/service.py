"""One inbound WeChat message, from "stored" to "answered" (design rules 1–3).

1. Store it first, idempotently (`casework.intake`); a retry gets the stored reply (or
   `success`); a replayed signature with another body stores nothing (`intake.Replayed`).
2. If an officer owns the conversation, it waits for the officer; the bot stays quiet.
3. Otherwise ask Rasa. An answer inside the passive window (~4.5 s from the request's
   arrival) goes back in the HTTP response; a later one goes through the outbox
   (customer-service API).
4. Rasa or the action server down or too slow: the resident is told a human will answer
   and an open case is recorded for officers; later messages try the bot again. The
   message is never sent to Rasa twice (integrations.rasa: only a request that no replica
   accepted goes to another replica).
5. One owner, really: when the database says the bot owns the conversation but Rasa's
   tracker is paused (a restore, a purge, a crash between a hand-off's two writes), the
   conversation is resumed and the message asked again, once (`_unpause`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx

from casework import (
    claims,
    conversations,
    db,
    handling,
    intake,
    residents,
    subscriptions,
    tracker_store,
)
from casework.clock import utcnow
from casework.intake import SignedCallback, StoredInbound
from casework.privacy import mask_pii
from gateway import observability
from gateway.messages import Incoming, bot_texts, compose
from integrations.rasa import ParseResult, RasaClient, RasaUnavailable, parse_result

logger = logging.getLogger(__name__)

PASSIVE_BUDGET = 4.5  # seconds: WeChat gives up after 5
BOT_UNAVAILABLE = (
    "抱歉，智能助手暂时无法回复，已为您转给值班民警，民警会尽快在这里回复您。"
    "情况紧急请直接拨打110。"
)
# 退订 / 订阅提醒 while an officer owns the conversation (the bot's own words for them are
# utter_unsubscribed / utter_subscribed in bot/domain/subscription.yml).
WARNINGS_CHOICES = {
    "unsubscribe_warnings": (
        "好的，已为您退订全部预警推送，今后不再发送。如需恢复，回复“订阅提醒”即可。"
        "民警仍会在这里回复您的问题。"
    ),
    "subscribe_warnings": (
        "好的，已为您恢复预警推送。不想再收，回复“退订”即可。民警仍会在这里回复您的问题。"
    ),
    # True whether or not a number was registered: none is kept now.
    "withdraw_mobile": (
        "好的，已撤回您的手机号授权：我们不再保存您的手机号，也不会用它联系您或推送预警。"
        "民警仍会在这里回复您的问题。"
    ),
}
# The trainers' inbox's LOW_CONFIDENCE line: below it, the officer reads it and decides.
WARNINGS_CHOICE_CONFIDENCE = 0.6
RATE_LIMITED = "您的消息发得有点快，我们都已收到，请稍等片刻再继续发送。情况紧急请直接拨打110。"


class ActionServerProbe:
    """Is the action server up? Rasa answers even when it is down (it just skips the custom
    actions), so the gateway asks the action server itself, at most every few seconds.
    Only the first check waits for the answer; later ones refresh in the background (one
    kept client), so no message waits for the probe."""

    def __init__(self, url: str | None, *, every: float = 3.0) -> None:
        self.url = url.rstrip("/") + "/health" if url else None
        self.every = every
        self._checked_at = float("-inf")
        self._up = True
        self._http: httpx.AsyncClient | None = None
        self._refresh: asyncio.Task | None = None

    async def up(self) -> bool:
        if self.url is None:
            return True
        if self._checked_at == float("-inf"):
            await self._check()
        elif time.monotonic() - self._checked_at >= self.every and (
            self._refresh is None or self._refresh.done()
        ):
            self._refresh = asyncio.create_task(self._check())
        return self._up

    async def _check(self) -> None:
        assert self.url is not None
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=1.5)
        try:
            self._up = (await self._http.get(self.url)).status_code == 200
        except httpx.HTTPError:
            self._up = False
        self._checked_at = time.monotonic()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        if self._http is not None:
            await self._http.aclose()


class RateLimiter:
    """At most `limit` messages per resident per `window` seconds, in this worker's memory
    (the embedded default); `gateway.ratelimit.RedisRateLimiter` shares the same limit
    across workers when REDIS_URL is set."""

    def __init__(self, limit: int = 20, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        seen = self._seen[key]
        while seen and now - seen[0] > self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True


class InboundService:
    def __init__(
        self,
        *,
        rasa: RasaClient,
        database_url: str | None = None,
        rate_limiter: RateLimiter | None = None,
        passive_budget: float = PASSIVE_BUDGET,
        outbox_wakeup: asyncio.Event | None = None,
        action_server: ActionServerProbe | None = None,
        tracker_url: str | None = None,
        owner: str | None = None,
    ) -> None:
        self.rasa = rasa
        # this worker as the owner of the bot turns it starts (`casework.claims`)
        self.owner = owner or claims.worker_id()
        self.action_server = action_server or ActionServerProbe(None)
        self.database_url = database_url
        self.rate_limiter = rate_limiter or RateLimiter()
        self.passive_budget = passive_budget
        self.outbox_wakeup = outbox_wakeup
        # Rasa's SQL tracker store: parses are read there, not from a replica (cheaper).
        self.tracker_url = tracker_url
        self._background: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ storage (sync)

    def _store(self, incoming: Incoming, signed: SignedCallback | None) -> StoredInbound:
        with db.session_scope(self.database_url) as session:
            return intake.store_inbound(
                session=session,
                signed=signed,
                openid=incoming.openid,
                dedupe_key=incoming.dedupe_key,
                msg_type=incoming.msg_type,
                content=incoming.content,
                media=incoming.media,
                event=incoming.event,
                # a message for the bot is claimed as it is stored: if this worker dies
                # mid-turn, another one's sweep answers it (`recover_stalled_turns`)
                turn_owner=(
                    self.owner
                    if incoming.bot_text is not None and incoming.local_reply is None
                    else None
                ),
            )

    def _answer_passively(
        self, stored: StoredInbound, text: str, sender: str, at: datetime | None = None
    ) -> None:
        # Not durable: the reply is already on its way; a database crash may lose its record.
        with db.session_scope(self.database_url, durable=False) as session:
            intake.answer_passively(
                session=session,
                message_id=stored.message_id,
                conversation_id=stored.conversation_id,
                text=text,
                sender=sender,
                answered_at=at,
            )

    def _enqueue(self, stored: StoredInbound, openid: str, texts: list[str], sender: str) -> None:
        with db.session_scope(self.database_url) as session:
            queued = intake.answer_later(
                session=session,
                message_id=stored.message_id,
                conversation_id=stored.conversation_id,
                openid=openid,
                texts=texts,
                sender=sender,
                owner=self.owner,
            )
        if not queued:
            logger.warning(
                "message %s: the turn outlived its claim and was answered by the sweep; "
                "the bot's late answer is dropped",
                stored.message_id,
            )
        elif self.outbox_wakeup is not None:
            self.outbox_wakeup.set()

    def _take_rating(self, incoming: Incoming) -> bool:
        """The answer to "please rate us 1–5" after a case was closed."""
        if incoming.msg_type not in ("text", "voice") or not incoming.bot_text:
            return False
        with db.session_scope(self.database_url) as session:
            rating = handling.take_rating(
                session=session, openid=incoming.openid, text=incoming.bot_text
            )
        return rating is not None

    def _set_status(self, message_id: int, status: str) -> None:
        with db.session_scope(self.database_url) as session:
            intake.set_status(session=session, message_id=message_id, status=status)

    def _record_parse(self, message_id: int, parsed: ParseResult) -> None:
        observability.count_parse(parsed.intent)  # the fallback rate on /metrics
        with db.session_scope(self.database_url, durable=False) as session:
            intake.record_parse(
                session=session,
                message_id=message_id,
                intent=parsed.intent,
                confidence=parsed.confidence,
                ranking=parsed.ranking,
                entities=parsed.entities,
                topic=parsed.topic,
            )

    def _record_stored_parse(self, openid: str, message_id: int) -> bool:
        """Record the parse Rasa stored for this message; False when it cannot be read."""
        if self.tracker_url is None:
            return False
        found = tracker_store.latest_user_parse(tracker_url=self.tracker_url, sender_id=openid)
        if found is None:
            return False
        self._record_parse(message_id, parse_result(found))
        return True

    def _owner(self, openid: str) -> str:
        with db.session_scope(self.database_url) as session:
            return conversations.conversation_for(session=session, openid=openid).owner

    def _bot_down_case(self, openid: str, content: str, error: str) -> None:
        with db.session_scope(self.database_url) as session:
            intake.open_bot_down_case(session=session, openid=openid, content=content, error=error)

    # ------------------------------------------------------------------ the flow

    async def handle(
        self,
        incoming: Incoming,
        *,
        signed: SignedCallback | None = None,
        arrived: float | None = None,
        after: list[Callable[[], Awaitable[None]]] | None = None,
    ) -> str | None:
        """The passive reply text for this request, or None for `success`. `arrived`
        (time.monotonic() when the request came in) starts the passive-reply budget:
        WeChat's 5 s run from its request, not from when we got round to asking the bot.
        With `after`, the records of a bot's passive answer (the reply in the transcript,
        the parse) are left there for the caller to run once the reply is sent — they
        are not what the resident waits for; without it they are written before
        returning. Raises `intake.Replayed` when `signed` was seen with another body."""
        arrived = time.monotonic() if arrived is None else arrived
        stored = await asyncio.to_thread(self._store, incoming, signed)
        if not stored.new:
            logger.info(
                "retry of %s: %s", incoming.dedupe_key, "same reply" if stored.reply else "success"
            )
            return stored.reply
        logger.info("in  %s %s: %s", incoming.openid, incoming.msg_type, mask_pii(incoming.content))
        if incoming.local_reply:
            await asyncio.to_thread(self._answer_passively, stored, incoming.local_reply, "system")
            return incoming.local_reply
        if incoming.bot_text is None:
            return None
        if stored.owner == "officer":
            await asyncio.to_thread(self._set_status, stored.message_id, "for_officer")
            # the officer answers; only 退订 / 订阅提醒 / 删手机号 are honoured at once
            return await self._warnings_choice(incoming, stored)
        if not self.rate_limiter.allow(incoming.openid):
            await asyncio.to_thread(self._answer_passively, stored, RATE_LIMITED, "system")
            return RATE_LIMITED
        if stored.awaiting_rating and await asyncio.to_thread(self._take_rating, incoming):
            await asyncio.to_thread(
                self._answer_passively, stored, handling.RATING_THANKS, "system"
            )
            return handling.RATING_THANKS
        return await self._ask_bot(incoming, stored, arrived, after)

    async def _warnings_choice(self, incoming: Incoming, stored: StoredInbound) -> str | None:
        """退订 / 订阅提醒 and withdrawing the mobile work at any time (issue 11), also
        while an officer owns the conversation and the bot is not asked: the message's
        intent comes from Rasa's NLU alone (no tracker), and a clear choice is carried
        out and confirmed. The message still waits for the officer."""
        if not incoming.bot_text:
            return None
        parsed = await self.rasa.parse(incoming.bot_text)
        if parsed is None or (parsed.confidence or 0.0) < WARNINGS_CHOICE_CONFIDENCE:
            return None
        reply = WARNINGS_CHOICES.get(parsed.intent or "")
        if reply is None:
            return None
        await asyncio.to_thread(self._set_warnings, incoming.openid, parsed.intent or "")
        await asyncio.to_thread(self._answer_aside, stored, reply)
        logger.info("%s: %s while an officer owns the conversation", incoming.openid, parsed.intent)
        return reply

    def _set_warnings(self, openid: str, intent: str) -> None:
        with db.session_scope(self.database_url) as session:
            if intent == "unsubscribe_warnings":
                subscriptions.opt_out(session=session, openid=openid)
            elif intent == "withdraw_mobile":
                residents.withdraw_mobile(session=session, openid=openid)
            else:
                subscriptions.opt_in(session=session, openid=openid)

    def _answer_aside(self, stored: StoredInbound, text: str) -> None:
        with db.session_scope(self.database_url) as session:
            intake.answer_aside(
                session=session,
                message_id=stored.message_id,
                conversation_id=stored.conversation_id,
                text=text,
            )

    async def _ask_bot(
        self,
        incoming: Incoming,
        stored: StoredInbound,
        arrived: float,
        after: list[Callable[[], Awaitable[None]]] | None = None,
    ) -> str | None:
        task = asyncio.create_task(self._bot_turn(incoming, stored.message_id))
        left = max(self.passive_budget - (time.monotonic() - arrived), 0.0)
        try:
            texts, error = await asyncio.wait_for(asyncio.shield(task), left)
        except asyncio.TimeoutError:
            # Too slow for a passive reply: answer `success`, deliver when the bot is done.
            self._keep(asyncio.create_task(self._deliver_late(task, incoming, stored)))
            return None
        if error is not None:
            await asyncio.to_thread(self._bot_down_case, incoming.openid, incoming.content, error)
            texts = [BOT_UNAVAILABLE]
        elif after is None:
            self.record_parse_later(incoming, stored.message_id)
        if not texts:
            await asyncio.to_thread(self._set_status, stored.message_id, "answered")
            return None  # the bot chose to say nothing (e.g. the conversation is paused)
        passive, rest = compose(texts)
        if after is None:
            await asyncio.to_thread(self._answer_passively, stored, passive, "bot")
        else:
            answered_at = utcnow()  # the transcript keeps the order of the conversation

            async def record() -> None:
                await asyncio.to_thread(self._answer_passively, stored, passive, "bot", answered_at)
                if error is None:
                    await self._fetch_parse(incoming.openid, stored.message_id)

            after.append(record)
        if rest:
            await asyncio.to_thread(self._enqueue, stored, incoming.openid, rest, "bot")
        return passive

    async def _bot_turn(self, incoming: Incoming, message_id: int) -> tuple[list[str], str | None]:
        """(texts, None) from the bot, or ([], error) when it is unavailable."""
        if not await self.action_server.up():
            # Rasa would answer without its custom actions: intakes would silently stall.
            logger.error("action server down; %s goes to officers", incoming.openid)
            observability.count_turn(answered=False)
            return [], "action server unavailable"
        # Our message id travels with the message, so its tracker entry can be told apart;
        # the request id too: the actions log it (jmt/actions_server.py).
        metadata = {
            **incoming.metadata,
            "gateway_message_id": message_id,
            "request_id": observability.current_request_id(),
        }
        try:
            async with observability.rasa_call():
                replies = await self.rasa.send(incoming.openid, incoming.bot_text or "", metadata)
            if not replies:
                replies = await self._unpause(incoming, metadata)
        except RasaUnavailable as error:
            logger.error("Rasa unavailable for %s: %s", incoming.openid, error)
            observability.count_turn(answered=False)
            return [], str(error)
        observability.count_turn(answered=True)
        return bot_texts(replies), None

    async def _unpause(self, incoming: Incoming, metadata: dict) -> list[dict]:
        """Rasa said nothing. When that is because its tracker is paused although the
        database says the bot owns the conversation, give the conversation back to the bot
        and ask again, once; otherwise the bot really chose silence.

        Not a second turn: in Rasa 3.6 a paused tracker logs the message (`log_message` →
        UserUttered) but runs no prediction (`MessageProcessor._should_handle_message`),
        so the message is first reverted (`rewind`) together with the resume, and the
        tracker ends with one turn for it. The rewind is sent only when the tracker's latest
        message is this very one (its `gateway_message_id`)."""
        state = await self.rasa.tracker_state(incoming.openid)
        if state is None or not state.paused:
            return []
        latest = state.latest_message.get("metadata") or {}
        if latest.get("gateway_message_id") != metadata["gateway_message_id"]:
            logger.warning(
                "%s's tracker is paused, but its latest message is not this one; left as is",
                incoming.openid,
            )
            return []
        if await asyncio.to_thread(self._owner, incoming.openid) != "bot":
            return []  # an officer owns it now: paused is right
        logger.warning(
            "%s's tracker was paused while the bot owns the conversation: resuming it",
            incoming.openid,
        )
        if not await self.rasa.resume(incoming.openid, revert_latest=True):
            raise RasaUnavailable("the paused conversation could not be resumed")
        return await self.rasa.send(incoming.openid, incoming.bot_text or "", metadata)

    async def _deliver_late(
        self, task: asyncio.Task, incoming: Incoming, stored: StoredInbound
    ) -> None:
        texts, error = await task
        if error is not None:
            await asyncio.to_thread(self._bot_down_case, incoming.openid, incoming.content, error)
            texts = [BOT_UNAVAILABLE]
        else:
            self.record_parse_later(incoming, stored.message_id)
        if texts:
            await asyncio.to_thread(self._enqueue, stored, incoming.openid, texts, "bot")
        else:
            await asyncio.to_thread(self._set_status, stored.message_id, "answered")
        logger.info("late answer for %s queued (%d messages)", incoming.openid, len(texts))

    def record_parse_later(self, incoming: Incoming, message_id: int) -> None:
        self._keep(asyncio.create_task(self._fetch_parse(incoming.openid, message_id)))

    async def _fetch_parse(self, openid: str, message_id: int) -> None:
        if await asyncio.to_thread(self._record_stored_parse, openid, message_id):
            return
        parsed = await self.rasa.latest_parse(openid)
        await asyncio.to_thread(self._record_parse, message_id, parsed)

    def _keep(self, task: asyncio.Task) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for background work (late answers) — used at shutdown and in tests."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)
