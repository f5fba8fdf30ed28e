"""What the operations layer costs (issue 10): request-id + metrics middleware and the
log format on a /wechat turn, a /metrics scrape with a backlog, and /readyz.

Runs the real gateway under uvicorn in this process on SQLite (a temporary folder) with
SIMULATED Rasa and action server (the stand-ins of tests/gateway/conftest.py and a local
/health answer), sequential requests over real HTTP, and prints p50/p95/p99 in ms:

- a /wechat turn with and without `RequestContext` (request id, X-Request-ID, metrics),
  and their ratio;
- GET /metrics with `--backlog` outbox items and open cases in the database;
- GET /readyz with every dependency up.

Usage: .venv/bin/python bench/operations.py [--turns 300] [--backlog 5000]
"""

from __future__ import annotations

import argparse
import http.server
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JMT_ENV", "development")

from casework import db  # noqa: E402
from casework.cases import open_case  # noqa: E402
from casework.conversations import conversation_for  # noqa: E402
from casework.outbox import enqueue  # noqa: E402
from casework.settings import Settings  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.observability import RequestContext  # noqa: E402
from tests.gateway.conftest import TOKEN, StandInRasa, sign, text_xml  # noqa: E402


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:7.2f}  p95 {q[94]:7.2f}  p99 {q[98]:7.2f} ms  (n={len(ms)})"


class Health(http.server.BaseHTTPRequestHandler):
    """SIMULATED action server: /health answers 200."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return None


def serve(app) -> tuple[uvicorn.Server, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def wechat_turns(bases: dict[str, str], turns: int) -> dict[str, list[float]]:
    """Sequential turns, alternating between the servers (same database, same warmth)."""
    took: dict[str, list[float]] = {label: [] for label in bases}
    clients = {label: httpx.Client(base_url=base, timeout=10) for label, base in bases.items()}
    for n in range(turns):
        for label, client in clients.items():
            timestamp, nonce = str(int(time.time())), str(random.randrange(10**8))
            params = {"signature": sign(timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
            body = text_xml(f"o-bench-{n % 40}", f"身份证怎么补办 {n}").encode()
            started = time.perf_counter()
            answer = client.post("/wechat", params=params, content=body)
            took[label].append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    for client in clients.values():
        client.close()
    return took


def gets(base: str, path: str, times: int) -> list[float]:
    took = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(times):
            started = time.perf_counter()
            answer = client.get(path)
            took.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=5000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="jmt-bench-ops-"))
    actions = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=actions.serve_forever, daemon=True).start()
    os.environ.update(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'jmt.sqlite3'}",
            "JMT_VAR_DIR": str(folder / "var"),
            "JMT_SIMULATOR": "0",
            "WECHAT_TOKEN": TOKEN,
            "WECHAT_APP_ID": "",
            "LOG_LEVEL": "WARNING",  # the turn's INFO lines would measure the terminal
            "ACTION_SERVER_URL": f"http://127.0.0.1:{actions.server_address[1]}",
        }
    )
    settings = Settings.from_env()
    db.migrate(settings.database_url)
    servers, bases = [], {}
    for label, middleware in (("without", False), ("with", True)):
        app = create_app(settings, start_outbox=False, rasa=StandInRasa(), probe_actions=False)
        if not middleware:
            app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestContext]
        server, bases[label] = serve(app)
        servers.append(server)
    wechat_turns(bases, 20)  # warm-up
    results = wechat_turns(bases, args.turns)
    with db.session_scope(settings.database_url) as session:
        conversation = conversation_for(session=session, openid="o-backlog")
        for n in range(args.backlog):
            enqueue(
                session=session,
                conversation_id=conversation.id,
                openid="o-backlog",
                text=f"稍后回复 {n}",
                sender="bot",
            )
        for n in range(args.backlog // 5):
            open_case(
                session=session,
                sender_id=f"o-case-{n}",
                category="other",
                priority=("urgent", "high", "normal", "low")[n % 4],
                reason="resident_request",
                summary="bench",
            )
    metrics = gets(bases["with"], "/metrics", 100)
    ready = gets(bases["with"], "/readyz", 100)
    for server in servers:
        server.should_exit = True
    print(f"/wechat turn without middleware: {percentiles(results['without'])}")
    print(f"/wechat turn with middleware:    {percentiles(results['with'])}")
    ratio = statistics.median(results["with"]) / statistics.median(results["without"])
    print(f"ratio of p50s (with / without):  {ratio:.3f}")
    backlog = f"{args.backlog} outbox items, {args.backlog // 5} open cases"
    print(f"GET /metrics ({backlog}): {percentiles(metrics)}")
    print(f"GET /readyz (all up):          {percentiles(ready)}")
    actions.shutdown()


if __name__ == "__main__":
    main()
