"""Per-resident rate limits shared by every gateway worker, through Redis.

`RateLimiter` (gateway/service.py) counts in the worker's memory: with several workers a
resident gets the limit once per worker. When `REDIS_URL` is set, `RedisRateLimiter`
keeps the same sliding window (at most `limit` messages per `window` seconds) in one
Redis sorted set per resident, checked and updated atomically by one Lua script, so the
limit holds across workers and hosts. The key carries a hash of the openid, not the
openid itself.

A cache must never silence residents: when Redis is unreachable or slow (short socket
timeouts keep the event loop answering), the message is allowed (fail open), a warning
is logged once per outage, and Redis is left alone for `retry_after` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any

import redis

from gateway.service import RateLimiter

logger = logging.getLogger(__name__)

# KEYS[1]: the resident's window; ARGV: now (ms), window (ms), limit, a unique member.
# Entries older than the window are dropped (as the in-memory limiter does), then the
# message is counted only if the window has room: a refused message does not extend it.
SLIDING_WINDOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[2])))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisRateLimiter(RateLimiter):
    """At most `limit` messages per resident per `window` seconds, across all workers."""

    def __init__(
        self,
        url: str,
        *,
        limit: int = 20,
        window: float = 60.0,
        prefix: str = "jmt:rate:",
        timeout: float = 0.25,
        retry_after: float = 5.0,
        client: Any = None,
    ) -> None:
        super().__init__(limit=limit, window=window)
        self.prefix = prefix
        self.retry_after = retry_after
        self.client = client or redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._script = self.client.register_script(SLIDING_WINDOW)
        self._skip_until = float("-inf")
        self._failing = False

    def key(self, resident: str) -> str:
        return self.prefix + hashlib.sha256(resident.encode()).hexdigest()[:32]

    def allow(self, key: str, now: float | None = None) -> bool:
        if time.monotonic() < self._skip_until:
            return True  # Redis was unreachable a moment ago: fail open
        now_ms = int((time.time() if now is None else now) * 1000)
        try:
            allowed = self._script(
                keys=[self.key(key)],
                args=[now_ms, int(self.window * 1000), self.limit, f"{now_ms}:{uuid.uuid4().hex}"],
            )
        except redis.RedisError as error:
            self._skip_until = time.monotonic() + self.retry_after
            if not self._failing:
                logger.warning(
                    "Redis rate limit unavailable (%s): messages are not limited until it is back",
                    type(error).__name__,
                )
            self._failing = True
            return True
        if self._failing:
            logger.warning("Redis rate limit available again")
            self._failing = False
        return bool(allowed)

    def close(self) -> None:
        self.client.close()


def rate_limiter_from_settings(settings: Any) -> RateLimiter:
    """Shared through Redis when `REDIS_URL` is set; in the worker's memory otherwise
    (the embedded default: one worker)."""
    url = getattr(settings, "redis_url", None)
    return RedisRateLimiter(url) if url else RateLimiter()
