"""A loop that runs in the background of a gateway worker until the app stops."""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


class BackgroundLoop:
    """Runs `run_once` every `poll_seconds` (sooner when `wakeup` is set); an exception in
    one pass is logged and the next pass goes on — a loop that dies silently loses work."""

    name = "background"

    def __init__(self, *, poll_seconds: float = 1.0) -> None:
        self.poll_seconds = poll_seconds
        self.wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def run_once(self) -> int:
        """One pass; returns how much it did (0: wait before the next pass)."""
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

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
                done = await self.run_once()
            except Exception:
                logger.exception("%s pass failed", self.name)
                done = 0
            if done == 0:
                try:
                    await asyncio.wait_for(self.wakeup.wait(), self.poll_seconds)
                except asyncio.TimeoutError:
                    pass
                self.wakeup.clear()
