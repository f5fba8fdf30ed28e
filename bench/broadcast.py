"""Warnings at scale (issue 11): a district-wide broadcast to `--residents` (10,000)
residents through the real gateway and the SIMULATED WeChat stand-in, while a few
simulated residents keep writing to /wechat (each a message every `--pause` seconds).

One gateway (uvicorn in this process, development settings, the simulator mounted; the
WeChat API base URL points at its own stand-in; a stub Rasa that answers at once) with
the outbox, the broadcast loop and the dispatcher running. Two phases, each with
`--writers` residents sending signed text messages back to back:

1. **baseline**: `--seconds` of residents' messages, no broadcast;
2. **broadcast**: a district-wide warning composed through `casework.broadcasts`; the
   residents write until every delivery is finished (or `--max-seconds`).

Prints the queue's throughput against the configured rate (BROADCAST_RATE_PER_SECOND,
`--rate`), what the stand-in recorded, and the residents' /wechat latency (p50 / p95)
without and during the send, plus this process's CPU seconds. The machine is shared:
compare the two phases of one run, not runs across machines.

Usage: .venv/bin/python bench/broadcast.py [--residents 10000] [--rate 200]
       [--writers 4] [--pause 0.25] [--seconds 15] [--max-seconds 600] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JMT_ENV", "development")

import uvicorn  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from casework import accounts, broadcasts, db  # noqa: E402
from casework.broadcast_schemas import AudienceIn  # noqa: E402
from casework.clock import utcnow  # noqa: E402
from casework.gazetteer import STREETS  # noqa: E402
from casework.models import BroadcastDelivery, Conversation, Resident, User  # noqa: E402
from casework.settings import Settings  # noqa: E402
from integrations.rasa import ParseResult  # noqa: E402

TOKEN = "jmt-bench-token"
COMMUNITIES = [c for names in STREETS.values() for c in names]


class InstantRasa:
    """Answers every message at once (the bench measures the gateway, not the NLU)."""

    async def send(self, sender: str, text: str, metadata: dict | None = None) -> list[dict]:
        return [{"recipient_id": sender, "text": f"收到：{text}"}]

    async def latest_parse(self, sender: str) -> ParseResult:
        return ParseResult("faq", 0.93)

    async def tracker_state(self, sender: str) -> None:
        return None

    async def healthy(self) -> bool:
        return True

    async def resume(self, sender: str, *, revert_latest: bool = False) -> bool:
        return True

    async def close(self) -> None:
        return None


def populate(count: int) -> None:
    """`count` residents (with conversations) spread over the district's communities."""
    with db.session_scope() as session:
        session.add_all(
            Resident(
                openid=f"o-bench-{n:06d}",
                subscribed=True,
                community=COMMUNITIES[n % len(COMMUNITIES)],
            )
            for n in range(count)
        )
        session.flush()
        ids = session.execute(select(Resident.id, Resident.openid)).all()
        session.add_all(
            Conversation(resident_id=rid, openid=openid, owner="bot") for rid, openid in ids
        )
        accounts.create_user(
            session=session,
            username="bench-commander",
            password="bench-password-1",
            role="commander",
        )


