"""Per-resident rate limits shared through Redis (REDIS_URL): two gateway workers see one
limit; Redis down means messages are allowed (fail open) with a warning. Runs against
the local Redis (TEST_REDIS_URL)."""

from __future__ import annotations

import logging
import socket
import threading
from types import SimpleNamespace

import redis

from gateway.ratelimit import RedisRateLimiter, rate_limiter_from_settings
from gateway.service import RateLimiter


def limiter(url: str, prefix: str, **kwargs) -> RedisRateLimiter:
    return RedisRateLimiter(url, prefix=prefix, **kwargs)


def test_two_workers_share_one_limit(redis_url, redis_prefix):
    first, second = (limiter(redis_url, redis_prefix, limit=3, window=60) for _ in range(2))
    answers = [
        worker.allow("o-flood", now=1000.0 + i) for i, worker in enumerate([first, second] * 3)
    ]
    assert answers == [True, True, True, False, False, False]
    assert first.allow("o-other", now=1006.0)  # per resident
    # the in-memory limiter, one per worker, would have let all six through
    local = [RateLimiter(limit=3, window=60), RateLimiter(limit=3, window=60)]
    assert all(local[i % 2].allow("o-flood", now=1000.0 + i) for i in range(6))


def test_the_window_slides_like_the_in_memory_limiter(redis_url, redis_prefix):
    shared = limiter(redis_url, redis_prefix, limit=2, window=10)
    memory = RateLimiter(limit=2, window=10)
    times = [0.0, 1.0, 5.0, 10.0, 11.0, 11.5, 25.0]
    # an entry exactly `window` old still counts (10.0); one older does not (11.0)
    expected = [True, True, False, False, True, True, True]
    assert [memory.allow("o-w", now=100 + t) for t in times] == expected
    assert [shared.allow("o-w", now=100 + t) for t in times] == expected


def test_concurrent_workers_never_exceed_the_limit(redis_url, redis_prefix):
    workers = [limiter(redis_url, redis_prefix, limit=10, window=60) for _ in range(4)]
    allowed: list[bool] = []
    lock = threading.Lock()

    def burst(worker: RedisRateLimiter) -> None:
        for _ in range(10):
            answer = worker.allow("o-burst")
            with lock:
                allowed.append(answer)

    threads = [threading.Thread(target=burst, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 40 and allowed.count(True) == 10


def test_the_key_does_not_carry_the_openid(redis_url, redis_prefix):
    shared = limiter(redis_url, redis_prefix, limit=5, window=60)
    assert shared.allow("oXYZ-private-openid")
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter(match=f"{redis_prefix}*")]
    ttl = client.pttl(keys[0]) if keys else None
    client.close()
    assert keys == [shared.key("oXYZ-private-openid")]
    assert "oXYZ" not in keys[0]
    assert ttl is not None and 0 < ttl <= 60_000  # an idle resident's window expires


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_redis_down_fails_open_with_one_warning(caplog):
    down = RedisRateLimiter(f"redis://127.0.0.1:{_closed_port()}/0", limit=1, window=60)
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        answers = [down.allow("o-down") for _ in range(5)]
    assert answers == [True] * 5  # over the limit of 1, and still nobody is silenced
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_settings_choose_the_limiter(redis_url):
    assert type(rate_limiter_from_settings(SimpleNamespace(redis_url=None))) is RateLimiter
    shared = rate_limiter_from_settings(SimpleNamespace(redis_url=redis_url))
    assert isinstance(shared, RedisRateLimiter)
    shared.close()
