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

from casework import db
from casework.settings import get_settings
from jmt import paths

logger = logging.getLogger(__name__)


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def wait_until_up(url: str, timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                if response.status < 500:
                    return True
        except OSError:
            time.sleep(1)
    return False


def action_server(port: int) -> list[str]:
    return [_bin("rasa"), "run", "actions", "--actions", "actions", "--port", str(port)]


def served_model() -> Path:
    """The promoted model (bot/models/LIVE, see `jmt model promote`), else the newest."""
    live = paths.MODELS / "LIVE"
    return paths.MODELS / live.read_text().strip() if live.exists() else paths.MODELS


def rasa_server(port: int) -> list[str]:
    return [
        _bin("rasa"),
        "run",
        "--enable-api",
        "--model",
        str(served_model()),
        "--endpoints",
        str(paths.ENDPOINTS),
        "--credentials",
        str(paths.CREDENTIALS),
        "--port",
        str(port),
        "--cors",
        "*",
    ]


def gateway(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "gateway.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shell", action="store_true", help="chat in the terminal")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[jmt] %(message)s")
    rasa_port, actions_port = _port("RASA_PORT", 5005), _port("ACTIONS_PORT", 5055)
    gateway_port = _port("GATEWAY_PORT", 8000)
    os.environ.setdefault("ACTION_ENDPOINT_URL", f"http://127.0.0.1:{actions_port}/webhook")
    os.environ.setdefault("RASA_TRACKER_DB", str(paths.REPO_ROOT / "var" / "rasa-tracker.sqlite3"))
    Path(os.environ["RASA_TRACKER_DB"]).parent.mkdir(parents=True, exist_ok=True)
    db.migrate()  # the case store is ready before anything can hand off
    if get_settings().development:
        from casework import demo

        with db.session_scope() as session:
            demo.load(session=session)  # demo officers, so hand-offs have someone to go to

    # A SIGTERM (a supervisor, `timeout`) stops the children too, like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    children: list[subprocess.Popen] = []
    try:
        children.append(subprocess.Popen(action_server(actions_port), cwd=paths.REPO_ROOT))
        if not wait_until_up(f"http://127.0.0.1:{actions_port}/health"):
            raise SystemExit("the action server did not start; see its output above")
        if args.shell:
            shell = [
                _bin("rasa"),
                "shell",
                "--model",
                str(served_model()),
                "--endpoints",
                str(paths.ENDPOINTS),
            ]
            subprocess.run(shell, cwd=paths.REPO_ROOT, check=False)
            return
        children.append(subprocess.Popen(rasa_server(rasa_port), cwd=paths.REPO_ROOT))
        if not wait_until_up(f"http://127.0.0.1:{rasa_port}/status"):
            raise SystemExit("Rasa did not start; see its output above")
        children.append(subprocess.Popen(gateway(gateway_port), cwd=paths.REPO_ROOT))
        if not wait_until_up(f"http://127.0.0.1:{gateway_port}/healthz"):
            raise SystemExit("the gateway did not start; see its output above")
        base = f"http://127.0.0.1:{gateway_port}"
        logger.info("警民通 is running (Ctrl-C stops everything):")
        if get_settings().simulator_enabled:
            logger.info("  WeChat simulator (start here):     %s/simulator", base)
        logger.info("  WeChat callback URL:               %s/wechat", base)
        logger.info("  Officer console:                   %s/console", base)
        logger.info("  API docs / health:                 %s/docs  %s/healthz", base, base)
        if get_settings().development:
            from casework import demo

            logger.info(
                "  demo accounts (password %s): commander, fanzha (反诈), "
                "fazhi (法制), officer01 ... (community officers)",
                demo.DEMO_PASSWORD,
            )
        logger.info("  Rasa (NLU + dialogue, triage API): http://127.0.0.1:%s", rasa_port)
        logger.info(
            '    try: curl -s localhost:%s/model/parse -d \'{"text":"我被刷单骗了两万"}\'',
            rasa_port,
        )
        logger.info("  action server:                     http://127.0.0.1:%s", actions_port)
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


if __name__ == "__main__":
    main()