def post_message(gateway: str, openid: str, text: str) -> float:
    stamp, nonce = str(int(time.time())), str(random.randrange(10**8))
    signature = hashlib.sha1("".join(sorted([TOKEN, stamp, nonce])).encode()).hexdigest()
    msg_id = random.randrange(10**18, 10**19)
    xml = (
        f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
        f"</FromUserName><CreateTime>{stamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
    url = f"{gateway}/wechat?signature={signature}&timestamp={stamp}&nonce={nonce}"
    request = urllib.request.Request(url, xml.encode(), {"Content-Type": "text/xml"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def write_until(gateway: str, writers: int, stop: threading.Event, pause: float) -> list[float]:
    """`writers` residents each sending a message, then waiting `pause` seconds."""
    latencies: list[float] = []
    lock = threading.Lock()

    def resident(n: int) -> None:
        while not stop.is_set():
            took = post_message(gateway, f"o-writer-{n}", "请问身份证丢了怎么补办")
            with lock:
                latencies.append(took)
            stop.wait(pause)

    threads = [threading.Thread(target=resident, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(60)
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def describe(name: str, latencies: list[float]) -> str:
    if not latencies:
        return f"{name:<34} no messages"
    return (
        f"{name:<34} {len(latencies):6d} msgs  p50 {statistics.median(latencies):7.1f} ms"
        f"  p95 {percentile(latencies, 95):7.1f} ms"
    )


def queue_state(broadcast_id: int) -> dict[str, int]:
    with db.session_scope() as session:
        rows = session.execute(
            select(BroadcastDelivery.status, func.count())
            .where(BroadcastDelivery.broadcast_id == broadcast_id)
            .group_by(BroadcastDelivery.status)
        ).all()
    return {status: count for status, count in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="BROADCAST_RATE_PER_SECOND")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.25, help="each writer's wait (s)")
    parser.add_argument("--seconds", type=float, default=15.0, help="baseline length")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="jmt-bench-broadcast-")
    database_url = args.database_url or f"sqlite:///{folder}/jmt.sqlite3"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    gateway = f"http://127.0.0.1:{sock.getsockname()[1]}"
    os.environ.update(
        DATABASE_URL=database_url,
        JMT_VAR_DIR=folder,
        JMT_SIMULATOR="1",
        WECHAT_TOKEN=TOKEN,
        WECHAT_API_BASE_URL=f"{gateway}/simulator/wechat-api",
        BROADCAST_RATE_PER_SECOND=str(args.rate),
        GATEWAY_WORKERS="1",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("WECHAT_ENCODING_AES_KEY", None)
    from gateway.app import create_app

    settings = Settings.from_env()
    db.migrate(database_url)
    populate(args.residents)
    app = create_app(settings, rasa=InstantRasa(), probe_actions=False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    cpu_start = time.process_time()
    print(f"database {database_url.split('@')[-1]}  residents {args.residents}  rate {args.rate}/s")

    stop = threading.Event()
    timer = threading.Timer(args.seconds, stop.set)
    timer.start()
    baseline = write_until(gateway, args.writers, stop, args.pause)
    cpu_baseline = time.process_time() - cpu_start

    with db.session_scope() as session:
        commander = session.execute(
            select(User).where(User.username == "bench-commander")
        ).scalar_one()
        broadcast_id = broadcasts.compose(
            session=session,
            user=commander,
            topic="weather",
            title="台风“海葵”橙色预警",
            text="预计今夜有暴雨和大风，请关好门窗、减少外出，注意安全。",
            audience=AudienceIn(district=True),
            send_at=utcnow(),
        ).id
    app.state.broadcaster.wakeup.set()
    started, cpu_send = time.perf_counter(), time.process_time()
    stop = threading.Event()
    during: list[float] = []
    writers = threading.Thread(
        target=lambda: during.extend(write_until(gateway, args.writers, stop, args.pause))
    )
    writers.start()
    first_sent: float | None = None
    reported = started
    while time.perf_counter() - started < args.max_seconds:
        state = queue_state(broadcast_id)
        if time.perf_counter() - reported >= 60:
            reported = time.perf_counter()
            print(f"  {reported - started:5.0f} s: {state}", flush=True)
        if first_sent is None and state.get("sent"):
            first_sent = time.perf_counter()
        if state and not state.get("pending") and not state.get("sending"):
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    stop.set()
    writers.join(120)
    cpu_send = time.process_time() - cpu_send
    state = queue_state(broadcast_id)
    standin = app.state.wechat_standin
    server.should_exit = True
    thread.join(30)

    sent = state.get("sent", 0)
    sending = elapsed - ((first_sent or started) - started)
    print(f"queue: {state}")
    print(
        f"throughput: {sent} sent in {elapsed:.1f} s wall ({sent / elapsed:.1f}/s overall, "
        f"{sent / max(sending, 0.001):.1f}/s from the first send; configured {args.rate}/s)"
    )
    print(
        f"stand-in (SIMULATED WeChat) recorded {len(standin.templates)} template messages, "
        f"{len(standin.messages)} customer-service messages"
    )
    print(describe("residents /wechat, no broadcast", baseline))
    print(describe("residents /wechat, during the send", during))
    print(f"cpu seconds of this process: baseline {cpu_baseline:.1f}, broadcast {cpu_send:.1f}")


if __name__ == "__main__":
    main()
