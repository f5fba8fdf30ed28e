"""Sends warnings (预警推送) in the background of each gateway worker.

One pass: start due broadcasts (resolve audiences; the mass send by community tag for a
whole-district warning when BROADCAST_MASS_SEND=1), then — only while the outbox has
nothing due, so residents' own conversations go first — claim a batch of deliveries and
send them at this worker's share of BROADCAST_RATE_PER_SECOND: a customer-service
message to residents who wrote in the last 48 h, a template message to the others.
Claims (`casework.broadcast_queue`) make two workers never send one delivery twice; a
quota refusal (45009) pauses the broadcast with its reason. WeChat calls are synchronous
(wechatpy uses requests) and run in a thread. `clock` and `sleep` are injectable, so
tests move time instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from casework import broadcast_queue as queue
from casework import broadcasts, claims, db
from casework.broadcast_queue import DeliveryJob, MassGroup
from casework.clock import utcnow
from gateway.background import BackgroundLoop
from integrations.wechat import DeliveryError, WeChatMessenger

logger = logging.getLogger(__name__)

MAX_BATCH = 20  # claimed per pass: 20 × a 10 s worst-case send stays inside CLAIM_TTL
TAG_PREFIX = "jmt-"  # WeChat user tags of communities: jmt-万景社区
BURST_SECONDS = 1.0  # the throttle may catch up this much lost time
STATE_EVERY = 0.5  # seconds: a pause or cancel stops a batch this soon
NO_TEMPLATE = "WECHAT_WARNING_TEMPLATE_ID 未配置：无法发送模板消息"


class BroadcastWorker(BackgroundLoop):
    name = "broadcasts"

    def __init__(
        self,
        messenger: WeChatMessenger,
        *,
        database_url: str | None = None,
        template_id: str | None = None,
        rate_per_second: float = 20.0,
        mass_send: bool = False,
        poll_seconds: float = 1.0,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(poll_seconds=poll_seconds)
        self.messenger = messenger
        self.database_url = database_url
        self.template_id = template_id
        self.rate = max(rate_per_second, 0.001)
        self.mass_send = mass_send
        self.owner = owner or claims.worker_id()
        self.clock = clock
        self.sleep = sleep
        self._next_slot = 0.0  # time.monotonic() of the next allowed send

    async def run_once(self) -> int:
        started = await asyncio.to_thread(self._start_due)
        for broadcast_id in started:
            await self._mass_phase(broadcast_id)
        sent = await self.send_batch()
        await asyncio.to_thread(self._complete)
        return sent + len(started)

    # ------------------------------------------------------------------ start and mass

    def _start_due(self) -> list[int]:
        with db.session_scope(self.database_url) as session:
            return queue.start_due(
                session=session, owner=self.owner, now=self.clock(), mass_enabled=self.mass_send
            )

    def _mass_groups(self, broadcast_id: int) -> list[MassGroup]:
        with db.session_scope(self.database_url) as session:
            return queue.mass_groups(session=session, broadcast_id=broadcast_id, owner=self.owner)

    def _mass_begin(self, group: MassGroup) -> int:
        with db.session_scope(self.database_url) as session:
            return queue.mass_begin(
                session=session, group=group, owner=self.owner, now=self.clock()
            )

    def _mass_finish(self, group: MassGroup, msg_id: str | None, error: str | None) -> None:
        with db.session_scope(self.database_url) as session:
            queue.mass_finish(
                session=session,
                group=group,
                owner=self.owner,
                msg_id=msg_id,
                error=error,
                now=self.clock(),
            )

    def _release_start(self, broadcast_id: int) -> None:
        with db.session_scope(self.database_url) as session:
            queue.release_start(session=session, broadcast_id=broadcast_id, owner=self.owner)

    def _send_mass(self, group: MassGroup) -> str:
        tag_id = self.messenger.ensure_tag(f"{TAG_PREFIX}{group.community}"[:30])
        tagged, untagged = self.messenger.sync_tag(tag_id, group.openids)
        logger.info(
            "tag %s (%s): +%d −%d before the mass send", tag_id, group.community, tagged, untagged
        )
        text = broadcasts.message_text(topic=group.topic, title=group.title, text=group.text)
        return self.messenger.send_mass_to_tag(tag_id, text)

    async def _mass_phase(self, broadcast_id: int) -> None:
        """Per community: rows marked `sending` and committed BEFORE WeChat is asked, so a
        crash in between never sends a community's mass message twice."""
        try:
            for group in await asyncio.to_thread(self._mass_groups, broadcast_id):
                if not await asyncio.to_thread(self._mass_begin, group):
                    continue
                try:
                    msg_id = await asyncio.to_thread(self._send_mass, group)
                    error = None
                except DeliveryError as failure:
                    msg_id, error = None, f"群发失败：{failure}"
                    logger.error("broadcast %s mass send to %s: %s", broadcast_id, group, failure)
                await asyncio.to_thread(self._mass_finish, group, msg_id, error)
        finally:
            await asyncio.to_thread(self._release_start, broadcast_id)

    # ------------------------------------------------------------------ deliveries

    def _claim(self, limit: int) -> list[DeliveryJob]:
        with db.session_scope(self.database_url) as session:
            if queue.outbox_busy(session=session, now=self.clock()):
                return []  # residents' conversations first
            queue.sweep_exclusions(session=session)
        with db.session_scope(self.database_url) as session:
            return queue.claim_deliveries(
                session=session, owner=self.owner, now=self.clock(), limit=limit
            )

    def _deliver(self, job: DeliveryJob) -> tuple[str, str | None]:
        """(channel, msgid) of a sent delivery; raises DeliveryError."""
        if job.channel == "customer_service":
            text = broadcasts.message_text(topic=job.topic, title=job.title, text=job.text)
            try:
                self.messenger.send_text(job.openid, text)
                return "customer_service", None
            except DeliveryError as error:
                if error.errcode != 45015:
                    raise
                # the 48 h window closed since the resident's last message: a template
        if not self.template_id:
            raise DeliveryError(NO_TEMPLATE, permanent=True, errcode=None)
        data = broadcasts.template_data(
            topic=job.topic, title=job.title, text=job.text, at=job.send_at
        )
        return "template", self.messenger.send_template(job.openid, self.template_id, data)

    def _finish(self, job: DeliveryJob, result: tuple[str, str | None] | DeliveryError) -> str:
        with db.session_scope(self.database_url) as session:
            if not isinstance(result, DeliveryError):
                channel, msgid = result
                mine = queue.mark_sent(
                    session=session,
                    delivery_id=job.id,
                    owner=self.owner,
                    channel=channel,
                    msgid=msgid,
                    now=self.clock(),
                )
                return "sent" if mine else "lost"
            if result.errcode == queue.QUOTA_ERRCODE or str(result) == NO_TEMPLATE:
                queue.pause_for_quota(
                    session=session,
                    delivery_id=job.id,
                    broadcast_id=job.broadcast_id,
                    owner=self.owner,
                    error=str(result),
                )
                return "paused"
            return queue.mark_failed(
                session=session,
                delivery_id=job.id,
                owner=self.owner,
                channel=job.channel,
                error=str(result),
                permanent=result.permanent,
                attempts=job.attempts,
                now=self.clock(),
            )

    def _put_back(self, jobs: list[DeliveryJob]) -> None:
        if jobs:
            with db.session_scope(self.database_url) as session:
                queue.put_back(session=session, delivery_ids=[j.id for j in jobs], owner=self.owner)

    def _still_sending(self, broadcast_id: int) -> bool:
        with db.session_scope(self.database_url) as session:
            return queue.still_sending(session=session, broadcast_id=broadcast_id)

    def _complete(self) -> int:
        with db.session_scope(self.database_url) as session:
            return queue.complete_finished(session=session, now=self.clock())

    async def _throttle(self) -> None:
        """Token bucket: on average `rate` sends a second; time lost to a batch's own
        work (claims, sweeps) may be caught up, at most BURST_SECONDS' worth at once."""
        now = time.monotonic()
        self._next_slot = max(self._next_slot, now - BURST_SECONDS)
        if self._next_slot > now:
            await self.sleep(self._next_slot - now)
        self._next_slot += 1.0 / self.rate

    async def send_batch(self) -> int:
        """Claim a batch and send it at the configured rate. Returns how many were sent
        or failed (0 when nothing was due, or the outbox had work)."""
        limit = max(1, min(MAX_BATCH, int(self.rate)))
        jobs = await asyncio.to_thread(self._claim, limit)
        done = 0
        stopped: set[int] = set()
        checked: dict[int, float] = {}  # broadcast → when its state was last read
        for index, job in enumerate(jobs):
            # Paused or cancelled meanwhile? Read at most every STATE_EVERY seconds.
            due = time.monotonic() - checked.get(job.broadcast_id, float("-inf")) >= STATE_EVERY
            if job.broadcast_id not in stopped and due:
                checked[job.broadcast_id] = time.monotonic()
                if not await asyncio.to_thread(self._still_sending, job.broadcast_id):
                    stopped.add(job.broadcast_id)
            if job.broadcast_id in stopped:
                await asyncio.to_thread(self._put_back, [job])
                continue
            await self._throttle()
            try:
                result: tuple[str, str | None] | DeliveryError = await asyncio.to_thread(
                    self._deliver, job
                )
            except DeliveryError as error:
                result = error
            status = await asyncio.to_thread(self._finish, job, result)
            done += 1
            if status == "paused":
                logger.error("broadcast %s paused: %s", job.broadcast_id, result)
                await asyncio.to_thread(self._put_back, jobs[index + 1 :])
                break
            if status == "lost":
                logger.warning("delivery %s: claim taken over; result not recorded", job.id)
            elif isinstance(result, DeliveryError):
                logger.warning("delivery %s to %s: %s → %s", job.id, job.openid, result, status)
        return done
