"""Start the action server, Rasa and the gateway; Ctrl-C stops all three.

`make run` calls this after `make train`; `make shell` uses `--shell` to chat in the
terminal instead of serving HTTP.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from casework import db, logconfig, posture
from casework.settings import (
    Settings,
    SettingsError,
    _env,  # the one settings reader: environment, then .env
    get_settings,
)
from jmt import paths

logger = logging.getLogger(__name__)
LOG_CONFIG = paths.BOT / "logging.yml"  # Rasa's and uvicorn's: casework/logconfig.py's format


def _port(name: str, default: int) -> int:
    return int(_env(name) or default)


def wait_until_up(url: str, timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                if response.status < 500:
                    return True
        except OSError:  # never logged: the URL may carry Rasa's token
            time.sleep(1)
    return False


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


def rasa_server(
    port: int,
    *,
    token: str,
    host: str = "127.0.0.1",
    model: Path | None = None,
    endpoints: Path = paths.ENDPOINTS,
) -> list[str]:
    """`rasa run` as the project runs it everywhere: on `host` (loopback by default), with
    its HTTP API behind `token` (`?token=` on every call), and no CORS (no browser calls
    Rasa; the console goes through the gateway). Rasa 3.6 takes the token only on its
    command line. Its REST channel is not covered by the token: loopback keeps it local.
    The child needs ACTIONS_TOKEN in its environment (bot/endpoints*.yml)."""
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
        "--auth-token",
        token,
        "--logging-config-file",  # the project's log format, scrubbed (casework/logconfig.py)
        str(LOG_CONFIG),
    ]


def gateway(port: int, *, host: str = "127.0.0.1") -> list[str]:
    """uvicorn with the project's log format from its first line (its supervisor process
    with several workers never imports the app, so the app factory cannot configure it)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "gateway.app:app",
        "--host",
        host,
        "--port",
        str(port),
        "--log-config",
        str(LOG_CONFIG),
    ]


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shell", action="store_true", help="chat in the terminal")
    args = parser.parse_args()
    try:
        logconfig.configure()  # LOG_LEVEL; the same format as every child
    except ValueError as error:
        raise SystemExit(str(error)) from None
    settings = get_settings()
    _refuse_development_defaults(settings, database=False)
    if settings.development:
        _banner(settings)
    rasa_port, actions_port = _port("RASA_PORT", 5005), _port("ACTIONS_PORT", 5055)
    gateway_port = _port("GATEWAY_PORT", 8000)
    gateway_host = _env("GATEWAY_HOST") or "127.0.0.1"
    # Rasa reaches the action server on the host it listens on (loopback by default).
    os.environ.setdefault(
        "ACTION_ENDPOINT_URL", f"http://{settings.actions_host}:{actions_port}/webhook"
    )
    os.environ.setdefault("RASA_TRACKER_DB", str(settings.var_dir / "rasa-tracker.sqlite3"))
    Path(os.environ["RASA_TRACKER_DB"]).parent.mkdir(parents=True, exist_ok=True)
    db.migrate()  # the case store is ready before anything can hand off
    _refuse_development_defaults(settings, database=True)
    if settings.development:
        from casework import demo

        with db.session_scope() as session:
            demo.load(session=session)  # demo officers, so hand-offs have someone to go to

    environment = service_environment(settings)
    rasa_token = environment["RASA_TOKEN"]
    actions_url = f"http://{_reachable(settings.actions_host)}:{actions_port}"
    rasa_url = f"http://{_reachable(settings.rasa_host)}:{rasa_port}"
    # A SIGTERM (a supervisor, `timeout`) stops the children too, like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    children: list[subprocess.Popen] = []

    def start(command: list[str]) -> None:
        children.append(subprocess.Popen(command, cwd=paths.REPO_ROOT, env=environment))

    try:
        start(action_server(actions_port, host=settings.actions_host))
        if not wait_until_up(f"{actions_url}/health"):
            raise SystemExit("the action server did not start; see its output above")
        if args.shell:
            # `rasa shell` serves an HTTP API too: closed like `rasa run`'s.
            shell = [
                *rasa_command(),
                "shell",
                "--model",
                str(served_model()),
                "--endpoints",
                str(paths.ENDPOINTS),
                "--interface",
                settings.rasa_host,
                "--port",
                str(rasa_port),
                "--auth-token",
                rasa_token,
            ]
            subprocess.run(shell, cwd=paths.REPO_ROOT, env=environment, check=False)
            return
        start(rasa_server(rasa_port, token=rasa_token, host=settings.rasa_host))
        if not wait_until_up(f"{rasa_url}/status?token={rasa_token}"):
            raise SystemExit("Rasa did not start; see its output above")
        start(gateway(gateway_port, host=gateway_host))
        base = f"http://{_reachable(gateway_host)}:{gateway_port}"
        if not wait_until_up(f"{base}/healthz"):
            raise SystemExit("the gateway did not start; see its output above")
        logger.info("警民通 is running (Ctrl-C stops everything):")
        if settings.simulator_enabled:
            logger.info("  WeChat simulator (start here):     %s/simulator", base)
        logger.info("  WeChat callback URL:               %s/wechat", base)
        logger.info("  Officer console:                   %s/console", base)
        logger.info("  API docs / health:                 %s/docs  %s/healthz", base, base)
        if settings.development:
            from casework import demo

            logger.info(
                "  demo accounts (password %s): commander, fanzha (反诈), "
                "fazhi (法制), officer01 ... (community officers)",
                demo.DEMO_PASSWORD,
            )
        logger.info("  Rasa (NLU + dialogue, triage API): %s (token: RASA_TOKEN)", rasa_url)
        if settings.development:
            logger.info(
                '    try: curl -s "%s/model/parse?token=$(cat %s)" '
                '-d \'{"text":"我被刷单骗了两万"}\'',
                rasa_url,
                settings.var_dir / "rasa-token",
            )
        logger.info("  action server:                     %s (token: ACTIONS_TOKEN)", actions_url)
        logger.info("  chat in the terminal instead:      make shell")
        while all(child.poll() is None for child in children):
            time.sleep(1)
        logger.error("a process exited; stopping the others")
    except KeyboardInterrupt:
        logger.info("stopping ...")
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def _reachable(host: str) -> str:
    """Where this machine reaches a server listening on `host` (a wildcard bind answers
    on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


if __name__ == "__main__":
    main()
