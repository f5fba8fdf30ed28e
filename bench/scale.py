"""Load and faults (issue 10): the real launcher with several gateway workers and Rasa
replicas on PostgreSQL and Redis, driven through /wechat as WeChat's servers drive it,
while one Rasa replica and one gateway worker are killed (-9), the WeChat API fails for
a while and a model is promoted.

What runs:
- `python -m jmt.launch` (what `make run` runs) with GATEWAY_WORKERS/RASA_REPLICAS (2/2),
  JMT_ENV=development, a fresh PostgreSQL database of its own (created here, dropped at
  the end), Redis (its own lock-store key prefix), its own ports and JMT_VAR_DIR, and
  RASA_MODEL pinned to the model for the current data.
- A SIMULATED WeChat API (a stand-in, `gateway.simulator.standin.WeChatStandIn` behind a
  small local HTTP server; WECHAT_API_BASE_URL points at it): it issues access tokens,
  records every customer-service send and answers HTTP 500 during the failure window.
- A slow-action proxy between Rasa and the action server (ACTION_ENDPOINT_URL points at
  it): it holds every `action_handoff` call for --slow seconds before passing it on. The
  passive-reply budget (4.5 s) is not configurable outside tests, so slow replies are
  made the way production gets them — a slow action — and the gateway answers `success`
  and delivers the bot's answer through the outbox. Every resident's fifth message asks
  for a human (转人工): a fifth of the answers go through the outbox and open an officer
  case.
- Residents (200 × 5 messages by default, --concurrency at a time, each message after the
  previous answer) post signed callbacks to /wechat (bench/gateway_load.py's signing);
  20 % of the messages are sent again with the same MsgId (WeChat's retry), and a request
  that fails at the transport (a killed worker) is re-sent the same way, up to 3 times,
  as WeChat does. A few probe residents keep writing through the whole run so every fault
  and the promotion fall inside a stream of answers.
- Faults, in sequence, --gap seconds apart from the start of the load: kill -9 one Rasa
  replica; kill -9 one gateway worker; the WeChat API answers HTTP 500 for --outage
  seconds; `jmt model promote` of a copy of the current model under a new name (the gate
  skipped, as bench/promotion.py does).

Prints messages lost (target 0: every inbound message stored and answered — passively,
through the outbox with the send recorded by the stand-in, or kept for an officer),
duplicated turns in Rasa's trackers (0: `integrations.rasa.user_turns` per resident vs
messages sent), duplicated customer-service sends (0: the stand-in's records vs the
outbox), p50/p95/p99 of the /wechat reply, throughput, the longest gap between answers
during the promotion, and the recovery after each fault. `--baseline` first runs the same
load with 1 worker and 1 replica (same PostgreSQL server, a database of its own, no
faults: there is nothing to fail over to) and prints the throughput ratio.

Usage: .venv/bin/python bench/scale.py [--residents 200] [--messages 5] [--concurrency 16]
       [--baseline] [--gap 20] [--outage 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from bench.gateway_load import TOKEN, bench_texts, free_port, wechat_request  # noqa: E402
from casework import db, demo  # noqa: E402
from casework.models import Message, OutboxItem  # noqa: E402
from gateway.service import BOT_UNAVAILABLE  # noqa: E402
from gateway.simulator.standin import WeChatStandIn  # noqa: E402
from integrations.rasa import user_turns  # noqa: E402
from jmt import model as models  # noqa: E402
from jmt.evaluate import GateResult  # noqa: E402
from jmt.ports import free_port_range  # noqa: E402
from jmt.train import data_hash, model_path  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
HANDOFF = "转人工"
SLOW = "success"  # the kind of answer a slow reply gets: `success`, the outbox follows
APP_ID, APP_SECRET = "wx-bench-scale", "bench-scale-secret"


# ---------------------------------------------------------------------- pure helpers


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile `p` (0-100) of `values`."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def lost_messages(
    sent: Iterable[str], statuses: dict[str, str | None], undelivered: int
) -> list[str]:
    """Messages (dedupe keys) not stored or stored and never answered, and one entry per
    outbox item never delivered. `statuses`: dedupe key -> the inbound message's status."""
    lost = [key for key in sent if statuses.get(key) not in ("answered", "for_officer")]
    return lost + ["outbox item not delivered"] * undelivered


