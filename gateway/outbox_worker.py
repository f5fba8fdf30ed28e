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
    ) -> None:
        super().__init__(poll_seconds=poll_seconds)
        self.messenger = messenger
        self.database_url = database_url

    async def run_once(self) -> int:
        return await self.deliver_due()

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
