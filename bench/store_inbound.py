"""The cost of storing one inbound WeChat message (`intake.store_inbound`, the only
database work on the path of a passive reply), in statements and in time.

Runs the gateway's own storage call, one session per message as the gateway does, for
each kind of inbound request: a resident's first message, a later message, WeChat's
retry of a stored message (new signature, same MsgId) and a replay (a used signature
with another body, refused). Counts the SQL statements sent per message (SQLAlchemy's
`before_cursor_execute`: machine-independent; on PostgreSQL each is one round trip, plus
psycopg2's BEGIN and the COMMIT) and times each store (wall and this process's CPU).

SQLite in a temporary folder, or a schema of its own on PostgreSQL (dropped afterwards)
with `--postgresql` (TEST_DATABASE_URL, default: the local `test` database).

Usage: .venv/bin/python bench/store_inbound.py [--postgresql] [--residents 50]
       [--messages 6] [--show-statements]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JMT_ENV", "development")

import sqlalchemy as sa  # noqa: E402
from sqlalchemy import event  # noqa: E402

from casework import db, intake  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def database(postgresql: bool) -> Iterator[str]:
    if not postgresql:
        with tempfile.TemporaryDirectory(prefix="jmt-store-") as folder:
            yield f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        return
    base = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    admin = sa.create_engine(base, future=True)
    schema = f"jmt_bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        db.get_engine.cache_clear()
        with admin.begin() as connection:
            connection.execute(sa.text(f'drop schema "{schema}" cascade'))
        admin.dispose()


class StatementLog:
    """Every statement the engine sends, for the store in progress."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(" ".join(statement.split()))


def store(url: str, openid: str, msg_id: int, nonce: str, body: bytes) -> bool:
    """One request's storage, as `gateway.service.InboundService._store` does it.
    False when refused as a replay."""
    try:
        with db.session_scope(url) as session:
            intake.store_inbound(
                session=session,
                signed=intake.SignedCallback(
                    nonce_key=nonce, body=body, window=timedelta(seconds=600)
                ),
                openid=openid,
                dedupe_key=f"msg:{msg_id}",
                msg_type="text",
                content=body.decode(),
                media={},
                turn_owner="bench-host:1",
            )
        return True
    except intake.Replayed:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--residents", type=int, default=50)
    parser.add_argument("--messages", type=int, default=6)
    parser.add_argument("--show-statements", action="store_true")
    args = parser.parse_args()

    with database(args.postgresql) as url:
        db.migrate(url)
        engine = db.get_engine(url)
        log = StatementLog()
        event.listen(engine, "before_cursor_execute", log)
        counts: dict[str, list[int]] = defaultdict(list)
        walls: dict[str, list[float]] = defaultdict(list)
        cpus: dict[str, list[float]] = defaultdict(list)
        examples: dict[str, list[str]] = {}
        outcomes: Counter[str] = Counter()

        def timed(kind: str, *request: Any) -> None:
            log.statements.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            outcomes[f"{kind}: {'stored' if store(url, *request) else 'refused'}"] += 1
            walls[kind].append((time.perf_counter() - wall) * 1000)
            cpus[kind].append((time.process_time() - cpu) * 1000)
            counts[kind].append(len(log.statements))
            examples.setdefault(kind, list(log.statements))

        store(url, "warm-up", 1, "warm-up", b"warm")  # connections, caches: not counted
        for m in range(args.messages):
            for r in range(args.residents):
                msg_id, body = 10**6 + r * 1000 + m, f"居民{r}的第{m}条消息".encode()
                kind = "first message" if m == 0 else "later message"
                timed(kind, f"o-bench-{r}", msg_id, f"n-{r}-{m}", body)
                if r % 5 == 0:  # WeChat retries: the same MsgId with a new signature
                    timed("retry", f"o-bench-{r}", msg_id, f"n-{r}-{m}-retry", body)
                if r % 10 == 1:  # a used signature with another body: refused
                    timed("replay", f"o-bench-{r}", msg_id + 1, f"n-{r}-{m}", b"forged")
        event.remove(engine, "before_cursor_execute", log)

        backend = "PostgreSQL" if args.postgresql else "SQLite"
        print(f"{backend}: store_inbound, one session per request (as the gateway)")
        print(f"{'request':<15} {'n':>5} {'statements':>10} {'wall p50':>9} {'CPU p50':>8}")
        for kind in ("first message", "later message", "retry", "replay"):
            print(
                f"{kind:<15} {len(counts[kind]):>5} {statistics.mean(counts[kind]):>10.2f}"
                f" {statistics.median(walls[kind]):>7.2f}ms {statistics.median(cpus[kind]):>6.2f}ms"
            )
        print(f"outcomes: {dict(outcomes)}")
        if args.show_statements:
            for kind, statements in examples.items():
                print(f"\n-- {kind}")
                for statement in statements:
                    print(f"   {statement[:150]}")


if __name__ == "__main__":
    main()
