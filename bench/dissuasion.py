"""What precision dissuasion costs (issue 11): turning leads into tasks, and the
dispatcher's pass over them (DingTalk announcements, WeChat warnings, escalations).

On one database (default: SQLite in a temporary folder; `--database-url` for PostgreSQL)
with 20 community officers, a 反诈 desk and `--residents` registered residents:

- `ingest`: `--leads` leads through `dissuasion.ingest_leads` in webhook-sized batches
  of 100 (one transaction each), and the same leads again (idempotent look-ups);
- `csv`: a GBK CSV export of the same size parsed and imported (`dissuasion_csv.upload`);
- `dispatch`: `Dispatcher.run_once` until every task is announced and every matched
  resident warned (DingTalk is the SIMULATED recording notifier), then again after the
  deadline until every task is escalated.

Prints CPU seconds of this process (the machine is shared, so wall time is printed only
for reference) and per-lead figures.

Usage: .venv/bin/python bench/dissuasion.py [--leads 2000] [--residents 500]
       [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JMT_ENV", "development")

from casework import accounts, db, dissuasion, dissuasion_csv, residents  # noqa: E402
from casework.clock import utcnow  # noqa: E402
from casework.dissuasion_schemas import LeadIn  # noqa: E402
from casework.gazetteer import STREETS  # noqa: E402
from casework.models import User  # noqa: E402
from gateway.dispatcher import Dispatcher  # noqa: E402
from integrations.notify import RecordingNotifier  # noqa: E402

COMMUNITIES = [c for names in STREETS.values() for c in names][:20]
LEVELS = ("high", "medium", "low")
TYPES = ("刷单返利", "冒充公检法", "虚假投资理财", "贷款", "冒充客服", "网游交易")


def measured(label: str, work: Callable[[], object], per: int) -> object:
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:<44} cpu {cpu:7.2f} s  ({cpu / per * 1000:6.2f} ms each)  wall {wall:7.2f} s")
    return result


def lead(n: int, prefix: str) -> dict[str, str]:
    return {
        "external_id": f"{prefix}{n}",
        "phone": f"138{n:08d}",
        "address": f"{COMMUNITIES[n % len(COMMUNITIES)]} {n % 30} 幢" if n % 4 else "",
        "risk_type": TYPES[n % len(TYPES)],
        "risk_level": LEVELS[n % 3],
        "warned_at": "2026-12-05T10:00:00+08:00",
        "source": "96110",
    }


def setup(url: str, residents_count: int) -> None:
    db.migrate(url)
    with db.session_scope(url) as session:
        for n, community in enumerate(COMMUNITIES):
            accounts.create_user(
                session=session,
                username=f"officer{n}",
                password="correct-horse",
                role="officer",
                community=community,
                mobile=f"1391111{n:04d}",
            )
        accounts.create_user(
            session=session, username="fz", password="correct-horse", role="officer", desk="反诈"
        )
        for n in range(0, residents_count * 3, 3):  # every third lead's person is registered
            residents.set_profile(
                session=session,
                openid=f"o-bench-{n}",
                mobile=f"138{n:08d}",
                consent=True,
                community=COMMUNITIES[n % len(COMMUNITIES)],
            )


def ingest(url: str, count: int, prefix: str) -> None:
    for start in range(0, count, 100):
        batch = [LeadIn.parse_obj(lead(n, prefix)) for n in range(start, min(start + 100, count))]
        with db.session_scope(url) as session:
            dissuasion.ingest_leads(session=session, leads=batch, actor=None)


def upload(url: str, count: int) -> None:
    header = "external_id,phone,address,risk_type,risk_level,warned_at,source\n"
    rows = "".join(",".join(lead(n, "C").values()) + "\n" for n in range(count))
    with db.session_scope(url) as session:
        desk = session.query(User).filter_by(username="fz").one()
        result = dissuasion_csv.upload(
            session=session, user=desk, data=(header + rows).encode("gbk")
        )
    assert result.created == count and not result.errors, result.errors[:3]


def passes(worker: Dispatcher, notifier: RecordingNotifier, expected: int) -> int:
    done = 0
    while len(notifier.sent) < expected:
        asyncio.run(worker.run_once())
        done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--residents", type=int, default=500)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the dispatcher logs every escalation
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{folder}/bench.sqlite3"
        setup(url, args.residents)
        print(f"{url.split(':')[0]}: {args.leads} leads, {args.residents} registered residents")
        measured(
            "ingest (webhook batches of 100)", lambda: ingest(url, args.leads, "W"), args.leads
        )
        measured("ingest again (all duplicates)", lambda: ingest(url, args.leads, "W"), args.leads)
        measured("CSV upload (GBK, one file)", lambda: upload(url, args.leads), args.leads)
        total = 2 * args.leads
        clock = {"now": utcnow()}
        notifier = RecordingNotifier()
        worker = Dispatcher(
            database_url=url,
            notifier=notifier,
            governance=None,
            console_url="http://console.bench",
            owner="bench:1",
            clock=lambda: clock["now"],
        )
        count = measured(
            "dispatch: announce + warn", lambda: passes(worker, notifier, total), total
        )
        print(f"  {count} passes, {len(notifier.sent)} DingTalk notices")
        clock["now"] += timedelta(hours=25)
        count = measured(
            "dispatch: escalate past the deadline",
            lambda: passes(worker, notifier, 2 * total),
            total,
        )
        print(f"  {count} passes, {len(notifier.sent)} DingTalk notices in all")


if __name__ == "__main__":
    main()
