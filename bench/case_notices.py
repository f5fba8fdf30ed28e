"""Personal DingTalk notices (issue 12) under load: every case of a community told to each
of its officers personally, by 1 and by 2 dispatchers over one PostgreSQL database; and
what the new step costs each dispatcher pass when nothing is due.

Each dispatcher has its own owner and thread and passes until nothing is pending; the
work-notice stand-in (SIMULATED DingTalk API, labelled as such) takes `--latency` ms per
send and counts each (case, officer). Prints throughput, the ratio 2 / 1 dispatchers,
notices lost (0) and duplicated (0), then p50/p95 of the idle step (escalation check +
claim of due notices) with `--idle-cases` open cases in the database.

Runs in a schema of its own on TEST_DATABASE_URL (default: the local `test` database),
dropped afterwards.

Usage: .venv/bin/python bench/case_notices.py [--cases 150] [--officers 3] [--latency 5]
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JMT_ENV", "development")

import sqlalchemy as sa  # noqa: E402

from casework import accounts, db  # noqa: E402
from casework.cases import open_case  # noqa: E402
from gateway.dispatcher import Dispatcher  # noqa: E402
from integrations.notify import Notification  # noqa: E402

COMMUNITY = "万景社区"


class SimulatedWorkNotice:
    """SIMULATED DingTalk work-notice API: a fixed latency, a count per (case, officer)."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.count: Counter = Counter()
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        time.sleep(self.latency)  # the network round trip of the simulated API
        with self._lock:
            for user_id in notification.user_ids:
                self.count[(notification.case_id, user_id)] += 1


@contextmanager
def schema() -> Iterator[str]:
    base = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"jmt_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, future=True)
    with admin.begin() as connection:
        connection.execute(sa.text(f'create schema "{name}"'))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"
    try:
        db.migrate(url)
        yield url
    finally:
        db.dispose_engines()
        with admin.begin() as connection:
            connection.execute(sa.text(f'drop schema "{name}" cascade'))
        admin.dispose()


def populate(url: str, cases: int, officers: int) -> list[tuple[int, str]]:
    """Officers of one community (bound to DingTalk) and `cases` new cases there; returns
    the (case, DingTalk id) pairs that must be told once each."""
    with db.session_scope(url) as session:
        staff = [f"dt-bench-{n}" for n in range(officers)]
        for n, dingtalk_id in enumerate(staff):
            accounts.create_user(
                session=session,
                username=f"bench{n}",
                password="bench-password",
                role="officer",
                community=COMMUNITY,
                dingtalk_id=dingtalk_id,
            )
        ids = [
            open_case(
                session=session,
                sender_id=f"o-bench-{i}",
                category="noise_complaint",
                priority="normal",
                reason="bench",
                summary="楼上装修",
                details={"street": "骆驼街道", "community": COMMUNITY},
            ).id
            for i in range(cases)
        ]
    return [(case_id, dingtalk_id) for case_id in ids for dingtalk_id in staff]


def delivery_round(cases: int, officers: int, workers: int, latency: float) -> dict:
    with schema() as url:
        expected = populate(url, cases, officers)
        partner = SimulatedWorkNotice(latency)
        pool = [
            Dispatcher(
                database_url=url,
                notifier=None,
                personal=partner,
                governance=None,
                console_url="http://bench",
                owner=f"bench:{n}",
            )
            for n in range(workers)
        ]

        def drained() -> bool:
            with db.session_scope(url) as session:
                unrouted = session.execute(
                    sa.text("select count(*) from cases where notify_status is null")
                ).scalar()
                pending = session.execute(
                    sa.text("select count(*) from case_notices where status = 'pending'")
                ).scalar()
            return unrouted == 0 and pending == 0

        def loop(worker: Dispatcher) -> None:
            while not drained():
                asyncio.run(worker.run_once())

        threads = [threading.Thread(target=loop, args=(w,)) for w in pool]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    return {
        "notices": len(expected),
        "seconds": seconds,
        "per_second": len(expected) / seconds,
        "lost": sum(1 for pair in expected if partner.count[pair] == 0),
        "duplicated": sum(n - 1 for n in partner.count.values() if n > 1),
    }


def idle_step(cases: int, passes: int) -> list[float]:
    """The new step of a pass with nothing due: escalation check + notices claim."""
    with schema() as url:
        populate(url, cases, 1)
        dispatcher = Dispatcher(
            database_url=url,
            notifier=None,
            personal=SimulatedWorkNotice(0),
            governance=None,
            console_url="http://bench",
            owner="bench:idle",
        )
        while True:  # route everything and send what routing queued
            asyncio.run(dispatcher.run_once())
            with db.session_scope(url) as session:
                left = session.execute(
                    sa.text("select count(*) from case_notices where status = 'pending'")
                ).scalar()
            if left == 0:
                break
        samples = []
        for _ in range(passes):
            started = time.perf_counter()
            asyncio.run(dispatcher._case_notices())
            samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=150)
    parser.add_argument("--officers", type=int, default=3)
    parser.add_argument("--latency", type=float, default=5.0, help="ms per simulated send")
    parser.add_argument("--idle-cases", type=int, default=2000)
    parser.add_argument("--idle-passes", type=int, default=200)
    args = parser.parse_args()
    print(
        f"PostgreSQL, {args.cases} cases × {args.officers} officers, "
        f"{args.latency:.0f} ms per simulated send"
    )
    results = {}
    for workers in (1, 2):
        result = delivery_round(args.cases, args.officers, workers, args.latency / 1000)
        results[workers] = result
        print(
            f"personal notices, {workers} dispatcher(s): {result['per_second']:7.1f}/s "
            f"({result['notices']} in {result['seconds']:.2f} s)  lost {result['lost']}  "
            f"duplicated {result['duplicated']}"
        )
    print(
        f"throughput 2 / 1 dispatchers: {results[2]['per_second'] / results[1]['per_second']:.2f}×"
    )
    samples = idle_step(args.idle_cases, args.idle_passes)
    cuts = statistics.quantiles(samples, n=100)
    print(
        f"idle step (escalation check + claim), {args.idle_cases} open cases: "
        f"p50 {cuts[49] * 1e3:.2f} ms  p95 {cuts[94] * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
