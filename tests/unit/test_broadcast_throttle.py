"""The broadcast loop's throttle: on average the configured rate, a burst of at most one
second's worth after idle time (measured with a fake clock: no sleeping)."""

from __future__ import annotations

import asyncio

from gateway import broadcast_worker
from gateway.broadcast_worker import BroadcastWorker


def test_the_throttle_keeps_to_the_rate_with_at_most_one_second_of_burst(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(broadcast_worker.time, "monotonic", lambda: clock[0])

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    loop = BroadcastWorker(None, rate_per_second=10.0, sleep=sleep)  # type: ignore[arg-type]

    async def sends(count: int) -> float:
        started = clock[0]
        for _ in range(count):
            await loop._throttle()
        return clock[0] - started

    assert asyncio.run(sends(1)) == 0.0  # after idle time: at once
    # 10/s: the next 100 sends take 10 s less the burst allowance of the first second
    took = asyncio.run(sends(100))
    assert 8.9 <= took <= 10.0, took
    clock[0] += 60  # idle for a minute: only one second's worth (10, and this one) at once
    burst = asyncio.run(sends(20))
    assert abs(burst - 0.9) < 1e-6, burst  # 11 at once, then 9 more at 0.1 s each
