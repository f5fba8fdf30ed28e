"""Claims under load: outbox items and governance tickets sent by 1 and by 2 workers over
one PostgreSQL database, and the cost of the Redis rate limit per message.

Each worker is an `OutboxWorker` / `Dispatcher` with its own owner, in its own thread,
passing until the queue is empty; the stand-ins (simulated WeChat API and governance
platform, labelled as such) take `--latency` ms per send and count what they get. Prints
throughput, the ratio 2 workers / 1 worker, and sends lost (0) and duplicated (0); then
p50/p95/p99 of `allow()` for the in-memory and the Redis limiter.

Runs in a schema of its own on TEST_DATABASE_URL (default: the local `test` database),
dropped afterwards; Redis from TEST_REDIS_URL (default redis://127.0.0.1:6379/15).

Usage: .venv/bin/python bench/claims.py [--items 600] [--latency 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JMT_ENV", "development")

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from casework import db, outbox  # noqa: E402
from casework.cases import open_ticket  # noqa: E402
from casework.conversations import conversation_for  # noqa: E402
from gateway.dispatcher import Dispatcher  # noqa: E402
from gateway.outbox_worker import OutboxWorker  # noqa: E402
from gateway.ratelimit import RedisRateLimiter  # noqa: E402
from gateway.service import RateLimiter  # noqa: E402


class SimulatedPartner:
    """Simulated WeChat API and governance platform: a fixed latency, a count per item."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.count: Counter = Counter()
        self._lock = threading.Lock()

    def send_text(self, openid: str, text: str) -> None:
        time.sleep(self.latency)  # the network round trip of the simulated API
        with self._lock:
            self.count[text] += 1

    def send_ticket(self, payload: dict) -> dict:
        time.sleep(self.latency)
        with self._lock:
            self.count[payload["ticket_id"]] += 1
        return {"ok": True}


def run_workers(workers: list, drain) -> float:
    """Each worker passes in its own thread until `drain()` says the queue is empty."""

    def loop(worker) -> None:
        while not drain():
            asyncio.run(worker.run_once())

    threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def outbox_round(url: str, items: int, workers: int, latency: float) -> dict:
    texts = [f"bench-{uuid.uuid4().hex[:8]}-{i}" for i in range(items)]
    with db.session_scope(url) as session:
        conversation = conversation_for(session=session, openid="o-bench")
        for text in texts:
            outbox.enqueue(
                session=session,
                conversation_id=conversation.id,
                openid="o-bench",
                text=text,
                sender="bot",
            )
    partner = SimulatedPartner(latency)
    pool = [
        OutboxWorker(partner, database_url=url, owner=f"bench:{n}")  # type: ignore[arg-type]
        for n in range(workers)
    ]

    def drained() -> bool:
        with db.session_scope(url) as session:
            left = session.execute(
                sa.text("select count(*) from outbox where status <> 'sent'")
            ).scalar()
        return left == 0

    seconds = run_workers(pool, drained)
    return _result(partner.count, texts, seconds)


def ticket_round(url: str, items: int, workers: int, latency: float) -> dict:
    with db.session_scope(url) as session:
        ids = [
            open_ticket(session=session, sender_id=f"o-b{i}", kind="noise", summary="噪音").id
            for i in range(items)
        ]
    partner = SimulatedPartner(latency)
    pool = [
        Dispatcher(
            database_url=url,
            notifier=None,
            governance=partner,  # type: ignore[arg-type]
            console_url="http://bench",
            owner=f"bench:{n}",
        )
        for n in range(workers)
    ]

    def drained() -> bool:
        with db.session_scope(url) as session:
            left = session.execute(
                sa.text("select count(*) from tickets where status = 'pending'")
            ).scalar()
        return left == 0

    seconds = run_workers(pool, drained)
    return _result(partner.count, ids, seconds)


def _result(count: Counter, expected: list, seconds: float) -> dict:
    return {
        "seconds": seconds,
        "per_second": len(expected) / seconds,
        "lost": sum(1 for key in expected if count[key] == 0),
        "duplicated": sum(n - 1 for n in count.values() if n > 1),
    }


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1e3:.3f} ms  p95 {cuts[94] * 1e3:.3f} ms  p99 {cuts[98] * 1e3:.3f} ms"


def limiter_latency(limiter: RateLimiter, calls: int) -> list[float]:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        limiter.allow(f"o-{i % 200}")
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--latency", type=float, default=5.0, help="ms per simulated send")
    parser.add_argument("--limiter-calls", type=int, default=5000)
    args = parser.parse_args()
    base = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"jmt_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, future=True)
    with admin.begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    try:
        db.migrate(url)
        print(f"PostgreSQL, {args.items} items per round, {args.latency:.0f} ms per simulated send")
        for name, round_ in (("outbox", outbox_round), ("tickets", ticket_round)):
            one = round_(url, args.items, 1, args.latency / 1000)
            two = round_(url, args.items, 2, args.latency / 1000)
            for workers, result in ((1, one), (2, two)):
                print(
                    f"{name:8} {workers} worker(s): {result['per_second']:7.1f}/s "
                    f"({result['seconds']:.2f} s)  lost {result['lost']}  "
                    f"duplicated {result['duplicated']}"
                )
            ratio = two["per_second"] / one["per_second"]
            print(f"{name:8} throughput 2 workers / 1 worker: {ratio:.2f}×")
    finally:
        db.get_engine.cache_clear()
        with admin.begin() as connection:
            connection.execute(sa.text(f'drop schema "{schema}" cascade'))
        admin.dispose()
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    prefix = f"jmt-bench:{uuid.uuid4().hex[:8]}:"
    memory = limiter_latency(RateLimiter(limit=20, window=60), args.limiter_calls)
    shared = RedisRateLimiter(redis_url, limit=20, window=60, prefix=prefix)
    through_redis = limiter_latency(shared, args.limiter_calls)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    print(f"rate limit in memory: {percentiles(memory)}")
    print(f"rate limit in Redis:  {percentiles(through_redis)}")


if __name__ == "__main__":
    main()
