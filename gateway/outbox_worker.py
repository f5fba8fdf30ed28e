"""Delivers the outbox through the WeChat customer-service API, in the background.

Runs inside each gateway worker; items are claimed with an owner (`owner`, host:pid)
and an expiry (`casework.claims`), so several workers never send the same message twice
and a worker that died mid-send is taken over once its claim expires. Sending is
synchronous (wechatpy uses requests) and runs in a thread so the event loop keeps
answering WeChat. `clock` is injectable so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from casework import claims, db, outbox
from casework.clock import utcnow
from casework.privacy import mask_pii
from gateway.background import BackgroundLoop
from integrations.wechat import DeliveryError, WeChatMessenger

logger = logging.getLogger(__name__)


class OutboxWorker(BackgroundLoop):
    name = "outbox"

    def __init__(
        self,
        messenger: WeChatMessenger,
        *,
        database_url: str | None = None,
        poll_seconds: float = 1.0,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(poll_seconds=poll_seconds)
        self.messenger = messenger
        self.database_url = database_url
        self.owner = owner or claims.worker_id()
        self.clock = clock

    async def run_once(self) -> int:
        return await self.deliver_due()

    def _claim(self) -> list[outbox.Claimed]:
        with db.session_scope(self.database_url) as session:
            return outbox.claim_due(session=session, owner=self.owner, now=self.clock())

    def _finish(self, item_id: int, error: DeliveryError | None) -> str:
        with db.session_scope(self.database_url) as session:
            if error is None:
                mine = outbox.mark_sent(session=session, item_id=item_id, owner=self.owner)
                return "sent" if mine else "lost"
            return outbox.mark_failed(
                session=session,
                item_id=item_id,
                error=str(error),
                permanent=error.permanent,
                owner=self.owner,
                now=self.clock(),
            )

    async def deliver_due(self) -> int:
        """One pass: send every due item once. Returns how many were attempted."""
        claimed = await asyncio.to_thread(self._claim)
        for item in claimed:
            try:
                await asyncio.to_thread(self.messenger.send_text, item.openid, item.text)
                error = None
            except DeliveryError as failure:
                error = failure
            status = await asyncio.to_thread(self._finish, item.id, error)
            if status == "lost":
                logger.warning(
                    "outbox %s: claim of %s expired and was taken over; result not recorded",
                    item.id,
                    self.owner,
                )
            elif error is not None:
                log = logger.error if status == "failed" else logger.warning
                log(
                    "outbox %s to %s attempt %d: %s → %s",
                    item.id,
                    item.openid,
                    item.attempts,
                    error,
                    status,
                )
            else:
                logger.info(
                    "outbox %s sent to %s: %s", item.id, item.openid, mask_pii(item.text[:40])
                )
        return len(claimed)
