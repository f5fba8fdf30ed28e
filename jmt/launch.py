"""Start and supervise the action server, the Rasa replicas and the gateway workers.

`make run` calls this after `make train`; `make shell` uses `--shell` to chat in the
terminal instead of serving HTTP. A process that exits unexpectedly is restarted with
backoff while the others keep serving (jmt/supervisor.py); only Ctrl-C or SIGTERM stops
everything. `GATEWAY_WORKERS` uvicorn processes share one listening socket
(jmt/gateway_worker.py); `RASA_REPLICAS` `rasa run` processes listen on RASA_PORT,
RASA_PORT+1, … and a model promotion swaps them one by one without a pause
(jmt/rasa_fleet.py). A launcher owns its JMT_VAR_DIR (the control folder,
rasa-urls.json, the Prometheus files): a second one on the same folder refuses to start
(exit code 75, naming the first one's pid).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from casework import db, logconfig, posture
from casework.settings import (
    Settings,
    SettingsError,
    _env,  # the one settings reader: environment, then .env
    get_settings,
)
from gateway.observability import MULTIPROC_ENV, prepare_multiprocess_dir
from jmt import paths, rasa_process
from jmt.rasa_fleet import RasaFleet
from jmt.supervisor import Child, Supervisor

logger = logging.getLogger(__name__)
LOG_CONFIG = paths.BOT / "logging.yml"  # Rasa's and uvicorn's: casework/logconfig.py's format
LOCK_FILE = "launcher.lock"  # in JMT_VAR_DIR: held by the launcher that owns the folder
VAR_DIR_BUSY = 75  # the exit code when another launcher holds it (EX_TEMPFAIL)


class VarDirBusy(Exception):
    """Another launcher holds the var folder; `holder` is its pid as it wrote it."""

    def __init__(self, var_dir: Path, holder: str) -> None:
        super().__init__(f"{var_dir} is held by pid {holder}")
        self.var_dir, self.holder = var_dir, holder


def hold_var_dir(var_dir: Path) -> int:
    """Take `var_dir` for this launcher's life: an exclusive `flock` on its lock file,
    which then names this pid. Returns the descriptor (keep it open; the kernel lets go
    when the process ends, however it ends, so a killed launcher leaves no stale lock).
    Raises VarDirBusy when another launcher holds it: two launchers on one folder would
    fight over the control folder, rasa-urls.json and the Prometheus files.

    The descriptor is not inherited by children (Python opens it close-on-exec): a Rasa
    left running by a killed launcher must not keep the folder locked."""
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(var_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        # Empty only in the instant between the other's flock and its write.
        raise VarDirBusy(var_dir, holder or "unknown") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _hold_or_refuse(var_dir: Path) -> int:
    try:
        return hold_var_dir(var_dir)
    except VarDirBusy as busy:
        logger.error(
            "another launcher (pid %s) is running with JMT_VAR_DIR=%s: it owns the control "
            "folder, rasa-urls.json and the Prometheus files there. Stop it (Ctrl-C, or "
            "kill -TERM %s) or give this one another JMT_VAR_DIR.",
            busy.holder,
            busy.var_dir,
            busy.holder,
        )
        raise SystemExit(VAR_DIR_BUSY) from None


def _port(name: str, default: int) -> int:
    return int(_env(name) or default)


def rasa_endpoint_environment(settings: Settings, actions_port: int) -> dict[str, str]:
    """What bot/endpoints.yml substitutes, as set in the environment or `.env` (Rasa reads
    only its environment, so `.env`'s values are handed on), else the defaults: Rasa
    reaches the action server on the host it listens on (loopback by default), and keeps
    its trackers in var/."""
    return {
        "ACTION_ENDPOINT_URL": _env("ACTION_ENDPOINT_URL")
        or f"http://{settings.actions_host}:{actions_port}/webhook",
        "RASA_TRACKER_DB": _env("RASA_TRACKER_DB")
        or str(settings.var_dir / "rasa-tracker.sqlite3"),
    }


def action_server(port: int, *, host: str = "127.0.0.1") -> list[str]:
    """rasa-sdk behind ACTIONS_TOKEN (jmt/actions_server.py), which it reads from the
    environment: a secret on a command line is visible to every local user (`ps`)."""
    return [sys.executable, "-m", "jmt.actions_server", "--host", host, "--port", str(port)]


def rasa_command() -> list[str]:
    """`rasa` without JAX in memory (jmt/rasa_process.py: ~105 MB less per process)."""
    return [sys.executable, "-m", "jmt.rasa_process"]


def served_model() -> Path:
    """The promoted model (bot/models/LIVE, see `jmt model promote`), else the newest."""
    live = paths.MODELS / "LIVE"
    return paths.MODELS / live.read_text().strip() if live.exists() else paths.MODELS


def rasa_environment(token: str) -> dict[str, str]:
    """What a Rasa process needs in its environment besides the rest: its API token, which
    jmt/rasa_process.py hands to Rasa in-process (a command line is readable by every
    local user with `ps`). Every `rasa_server()` command needs it."""
    if not token:
        raise ValueError("Rasa's API token is empty")
    return {rasa_process.AUTH_TOKEN_ENV: token}


def rasa_server(
    port: int,
    *,
    host: str = "127.0.0.1",
    model: Path | None = None,
    endpoints: Path = paths.ENDPOINTS,
) -> list[str]:
    """`rasa run` as the project runs it everywhere: on `host` (loopback by default), with
    its HTTP API behind a token (`?token=` on every call) and no CORS (no browser calls
    Rasa; the console goes through the gateway). The token is not on this command line:
    start it with `rasa_environment(token)` in its environment. Rasa's REST channel is not
    covered by the token: loopback keeps it local. The child needs ACTIONS_TOKEN in its
    environment too (bot/endpoints*.yml)."""
    return [
        *rasa_command(),
        "run",
        "--enable-api",
        "--model",
        str(model or served_model()),
        "--endpoints",
        str(endpoints),
        "--credentials",
        str(paths.CREDENTIALS),
        "--interface",
        host,
        "--port",
        str(port),
        "--logging-config-file",  # the project's log format, scrubbed (casework/logconfig.py)
        str(LOG_CONFIG),
    ]


def rasa_shell(port: int, *, host: str, endpoints: Path = paths.ENDPOINTS) -> list[str]:
    """`rasa shell` (`make shell`): it serves an HTTP API too, closed like `rasa run`'s
    (the token in its environment: `rasa_environment`)."""
    return [
        *rasa_command(),
        "shell",
        "--model",
        str(served_model()),
        "--endpoints",
        str(endpoints),
        "--interface",
        host,
        "--port",
        str(port),
    ]


def rasa_fleet(
    supervisor: Supervisor,
    settings: Settings,
    environment: dict[str, str],
    *,
    endpoints: Path,
    base_port: int,
) -> RasaFleet:
    """The launcher's Rasa replicas: `rasa_server` commands (no token on them), started
    with `environment` (RASA_TOKEN among it) and the token for rasa_process."""
    token = environment["RASA_TOKEN"]
    children = {**environment, **rasa_environment(token)}
    return RasaFleet(
        supervisor,
        command=lambda port, model: rasa_server(
            port, host=settings.rasa_host, model=model, endpoints=endpoints
        ),
        environment=lambda: children,
        cwd=paths.REPO_ROOT,
        host=_reachable(settings.rasa_host),
        token=token,
        base_port=base_port,
        replicas=settings.rasa_replicas,
        var_dir=settings.var_dir,
        drain=settings.rasa_drain_seconds,
    )


def service_environment(settings: Settings) -> dict[str, str]:
    """The environment of every child: the same tokens for all (in development they were
    generated into var/ by the settings; production refused to start without them)."""
    environment = dict(os.environ)
    environment["RASA_TOKEN"] = settings.rasa_token or ""
    environment["ACTIONS_TOKEN"] = settings.actions_token or ""
    environment["JMT_VAR_DIR"] = str(settings.var_dir)
    return environment


DEVELOPMENT_BANNER = """
==========================================================================================
  DEVELOPMENT MODE (JMT_ENV=development) — never expose this to a network:
  - the WeChat/DingTalk/governance simulator is on and signs anything it is given;
  - demo accounts exist with the published password %s;
  - secrets (RASA_TOKEN, ACTIONS_TOKEN, SECRET_KEY) are generated into %s;
  - the database is %s.
  A deployment sets JMT_ENV=production and real settings (.env.example lists them all).
==========================================================================================
"""


def _banner(settings: Settings) -> None:
    from casework import demo

    database = "SQLite" if settings.database_url.startswith("sqlite") else "as DATABASE_URL says"
    logger.warning(DEVELOPMENT_BANNER, demo.DEMO_PASSWORD, settings.var_dir, database)


def _refuse_development_defaults(settings: Settings, *, database: bool) -> None:
    """Production refuses every development default before anything starts: the
    settings first, then (once the schema exists) demo accounts in the database."""
    try:
        if not database:
            settings.check_for_production()
        elif not settings.development:
            with db.session_scope() as session:
                posture.check_production_database(session=session)
    except SettingsError as error:
        raise SystemExit(str(error)) from None


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise SystemExit(f"{name}={value} must be at least 1")
    return value


def replica_environment(settings: Settings) -> tuple[dict[str, str], Path]:
    """Rasa's stores for `settings.rasa_replicas` processes: the embedded defaults
    (bot/endpoints.yml: SQLite tracker file, in-memory locks) for one; for several, which
    share conversations, the production stores (bot/endpoints.production.yml: the SQL
    tracker store in PostgreSQL, the Redis lock store), their RASA_DB_* / RASA_REDIS_*
    derived from DATABASE_URL / REDIS_URL unless set. Refuses what cannot work."""
    if settings.rasa_replicas == 1:
        return {}, paths.ENDPOINTS
    problems = []
    if not settings.database_url.startswith("postgresql"):
        problems.append(
            "DATABASE_URL must be PostgreSQL (postgresql://user:password@host/db): the "
            "replicas share conversations in Rasa's SQL tracker store there"
        )
    if not settings.redis_url:
        problems.append(
            "REDIS_URL must be set (redis://host:6379/0): the replicas lock each "
            "conversation in Rasa's Redis lock store while they process a message"
        )
    elif urlsplit(settings.redis_url).password and not _env("RASA_REDIS_HOST"):
        problems.append(
            "REDIS_URL carries a password, which bot/endpoints.production.yml cannot pass "
            "to Rasa's lock store: use a Redis reachable without one for Rasa and set "
            "RASA_REDIS_HOST/RASA_REDIS_PORT/RASA_REDIS_DB"
        )
    if problems:
        raise SystemExit(
            f"RASA_REPLICAS={settings.rasa_replicas} needs shared stores:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
            + "\n(or set RASA_REPLICAS=1 for the embedded defaults)"
        )
    assert settings.redis_url is not None
    database = make_url(settings.database_url)
    redis = urlsplit(settings.redis_url)
    derived = {
        "RASA_DB_HOST": database.host or "127.0.0.1",
        "RASA_DB_PORT": str(database.port or 5432),
        "RASA_DB_NAME": database.database or "postgres",
        "RASA_DB_USER": database.username or "",
        "RASA_DB_PASSWORD": database.password or "",
        "RASA_REDIS_HOST": redis.hostname or "127.0.0.1",
        "RASA_REDIS_PORT": str(redis.port or 6379),
        "RASA_REDIS_DB": redis.path.lstrip("/") or "0",
        "RASA_REDIS_PREFIX": "jmt",
    }
    return {name: _env(name) or value for name, value in derived.items()}, (
        paths.BOT / "endpoints.production.yml"
    )


def check_ports(rasa_port: int, replicas: int, actions_port: int, gateway_port: int) -> None:
    """Each replica has two ports (serving, spare for promotions): none may be another's."""
    used = range(rasa_port, rasa_port + 2 * replicas)
    taken = sorted({actions_port, gateway_port} & set(used))
    if taken:
        raise SystemExit(
            f"RASA_PORT={rasa_port} with {replicas} replica(s) uses ports {used.start}-"
            f"{used.stop - 1} (each replica has a spare port for promotions), which include "
            f"{taken}: choose other ports"
        )


def listen(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound once here and shared by every worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def gateway_worker(listener: socket.socket) -> list[str]:
    return [sys.executable, "-m", "jmt.gateway_worker", "--fd", str(listener.fileno())]


def _wait_up(
    url: str, child: Child, supervisor: Supervisor, what: str, timeout: float = 240
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not supervisor.stopping:
        if child.process is None or child.process.poll() is not None:
            raise SystemExit(f"{what} exited while starting; see its output above")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                if response.status < 500:
                    return
        except OSError:  # never logged: the URL may carry a token
            pass
        time.sleep(1)
    if supervisor.stopping:
        raise SystemExit(0)  # Ctrl-C/SIGTERM while starting: stop what was started, quietly
    raise SystemExit(f"{what} did not start in time; see its output above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shell", action="store_true", help="chat in the terminal")
    args = parser.parse_args()
    try:
        logconfig.configure()  # LOG_LEVEL; the same format as every child
    except ValueError as error:
        raise SystemExit(str(error)) from None
    settings = get_settings()
    # Refused before anything is created (not even the var folder for the lock).
    _refuse_development_defaults(settings, database=False)
    # Held until this process ends (never closed: the kernel releases it then).
    _hold_or_refuse(settings.var_dir)
    workers = _positive("GATEWAY_WORKERS", settings.gateway_workers)
    replicas = _positive("RASA_REPLICAS", settings.rasa_replicas)
    rasa_stores, endpoints = replica_environment(settings)
    if settings.development:
        _banner(settings)
    rasa_port, actions_port = _port("RASA_PORT", 5005), _port("ACTIONS_PORT", 5055)
    gateway_port = _port("GATEWAY_PORT", 8000)
    gateway_host = _env("GATEWAY_HOST") or "127.0.0.1"
    check_ports(rasa_port, replicas, actions_port, gateway_port)
    os.environ.update(rasa_endpoint_environment(settings, actions_port))
    Path(os.environ["RASA_TRACKER_DB"]).parent.mkdir(parents=True, exist_ok=True)
    db.migrate()  # the case store is ready before anything can hand off
    _refuse_development_defaults(settings, database=True)
    if settings.development:
        from casework import demo

        with db.session_scope() as session:
            demo.load(session=session)  # demo officers, so hand-offs have someone to go to

    environment = {**service_environment(settings), **rasa_stores}
    rasa_token = environment["RASA_TOKEN"]
    rasa_children = {**environment, **rasa_environment(rasa_token)}  # for `--shell`
    actions_url = f"http://{_reachable(settings.actions_host)}:{actions_port}"
    supervisor = Supervisor()
    # Ctrl-C and SIGTERM (a service manager, `timeout`) stop everything; nothing else does.
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    fleet = rasa_fleet(supervisor, settings, environment, endpoints=endpoints, base_port=rasa_port)

    # Prometheus counts of every gateway worker add up through files in one folder
    # (prometheus_client's multiprocess mode); emptied here, before any worker starts,
    # never while they run. A restarted worker needs nothing more (counters only).
    metrics_dir = prepare_multiprocess_dir(settings.var_dir / "prometheus")

    def gateway_environment() -> dict[str, str]:
        """Built at every (re)start: a worker started after a promotion gets the live list."""
        urls = fleet.urls()
        return {
            **environment,
            "RASA_URLS": ",".join(urls),
            "RASA_URL": urls[0],
            MULTIPROC_ENV: str(metrics_dir),
        }

    listener: socket.socket | None = None
    try:
        actions = supervisor.start(
            Child(
                "action server",
                lambda: action_server(actions_port, host=settings.actions_host),
                environment=lambda: environment,
                cwd=paths.REPO_ROOT,
            )
        )
        _wait_up(f"{actions_url}/health", actions, supervisor, "the action server")
        if args.shell:
            # `rasa shell` serves an HTTP API too: closed like `rasa run`'s.
            shell = rasa_shell(rasa_port, host=settings.rasa_host, endpoints=endpoints)
            subprocess.run(shell, cwd=paths.REPO_ROOT, env=rasa_children, check=False)
            return
        fleet.start(Path(settings.rasa_model) if settings.rasa_model else served_model())
        for replica in fleet.replicas:
            _wait_up(
                f"{fleet.url(replica.port)}/status?token={rasa_token}",
                replica.child,
                supervisor,
                replica.child.name,
                timeout=600,  # several replicas load their models at once
            )
        fleet.publish()
        listener = shared = listen(gateway_host, gateway_port)
        workers_started = [
            supervisor.start(
                Child(
                    f"gateway worker {n}",
                    lambda: gateway_worker(shared),
                    environment=gateway_environment,
                    cwd=paths.REPO_ROOT,
                    pass_fds=(shared.fileno(),),
                )
            )
            for n in range(workers)
        ]
        base = f"http://{_reachable(gateway_host)}:{gateway_port}"
        _wait_up(f"{base}/healthz", workers_started[0], supervisor, "the gateway")
        _announce(settings, base, fleet.urls(), actions_url, workers)
        supervisor.every_tick(fleet.check_requests)
        supervisor.run()
    finally:
        fleet.withdraw()
        if supervisor.children:
            logger.info("stopping ...")
        supervisor.stop_all()
        if listener is not None:
            listener.close()


def _announce(
    settings: Settings, base: str, rasa_urls: list[str], actions_url: str, workers: int
) -> None:
    logger.info("警民通 is running (Ctrl-C stops everything; a crashed process is restarted):")
    if settings.simulator_enabled:
        logger.info("  WeChat simulator (start here):     %s/simulator", base)
    logger.info("  WeChat callback URL:               %s/wechat (%s worker(s))", base, workers)
    logger.info("  Officer console:                   %s/console", base)
    logger.info("  API docs / health:                 %s/docs  %s/healthz", base, base)
    if settings.development:
        from casework import demo

        logger.info(
            "  demo accounts (password %s): commander, fanzha (反诈), "
            "fazhi (法制), officer01 ... (community officers)",
            demo.DEMO_PASSWORD,
        )
    logger.info("  Rasa (NLU + dialogue, triage API): %s (token: RASA_TOKEN)", " ".join(rasa_urls))
    if settings.development:
        logger.info(
            '    try: curl -s "%s/model/parse?token=$(cat %s)" -d \'{"text":"我被刷单骗了两万"}\'',
            rasa_urls[0],
            settings.var_dir / "rasa-token",
        )
    logger.info("  action server:                     %s (token: ACTIONS_TOKEN)", actions_url)
    logger.info("  promote a model without a pause:   jmt model promote")
    logger.info("  chat in the terminal instead:      make shell")


def _reachable(host: str) -> str:
    """Where this machine reaches a server listening on `host` (a wildcard bind answers
    on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


if __name__ == "__main__":
    main()
