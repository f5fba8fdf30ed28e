"""The officers' queue at district scale (issue 12): how long one page of `GET /api/cases`
takes in the domain layer — filters, a search over residents' words, unread counts —
with `--cases` cases (default 5,000) spread over the district's communities, each
resident having written `--messages` messages (default 10) and the bot answered each.

Measures `casework.console.list_cases` (what the route calls; no HTTP), each variant
`--repeat` times (default 7), and prints the median and the slowest in milliseconds with
the number of matching cases. A fresh temporary SQLite database unless
`--database-url` names another (e.g. a PostgreSQL database of your own: it must be empty;
it is migrated here). The machine is shared: compare variants of one run.

Usage: .venv/bin/python bench/queue_pages.py [--cases 5000] [--messages 10] [--repeat 7]
       [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JMT_ENV", "development")

from sqlalchemy import insert, select  # noqa: E402

from casework import accounts, console, db  # noqa: E402
from casework.case_queue import CaseFilters  # noqa: E402
from casework.cases import CATEGORIES, PRIORITIES, RESPONSE_TARGETS  # noqa: E402
from casework.clock import utcnow  # noqa: E402
from casework.gazetteer import STREETS  # noqa: E402
from casework.models import Case, CaseRead, Conversation, Message, Resident, User  # noqa: E402

PLACES = [(street, c) for street, names in STREETS.items() for c in names]
WORDS = [
    "楼上装修",
    "狗一直叫",
    "有人让我刷单",
    "转账给了客服",
    "广场舞太吵",
    "邻居吵架",
    "身份证丢了",
]


def seed(url: str, cases: int, messages: int) -> None:
    rng = random.Random(12)
    now = utcnow()
    with db.session_scope(url) as session:
        for n, (_, community) in enumerate(PLACES[:3]):
            accounts.create_user(
                session=session,
                username=f"officer{n}",
                password="bench-password",
                role="officer",
                community=community,
            )
        accounts.create_user(
            session=session, username="boss", password="bench-password", role="commander"
        )
    batch = 1000
    for start in range(0, cases, batch):
        ids = range(start, min(start + batch, cases))
        with db.session_scope(url) as session:
            session.execute(
                insert(Resident),
                [{"openid": f"o-bench-{i}", "created_at": now, "last_seen_at": now} for i in ids],
            )
            resident_ids = dict(
                session.execute(
                    select(Resident.openid, Resident.id).where(
                        Resident.openid.in_([f"o-bench-{i}" for i in ids])
                    )
                ).all()
            )
            session.execute(
                insert(Conversation),
                [
                    {
                        "resident_id": resident_ids[f"o-bench-{i}"],
                        "openid": f"o-bench-{i}",
                        "owner": "bot",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
            conversation_ids = dict(
                session.execute(
                    select(Conversation.openid, Conversation.id).where(
                        Conversation.openid.in_([f"o-bench-{i}" for i in ids])
                    )
                ).all()
            )
            rows = []
            for i in ids:
                for m in range(messages):
                    at = now - timedelta(minutes=messages - m)
                    said = f"{rng.choice(WORDS)}，第{m}条，编号{i}"
                    for direction, content in (("in", said), ("out", "收到，正在为您处理。")):
                        rows.append(
                            {
                                "conversation_id": conversation_ids[f"o-bench-{i}"],
                                "direction": direction,
                                "msg_type": "text",
                                "content": content,
                                "media": {},
                                "status": "handled",
                                "created_at": at,
                            }
                        )
            session.execute(insert(Message), rows)
            case_rows = []
            for i in ids:
                street, community = rng.choice(PLACES)
                priority = rng.choice(PRIORITIES)
                created = now - timedelta(minutes=rng.randrange(1, 600))
                case_rows.append(
                    {
                        "sender_id": f"o-bench-{i}",
                        "category": rng.choice(CATEGORIES),
                        "priority": priority,
                        "status": rng.choice(("open", "open", "claimed", "closed")),
                        "reason": "resident_request",
                        "summary": f"【测试】{rng.choice(WORDS)}：编号{i}",
                        "details": {},
                        "street": street,
                        "community": community,
                        "created_at": created,
                        "updated_at": created,
                        "due_at": created + RESPONSE_TARGETS[priority],
                    }
                )
            session.execute(insert(Case), case_rows)
    with db.session_scope(url) as session:  # the officers have read a tenth of the cases
        officer = session.execute(select(User).where(User.username == "officer0")).scalar_one()
        some = session.execute(select(Case.id).where(Case.id % 10 == 0)).scalars().all()
        session.execute(
            insert(CaseRead),
            [
                {"case_id": c, "user_id": officer.id, "last_read_message_id": 0, "read_at": now}
                for c in some
            ],
        )


def measure(url: str, username: str, repeat: int, **kwargs) -> tuple[float, float, int]:
    times, total = [], 0
    for _ in range(repeat):
        with db.session_scope(url) as session:
            user = session.execute(select(User).where(User.username == username)).scalar_one()
            filters = CaseFilters(**{k: v for k, v in kwargs.items() if k != "offset"})
            began = time.perf_counter()
            page = console.list_cases(
                session=session, user=user, filters=filters, offset=kwargs.get("offset", 0)
            )
            times.append((time.perf_counter() - began) * 1000)
            total = page.total
            session.rollback()  # the search's audit row is not kept
    return statistics.median(times), max(times), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench-queue.sqlite3"
        db.migrate(url)
        began = time.perf_counter()
        seed(url, args.cases, args.messages)
        backend = url.split(":", 1)[0]
        print(
            f"{backend}: {args.cases} cases, {args.cases * args.messages * 2} messages "
            f"seeded in {time.perf_counter() - began:.1f} s"
        )
        variants = [
            ("commander, first page", "boss", {}),
            ("commander, page 40", "boss", {"offset": 2000}),
            ("commander, closed", "boss", {"status": "closed"}),
            ("commander, urgent + unclaimed", "boss", {"urgent": True, "unclaimed": True}),
            ("commander, search 刷单 (words)", "boss", {"q": "刷单"}),
            ("commander, search 编号4321 (one)", "boss", {"q": "编号4321"}),
            ("commander, search (no match)", "boss", {"q": "不存在的词"}),
            ("officer, first page", "officer0", {}),
            ("officer, mine", "officer0", {"mine": True}),
            ("officer, search 刷单", "officer0", {"q": "刷单"}),
            ("officer, search (no match)", "officer0", {"q": "不存在的词"}),
        ]
        print(f"{'variant':<36} {'median ms':>10} {'max ms':>8} {'matches':>8}")
        for name, username, kwargs in variants:
            median, slowest, total = measure(url, username, args.repeat, **kwargs)
            print(f"{name:<36} {median:>10.1f} {slowest:>8.1f} {total:>8}")
        db.dispose_engines()


if __name__ == "__main__":
    main()