def duplicated_turns(turns: dict[str, int], sent: dict[str, int]) -> int:
    """Tracker turns beyond the messages each resident sent (a message given to Rasa
    twice shows up as one turn too many)."""
    return sum(max(0, turns.get(openid, 0) - count) for openid, count in sent.items())


def duplicated_sends(recorded: Counter[tuple[str, str]], queued: Counter[tuple[str, str]]) -> int:
    """Customer-service messages WeChat received more often than the outbox queued them,
    by (openid, text)."""
    return sum(max(0, count - queued.get(key, 0)) for key, count in recorded.items())


def longest_gap(times: Iterable[float], start: float, end: float) -> float:
    """The longest time inside [start, end] without an answer."""
    inside = sorted(t for t in times if start <= t <= end)
    marks = [start, *inside, end]
    return max(b - a for a, b in zip(marks, marks[1:], strict=False))


def first_after(times: Iterable[float], moment: float) -> float | None:
    """Seconds from `moment` to the first time after it, or None."""
    later = [t for t in times if t > moment]
    return min(later) - moment if later else None


# ---------------------------------------------------------------------- stand-ins


class QuietServer(ThreadingHTTPServer):
    """A threaded HTTP server that does not print a traceback when a killed process's
    connection is reset under it (the faults here do that on purpose)."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class WeChatApiStandIn:
    """SIMULATED WeChat API (stand-in for api.weixin.qq.com) on a local port: tokens and
    customer-service sends through `WeChatStandIn`; HTTP 500 while `fail_until` lasts."""

    def __init__(self) -> None:
        self.state = WeChatStandIn(APP_ID, APP_SECRET)
        self.fail_until = 0.0
        self.failed_attempts = 0
        self.sent_at: list[float] = []  # monotonic time of each recorded send
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path.endswith("/cgi-bin/token"):
                    self._answer(
                        200,
                        outer.state.issue_token(
                            query.get("grant_type", ""),
                            query.get("appid", ""),
                            query.get("secret", ""),
                        ),
                    )
                else:
                    self._answer(404, {"errcode": 404})

            def do_POST(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not url.path.endswith("/cgi-bin/message/custom/send"):
                    self._answer(404, {"errcode": 404})
                    return
                if time.monotonic() < outer.fail_until:
                    outer.failed_attempts += 1
                    self._answer(500, {})
                    return
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = None
                token = parse_qs(url.query).get("access_token", [""])[0]
                before = len(outer.state.messages)
                status, answer = outer.state.send_custom(token, payload)
                if len(outer.state.messages) > before:
                    outer.sent_at.append(time.monotonic())
                self._answer(status, answer)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def recorded(self) -> Counter[tuple[str, str]]:
        return Counter((m.touser, m.content) for m in self.state.messages)


class SlowActions:
    """A proxy in front of the action server that holds `action_handoff` calls for
    `delay` seconds (a slow action: the reply misses WeChat's passive window)."""

    def __init__(self, delay: float) -> None:
        self.delayed = 0
        self.target = ""  # the action server's base URL, set once the launcher chose it
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self, body: bytes | None) -> None:
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                request = urllib.request.Request(
                    outer.target + self.path, body, headers, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=300) as reply:
                        status, data = reply.status, reply.read()
                except urllib.error.HTTPError as error:
                    status, data = error.code, error.read()
                except OSError:
                    status, data = 502, b"{}"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the calling Rasa replica was killed meanwhile
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                self._forward(None)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    action = json.loads(body).get("next_action")
                except (ValueError, AttributeError):
                    action = None
                if action == "action_handoff":
                    outer.delayed += 1
                    time.sleep(delay)
                self._forward(body)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# ---------------------------------------------------------------------- the launcher


