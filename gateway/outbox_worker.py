"""Delivers the outbox through the WeChat customer-service API, in the background.

Runs inside each gateway worker; items are claimed atomically so several workers never
send the same message twice. Sending is synchronous (wechatpy uses requests) and runs in
a thread so the event loop keeps answering WeChat.
"""

from __future__ import annotations

import asyncio
import logging

from casework import db, outbox
from casework.privacy import mask_pii
from integrations.wechat import DeliveryError, WeChatMessenger

logger = logging.getLogger(__name__)


class OutboxWorker:
    def __init__(
        self,
        messenger: WeChatMessenger,
        *,
        database_url: str | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.messenger = messenger
        self.database_url = database_url
        self.poll_seconds = poll_seconds
        self.wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:  # a worker that dies silently loses messages: log and go on
                logger.exception("outbox pass failed")
                sent = 0
            if sent == 0:
                try:
                    await asyncio.wait_for(self.wakeup.wait(), self.poll_seconds)
                except asyncio.TimeoutError:
                    pass
                self.wakeup.clear()

    def _claim(self) -> list[outbox.Claimed]:
        with db.session_scope(self.database_url) as session:
            return outbox.claim_due(session=session)

    def _finish(self, item_id: int, error: DeliveryError | None) -> str:
        with db.session_scope(self.database_url) as session:
            if error is None:
                outbox.mark_sent(session=session, item_id=item_id)
                return "sent"
            return outbox.mark_failed(
                session=session, item_id=item_id, error=str(error), permanent=error.permanent
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
            if error is not None:
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