def check_prerequisites() -> Path:
    model = model_path(data_hash())
    if not model.exists():
        raise SystemExit(f"no model for the current data ({model.name}): run `make train`")
    try:
        engine = sa.create_engine(PG_ADMIN)
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as error:
        raise SystemExit(
            f"PostgreSQL is unreachable at {PG_ADMIN} (set BENCH_PG_ADMIN_URL): {error}"
        ) from None
    import redis

    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError as error:
        raise SystemExit(
            f"Redis is unreachable at {REDIS} (set BENCH_REDIS_URL): {error}"
        ) from None
    return model


@contextmanager
def fresh_database(name: str) -> Iterator[str]:
    """A PostgreSQL database of its own, migrated with the demo data; dropped at the end."""
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        db.migrate(url)
        with db.session_scope(url) as session:
            demo.load(session=session)
        yield url
    finally:
        db.get_engine.cache_clear()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def children_of(pid: int) -> dict[int, str]:
    """The live direct children of `pid` and their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            after = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(after[1]) == pid and after[0] != "Z":
            found[int(entry.name)] = command
    return found


def up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@dataclass
class Launcher:
    process: subprocess.Popen
    gateway: str
    var: Path
    token: str
    rasa_port: int
    log: Path

    def urls(self) -> list[str]:
        return list(json.loads((self.var / "rasa-urls.json").read_text())["urls"])

    def children(self, word: str) -> dict[int, str]:
        return {p: c for p, c in children_of(self.process.pid).items() if word in c}


@contextmanager
def launcher(
    tmp: Path, *, database: str, workers: int, replicas: int, wechat: str, actions_proxy: str
) -> Iterator[tuple[Launcher, int]]:
    """The real launcher, in its own process group; yields it and its action-server port
    (for the proxy to forward to). Always stopped: SIGTERM, then the group killed."""
    model = model_path(data_hash())
    prefix = f"jmtbench{secrets.token_hex(4)}"  # the Redis lock store's keys, removed at the end
    rasa_port = free_port_range(2 * replicas)  # each replica also has a spare port
    actions_port, gateway_port = free_port(), free_port()
    var = tmp / "var"
    dropped = {"ACTION_ENDPOINT_URL", "ACTION_SERVER_URL", "RASA_URL", "RASA_URLS"}
    dropped |= {"RASA_TOKEN", "ACTIONS_TOKEN", "WECHAT_ENCODING_AES_KEY", "JMT_SIMULATOR"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        {
            "JMT_ENV": "development",
            "JMT_VAR_DIR": str(var),
            "DATABASE_URL": database,
            "REDIS_URL": REDIS,
            "RASA_REDIS_PREFIX": prefix,
            "RASA_TRACKER_DB": str(tmp / "rasa-tracker.sqlite3"),  # used with 1 replica only
            "RASA_TELEMETRY_ENABLED": "false",
            "RASA_PORT": str(rasa_port),
            "ACTIONS_PORT": str(actions_port),
            "GATEWAY_PORT": str(gateway_port),
            "GATEWAY_WORKERS": str(workers),
            "RASA_REPLICAS": str(replicas),
            "RASA_DRAIN_SECONDS": "5",
            "RASA_MODEL": str(model),
            "ACTION_ENDPOINT_URL": f"{actions_proxy}/webhook",  # through the slow proxy
            "ACTION_SERVER_URL": f"http://127.0.0.1:{actions_port}",  # the gateway's probe
            "WECHAT_TOKEN": TOKEN,
            "WECHAT_APP_ID": APP_ID,
            "WECHAT_APP_SECRET": APP_SECRET,
            "WECHAT_API_BASE_URL": wechat,  # the SIMULATED WeChat API
            "PYTHONPATH": str(REPO),
        }
    )
    log = tmp / "launcher.log"
    process = subprocess.Popen(
        ["nice", "-n", "5", sys.executable, "-m", "jmt.launch"],
        cwd=REPO,
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    gateway = f"http://127.0.0.1:{gateway_port}"
    try:
        deadline = time.monotonic() + 300 + 300 * replicas
        while not up(f"{gateway}/healthz"):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"the launcher exited with {process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not come up; see {log}")
            time.sleep(1)
        # `nice` execs the launcher: process.pid is the launcher's own pid.
        token = (var / "rasa-token").read_text().strip()
        yield Launcher(process, gateway, var, token, rasa_port, log), actions_port
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        import redis

        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{prefix}*"):  # locks a killed replica left behind
            client.delete(key)


# ---------------------------------------------------------------------- residents


@dataclass
class Traffic:
    """What the simulated WeChat servers sent and got."""

    sent: dict[str, list[str]] = field(default_factory=dict)  # openid -> dedupe keys
    latencies: list[float] = field(default_factory=list)  # seconds, first answer of each
    # (answered at, kind, latency): monotonic seconds
    answers: list[tuple[float, str, float]] = field(default_factory=list)
    transport_errors: int = 0
    given_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, gateway: str, openid: str, text: str, msg_id: int) -> float | None:
        """One message as WeChat sends it: re-sent (same MsgId) after a transport error,
        up to 3 times. The latency of the answer, or None when all tries failed."""
        for attempt in range(4):
            url, body = wechat_request(gateway, openid, text, msg_id)
            request = urllib.request.Request(url, body, {"Content-Type": "text/xml"})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=30) as reply:
                    answer = reply.read().decode("utf-8")
            except OSError:
                with self.lock:
                    self.transport_errors += 1
                time.sleep(1 + attempt)
                continue
            now = time.monotonic()
            if "<xml>" not in answer:
                kind = "success"  # answered later (outbox) or kept for an officer
            elif BOT_UNAVAILABLE[:12] in answer:
                kind = "fallback"
            else:
                kind = "passive"
            with self.lock:
                self.answers.append((now, kind, now - started))
            return now - started
        with self.lock:
            self.given_up += 1
        return None

    def resident(
        self, gateway: str, openid: str, texts: list[str], first_id: int, retry_share: float
    ) -> None:
        rng = random.Random(openid)
        keys = []
        for n, text in enumerate(texts):
            msg_id = first_id + n
            keys.append(f"msg:{msg_id}")
            latency = self.post(gateway, openid, text, msg_id)
            if latency is not None:
                with self.lock:
                    self.latencies.append(latency)
            if rng.random() < retry_share:  # WeChat retries the same MsgId
                self.post(gateway, openid, text, msg_id)
        with self.lock:  # a probe resident writes once per call: keep every key
            self.sent.setdefault(openid, []).extend(keys)


def drive(
    launcher: Launcher,
    *,
    run: str,
    residents: int,
    messages: int,
    concurrency: int,
    retry_share: float,
    probes: int,
    until: threading.Event,
) -> tuple[Traffic, Traffic, float]:
    """The residents (each message after the previous answer; the last asks for a human)
    and the probes, which write until `until` is set. (load, probes, load seconds)."""
    faq = bench_texts()
    load, probe = Traffic(), Traffic()
    base = random.randrange(10**15, 10**16) * 1000

    def one(r: int) -> None:
        texts = [faq[(r * messages + m) % len(faq)] for m in range(messages - 1)] + [HANDOFF]
        load.resident(launcher.gateway, f"{run}-r{r}", texts, base + r * 100, retry_share)

    def prober(n: int) -> None:
        turn = 0
        while not until.is_set():
            openid = f"{run}-p{n}-{turn // 20}"  # a new probe resident every 20 messages
            probe.resident(
                launcher.gateway, openid, [faq[turn % len(faq)]], base + 10**9 + n * 10**5 + turn, 0
            )
            turn += 1
            time.sleep(0.5)

    probe_threads = [threading.Thread(target=prober, args=(n,), daemon=True) for n in range(probes)]
    for thread in probe_threads:
        thread.start()
    started = time.monotonic()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(residents)))
    seconds = time.monotonic() - started
    until.wait()
    for thread in probe_threads:
        thread.join(timeout=120)
    # Probe residents' keys were recorded per one-message resident call: merge per openid.
    return load, probe, seconds


def merge_sent(traffic: Traffic, into: dict[str, list[str]]) -> None:
    for openid, keys in traffic.sent.items():
        into.setdefault(openid, []).extend(keys)


# ---------------------------------------------------------------------- faults


@dataclass
class Faults:
    events: list[tuple[str, float, float]] = field(default_factory=list)  # (what, at, until)
    back: dict[str, float] = field(default_factory=dict)  # what -> component back (monotonic)
    notes: list[str] = field(default_factory=list)


def wait_for(check, timeout: float = 600, every: float = 0.2) -> float | None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(every)
    return None


def inject(
    launcher: Launcher,
    wechat: WeChatApiStandIn,
    tmp: Path,
    *,
    start: float,
    gap: float,
    outage: float,
    faults: Faults,
    database: str,
    run: str,
    outage_traffic: Traffic,
    outage_ids: int,
) -> None:
    def at(offset: float) -> None:
        time.sleep(max(0.0, start + offset - time.monotonic()))

    def stamp(what: str, began: float, ended: float | None = None) -> None:
        faults.events.append((what, began, ended if ended is not None else began))
        print(f"  [{time.strftime('%H:%M:%S')}] {what}", flush=True)

    # 1. kill -9 one Rasa replica (the second), wait until the supervisor has it answering.
    at(gap)
    rasa = launcher.children("--enable-api")  # `jmt.rasa_process run ...`
    victim_url = launcher.urls()[-1]
    port = int(victim_url.rsplit(":", 1)[1])
    victims = [pid for pid, command in rasa.items() if f"--port {port}" in command]
    if victims:
        os.kill(victims[0], signal.SIGKILL)
        killed = time.monotonic()
        stamp(f"kill -9 Rasa replica {victim_url} (pid {victims[0]})", killed)
        back = wait_for(lambda: up(f"{victim_url}/status?token={launcher.token}"))
        if back:
            faults.back["rasa"] = back
    else:
        faults.notes.append(f"no Rasa process found on port {port}")

    # 2. kill -9 one gateway worker; wait until the supervisor has replaced it.
    at(2 * gap)
    workers = launcher.children("jmt.gateway_worker")
    if workers:
        pid = sorted(workers)[0]
        os.kill(pid, signal.SIGKILL)
        stamp(f"kill -9 gateway worker (pid {pid})", time.monotonic())
        back = wait_for(
            lambda: (
                len(now := launcher.children("jmt.gateway_worker")) >= len(workers)
                and pid not in now
            )
        )
        if back:
            faults.back["worker"] = back
    else:
        faults.notes.append("no gateway worker found")

    # 3. the WeChat API answers HTTP 500 for `outage` seconds.
    # Five residents ask for a human as it starts: their (slow) answers are queued while
    # WeChat refuses them; recovery is the outbox emptied after the outage.
    at(3 * gap)
    began = time.monotonic()
    wechat.fail_until = began + outage
    askers = [
        threading.Thread(
            target=outage_traffic.resident,
            args=(launcher.gateway, f"{run}-o{n}", [HANDOFF], outage_ids + n, 0.0),
            daemon=True,
        )
        for n in range(5)
    ]
    for thread in askers:
        thread.start()
    time.sleep(outage)
    ended = wechat.fail_until
    stamp(f"WeChat API failed (HTTP 500) for {outage:.0f} s", began, ended)

    def watch_outbox() -> None:
        drained = wait_for(lambda: pending_outbox(database) == 0, timeout=300, every=0.5)
        if drained:
            faults.back["outbox"] = drained

    watcher = threading.Thread(target=watch_outbox, daemon=True)
    watcher.start()

    # 4. promote a copy of the current model, replica by replica.
    at(3 * gap + outage + gap)
    current = Path(model_path(data_hash()))
    folder = tmp / "models"
    folder.mkdir(exist_ok=True)
    copy = folder / f"{current.name.removesuffix('.tar.gz')}-scale.tar.gz"
    shutil.copyfile(current, copy)
    models.write_live(current, folder)
    models.run_gate = lambda *a, **k: GateResult(True, [], [])
    began = time.monotonic()
    try:
        models.promote(
            model=copy, var_dir=launcher.var, models_dir=folder, reports_root=tmp, force=True
        )
    except Exception as error:  # noqa: BLE001 - reported, the run goes on
        faults.notes.append(f"promotion failed: {error}")
    stamp(f"promoted {copy.name} ({time.monotonic() - began:.1f} s)", began, time.monotonic())
    time.sleep(gap / 2)  # answers after the switch
    watcher.join()


# ---------------------------------------------------------------------- the records


def pending_outbox(database: str) -> int:
    with db.session_scope(database) as session:
        return int(
            session.execute(
                sa.select(sa.func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.status.in_(["pending", "sending"]))
            ).scalar_one()
        )


def recovered_turns(database: str) -> int:
    """Turns a killed worker left mid-turn, answered by another worker's sweep (the
    fallback queued with sender 'system': `intake.recover_stalled_turns`)."""
    with db.session_scope(database) as session:
        return int(
            session.execute(
                sa.select(sa.func.count())
                .select_from(Message)
                .where(
                    Message.direction == "out",
                    Message.sender == "system",
                    Message.delivery == "outbox",
                    Message.content == BOT_UNAVAILABLE,
                )
            ).scalar_one()
        )


def records(database: str, sent: dict[str, list[str]]) -> tuple[dict, Counter, Counter, int]:
    """(dedupe key -> status, queued (openid, text) counts, the same for the items marked
    sent, outbox items not sent)."""
    keys = [k for ks in sent.values() for k in ks]
    statuses: dict[str, str | None] = {}
    queued: Counter[tuple[str, str]] = Counter()
    sent_items: Counter[tuple[str, str]] = Counter()
    undelivered = 0
    with db.session_scope(database) as session:
        for chunk in range(0, len(keys), 500):
            rows = session.execute(
                sa.select(Message.dedupe_key, Message.status).where(
                    Message.dedupe_key.in_(keys[chunk : chunk + 500])
                )
            )
            statuses.update({key: status for key, status in rows})
        openids = list(sent)
        for chunk in range(0, len(openids), 500):
            rows = session.execute(
                sa.select(OutboxItem.openid, OutboxItem.text, OutboxItem.status).where(
                    OutboxItem.openid.in_(openids[chunk : chunk + 500])
                )
            )
            for openid, text, status in rows:
                queued[(openid, text)] += 1
                sent_items[(openid, text)] += status == "sent"
                undelivered += status != "sent"
    return statuses, queued, sent_items, undelivered


def tracker_turns(launcher: Launcher, openids: Iterable[str]) -> dict[str, int]:
    url = launcher.urls()[0]
    turns = {}
    for openid in openids:
        with urllib.request.urlopen(
            f"{url}/conversations/{openid}/tracker?token={launcher.token}", timeout=60
        ) as reply:
            turns[openid] = user_turns(json.loads(reply.read())["events"])
    return turns


# ---------------------------------------------------------------------- one run


def run(args: argparse.Namespace, *, workers: int, replicas: int, faults_on: bool) -> dict:
    name = f"jmt_bench_scale_{workers}x{replicas}"
    label = secrets.token_hex(3)
    with (
        tempfile.TemporaryDirectory(prefix="jmt-scale-") as folder,
        fresh_database(name) as database,
    ):
        tmp = Path(folder)
        wechat = WeChatApiStandIn()
        slow = SlowActions(args.slow)
        print(f"\n== {workers} gateway worker(s), {replicas} Rasa replica(s), {name} ==")
        print("  starting the launcher (Rasa loads for 1-3 min) ...", flush=True)
        with launcher(
            tmp,
            database=database,
            workers=workers,
            replicas=replicas,
            wechat=wechat.url,
            actions_proxy=slow.url,
        ) as (bot, actions_port):
            slow.target = f"http://127.0.0.1:{actions_port}"
            until = threading.Event()
            faults = Faults()
            outage = Traffic()
            start = time.monotonic()
            injector = None
            if faults_on:

                def faulting() -> None:
                    try:
                        inject(
                            bot,
                            wechat,
                            tmp,
                            start=start,
                            gap=args.gap,
                            outage=args.outage,
                            faults=faults,
                            database=database,
                            run=f"s{label}",
                            outage_traffic=outage,
                            outage_ids=random.randrange(10**15, 10**16) * 1000 + 999,
                        )
                    finally:
                        until.set()

                injector = threading.Thread(target=faulting, daemon=True)
                injector.start()
            else:
                until.set()
            load, probe, seconds = drive(
                bot,
                run=f"s{label}",
                residents=args.residents,
                messages=args.messages,
                concurrency=args.concurrency,
                retry_share=args.retry_share,
                probes=args.probes if faults_on else 0,
                until=until,
            )
            if injector is not None:
                injector.join()
            sent: dict[str, list[str]] = {}
            merge_sent(load, sent)
            merge_sent(probe, sent)
            merge_sent(outage, sent)

            def settled() -> bool:
                """Late answers queued (a slow action finishes after `success`) and the
                outbox empty — or the --drain timeout, and what is missing is lost."""
                statuses, _, _, undelivered = records(database, sent)
                keys = [k for ks in sent.values() for k in ks]
                return not lost_messages(keys, statuses, undelivered)

            time.sleep(args.slow)
            drained = wait_for(settled, timeout=args.drain, every=2.0)
            statuses, queued, sent_items, undelivered = records(database, sent)
            recorded = wechat.recorded()
            # an item the outbox marked sent that WeChat never received is lost too
            undelivered += duplicated_sends(sent_items, recorded)
            lost = lost_messages([k for ks in sent.values() for k in ks], statuses, undelivered)
            turns = tracker_turns(bot, sent)
            result = {
                "workers": workers,
                "replicas": replicas,
                "messages": sum(len(k) for k in load.sent.values()),
                "probe messages": sum(len(k) for k in probe.sent.values())
                + sum(len(k) for k in outage.sent.values()),
                "seconds": seconds,
                "latencies": load.latencies,
                "answers": sorted(load.answers + probe.answers + outage.answers),
                "kinds": Counter(
                    kind for _, kind, _ in load.answers + probe.answers + outage.answers
                ),
                "passive latencies": [lat for _, kind, lat in load.answers if kind != "success"],
                "transport errors": load.transport_errors
                + probe.transport_errors
                + outage.transport_errors,
                "given up": load.given_up + probe.given_up + outage.given_up,
                "lost": lost,
                "statuses": Counter(statuses.get(k) for ks in sent.values() for k in ks),
                "recovered": recovered_turns(database),
                "duplicated turns": duplicated_turns(turns, {o: len(k) for o, k in sent.items()}),
                "duplicated sends": duplicated_sends(recorded, queued),
                "outbox items": sum(queued.values()),
                "sends recorded": len(wechat.state.messages),
                "failed sends": wechat.failed_attempts,
                "slow actions": slow.delayed,
                "drained": drained,
                "sent_at": list(wechat.sent_at),
                "faults": faults,
                "log": bot.log,
            }
            if args.keep_log:
                shutil.copyfile(bot.log, args.keep_log)
        wechat.server.shutdown()
        slow.server.shutdown()
    return result


def pcts(latencies: list[float]) -> str:
    if not latencies:
        return "no replies"
    return "  ".join(f"p{p} {percentile(latencies, p) * 1000:.0f} ms" for p in (50, 95, 99))


def report(result: dict, baseline: dict | None) -> None:
    lat = result["latencies"]
    rate = result["messages"] / result["seconds"]
    print(
        f"\n== results: {result['workers']} worker(s), {result['replicas']} replica(s) ==\n"
        f"messages              {result['messages']} (+{result['probe messages']} probe)"
        f"  answers by kind {dict(result['kinds'])}\n"
        f"/wechat reply, all    {pcts(lat)}\n"
        f"  answered passively  {pcts(result['passive latencies'])}  (without the slow\n"
        f"  handoffs, which answer `success` at the 4.5 s passive budget by design)\n"
        f"throughput            {rate:.2f} msg/s ({result['seconds']:.0f} s)"
    )
    if baseline is not None:
        base_rate = baseline["messages"] / baseline["seconds"]
        print(f"  vs 1 worker/1 replica {base_rate:.2f} msg/s: ratio {rate / base_rate:.2f}x")
    print(
        f"messages lost         {len(result['lost'])}   (target 0)  "
        f"inbound statuses {dict(result['statuses'])}\n"
        f"recovered turns       {result['recovered']}   (a killed worker's turns, answered by "
        f"the sweep with the fallback and an officer case)\n"
        f"duplicated turns      {result['duplicated turns']}   (target 0, Rasa trackers)\n"
        f"duplicated CS sends   {result['duplicated sends']}   (target 0; "
        f"{result['sends recorded']} sends recorded by the stand-in, "
        f"{result['outbox items']} outbox items, {result['failed sends']} refused with 500)\n"
        f"slow actions          {result['slow actions']} handoffs held > passive budget\n"
        f"transport errors      {result['transport errors']} (re-sent as WeChat does), "
        f"given up {result['given up']}"
    )
    if result["lost"][:5]:
        print(f"  lost, first: {result['lost'][:5]}")
    faults: Faults = result["faults"]
    times = [t for t, _, _ in result["answers"]]
    bot_times = [t for t, kind, _ in result["answers"] if kind != "fallback"]
    for what, began, ended in faults.events:
        line = f"  {what}: "
        if what.startswith("kill -9 Rasa"):
            back = faults.back.get("rasa")
            first = first_after(bot_times, began)
            line += f"replica answering again after {back - began:.1f} s; " if back else ""
            line += f"first bot answer after {first:.2f} s" if first is not None else "no answer"
        elif what.startswith("kill -9 gateway"):
            back = faults.back.get("worker")
            first = first_after(times, began)
            line += f"worker replaced after {back - began:.1f} s; " if back else ""
            line += f"first /wechat answer after {first:.2f} s" if first is not None else ""
        elif what.startswith("WeChat API"):
            first = first_after(result["sent_at"], ended)
            line += (
                f"first send accepted {first:.1f} s after the outage"
                if first is not None
                else "no send after the outage"
            )
            if "outbox" in faults.back:
                line += f"; outbox empty {faults.back['outbox'] - ended:.1f} s after it"
            else:
                line += "; the outbox was not emptied within 300 s"
        elif what.startswith("promoted"):
            # replies answered passively (the slow handoffs wait 4.5 s anyway)
            during = [
                lat for t, kind, lat in result["answers"] if began <= t <= ended and kind != SLOW
            ]
            line += f"longest reply gap {longest_gap(times, began, ended):.2f} s"
            if during:
                line += (
                    f"; {len(during)} passive replies, p99 {percentile(during, 99) * 1000:.0f} ms, "
                    f"max {max(during) * 1000:.0f} ms"
                )
        print(line)
    for note in faults.notes:
        print(f"  note: {note}")
    if not result["drained"]:
        print("  not settled within --drain: the lost messages above were never answered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--residents", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--retry-share", type=float, default=0.2)
    parser.add_argument("--probes", type=int, default=3, help="residents writing throughout")
    parser.add_argument("--gap", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--outage", type=float, default=30.0, help="WeChat API failure, s")
    parser.add_argument("--slow", type=float, default=6.0, help="handoff action delay, s")
    parser.add_argument("--drain", type=float, default=240.0, help="max wait for the outbox")
    parser.add_argument("--baseline", action="store_true", help="also 1 worker, 1 replica")
    parser.add_argument("--keep-log", type=Path, help="copy the launcher's log here")
    args = parser.parse_args()
    if args.messages < 2:
        parser.error("--messages must be at least 2 (the last one asks for a human)")
    check_prerequisites()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"load average at start: {os.getloadavg()}")
    baseline = None
    if args.baseline:
        baseline = run(args, workers=1, replicas=1, faults_on=False)
        report(baseline, None)
    result = run(args, workers=2, replicas=2, faults_on=True)
    report(result, baseline)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
