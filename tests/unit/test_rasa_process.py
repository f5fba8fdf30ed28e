"""jmt.rasa_process: Rasa's command line, with TensorFlow loaded without JAX, its API token
taken from the environment (never on a command line), and the gateway's request id on
Rasa's log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from casework import logconfig
from casework.settings import Settings
from integrations.rasa import RasaClient
from jmt import launch, paths, rasa_process
from jmt.supervisor import Supervisor


def test_rasa_runs_through_the_wrapper_and_tensorflow_loads_without_jax():
    script = (
        "import sys, runpy\n"
        "sys.argv = ['rasa', '--version']\n"
        "runpy.run_module('jmt.rasa_process', run_name='__main__')\n"
        "import tensorflow, rasa.utils.tensorflow.models\n"
        "assert sys.modules['jax'] is None, 'JAX was imported'\n"
        "print('tensorflow', tensorflow.__version__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Rasa Version      :         3.6.21" in done.stdout  # Rasa's own CLI answered
    assert "tensorflow 2." in done.stdout


def test_every_rasa_process_the_launcher_starts_goes_through_the_wrapper(tmp_path):
    command = launch.rasa_server(5005, model=tmp_path / "m.tar.gz")
    assert command[:4] == [sys.executable, "-m", "jmt.rasa_process", "run"]


# --- the token: in the environment, never on the command line ---------------------------

TOKEN = "rasa-token-never-on-a-command-line"


def test_the_server_commands_carry_no_token_and_the_environment_does(tmp_path):
    model = tmp_path / "m.tar.gz"
    for command in (
        launch.rasa_server(5005, model=model),
        launch.rasa_shell(5005, host="127.0.0.1"),
    ):
        assert "--auth-token" not in command
    assert launch.rasa_environment(TOKEN) == {rasa_process.AUTH_TOKEN_ENV: TOKEN}
    with pytest.raises(ValueError):
        launch.rasa_environment("")  # never a Rasa started with an open API


def test_rasa_process_hands_the_token_to_rasas_own_parser(tmp_path):
    argv = [*launch.rasa_server(5005, model=Path("m.tar.gz"))[2:]]  # as `python -m` sees it
    environ = {rasa_process.AUTH_TOKEN_ENV: TOKEN, "OTHER": "kept"}
    given = rasa_process.with_auth_token(argv, environ)
    assert environ == {"OTHER": "kept"}  # nothing Rasa starts inherits the token
    assert TOKEN not in argv  # the caller's list (the exec'd command line) is untouched
    # Rasa also takes a model path given last on the line (`rasa run models/x.tar.gz`).
    model = tmp_path / "last.tar.gz"
    model.write_bytes(b"")
    last = rasa_process.with_auth_token(
        ["rasa", "run", "--port", "5006", str(model)], {rasa_process.AUTH_TOKEN_ENV: TOKEN}
    )
    # What `rasa run` reads: Rasa's CLI (`rasa.__main__`) reading sys.argv, in a clean
    # process.
    script = (
        "import sys, json\n"
        "sys.modules['jax'] = None\n"
        "from rasa.__main__ import create_argument_parser\n"
        "from rasa.cli.utils import parse_last_positional_argument_as_model_path\n"
        "for line in json.loads(sys.argv[1]):\n"
        "    sys.argv = line\n"
        "    parse_last_positional_argument_as_model_path()\n"
        "    args = create_argument_parser().parse_args()\n"
        "    print(args.auth_token, args.func.__name__, args.port, args.model)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps([given, last])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        f"{TOKEN} run 5005 m.tar.gz",
        f"{TOKEN} run 5006 {model}",
    ]


def test_a_server_without_a_token_is_refused_and_other_commands_are_left_alone():
    with pytest.raises(SystemExit, match=rasa_process.AUTH_TOKEN_ENV):
        rasa_process.with_auth_token(["rasa", "run", "--enable-api"], {})
    with pytest.raises(SystemExit, match="one way only"):
        rasa_process.with_auth_token(
            ["rasa", "shell", "--auth-token", "x"], {rasa_process.AUTH_TOKEN_ENV: TOKEN}
        )
    explicit = ["rasa", "run", "--auth-token=x"]  # a person's choice, visible in `ps`
    assert rasa_process.with_auth_token(explicit, {}) == explicit
    for other in (["rasa", "--version"], ["rasa", "run", "actions"], ["rasa", "train"]):
        environ = {rasa_process.AUTH_TOKEN_ENV: TOKEN}
        assert rasa_process.with_auth_token(other, environ) == other
        assert environ == {}


def test_the_launchers_replicas_start_without_the_token_on_their_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JMT_ENV", "development")
    monkeypatch.setenv("JMT_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("RASA_TOKEN", TOKEN)
    monkeypatch.setattr("casework.settings._dotenv", lambda path: {})
    settings = Settings.from_env()
    environment = launch.service_environment(settings)
    fleet = launch.rasa_fleet(
        Supervisor(), settings, environment, endpoints=paths.ENDPOINTS, base_port=5005
    )
    child = fleet._child(0, 5005, tmp_path / "m.tar.gz")  # what a start or a promotion runs
    assert child.command()[:4] == [sys.executable, "-m", "jmt.rasa_process", "run"]
    assert not [part for part in child.command() if TOKEN in part]
    assert child.environment()[rasa_process.AUTH_TOKEN_ENV] == TOKEN


def test_the_wrapper_really_starts_rasa_with_the_token_and_the_request_id_middleware():
    """`python -m jmt.rasa_process run`, Rasa's command intercepted just before it would
    serve: what it was given, its app factory, the environment it passes on."""
    script = (
        "import os, runpy, sys\n"
        "import rasa.cli.run\n"
        "def serve(args):\n"
        "    import rasa.core.run\n"
        "    wrapped = getattr(rasa.core.run.configure_app, 'carries_request_ids', False)\n"
        "    print('token', args.auth_token)\n"
        "    print('middleware', wrapped)\n"
        f"    print('inherited', {rasa_process.AUTH_TOKEN_ENV!r} in os.environ)\n"
        "rasa.cli.run.run = serve  # what `rasa run` would call\n"
        "sys.argv = ['rasa', 'run', '--enable-api', '--port', '5005']\n"
        "runpy.run_module('jmt.rasa_process', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **launch.rasa_environment(TOKEN)},
        cwd=paths.REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line for line in done.stdout.splitlines() if line.split()[0] in WANTED] == [
        f"token {TOKEN}",
        "middleware True",
        "inherited False",
    ]


WANTED = {"token", "middleware", "inherited"}


# --- the request id: from the gateway's client to Rasa's log lines -----------------------


class Lines(logging.Handler):
    """The project's formatted lines (casework.logconfig's filter and format)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logconfig.Formatter())
        self.addFilter(logconfig.RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def rasa_like_app() -> Any:
    """A stand-in for the app `rasa.core.run.configure_app` builds: a Sanic app (as Rasa
    3.6's) whose REST webhook logs as Rasa's processor does."""
    from sanic import Sanic, response

    app = Sanic(f"rasa_stand_in_{uuid.uuid4().hex[:8]}")
    rasa_logger = logging.getLogger("rasa.core.processor")

    @app.post("/webhooks/rest/webhook")
    async def webhook(request: Any) -> Any:
        await asyncio.sleep(0)
        rasa_logger.info("received %s", request.json["sender"])
        return response.json([])

    return app


def test_rasas_log_lines_carry_the_gateways_request_id() -> None:
    lines = Lines()
    rasa_logger = logging.getLogger("rasa.core.processor")
    rasa_logger.addHandler(lines)
    level = rasa_logger.level
    rasa_logger.setLevel(logging.INFO)
    configure = rasa_process.with_request_ids(lambda: rasa_like_app())
    assert rasa_process.with_request_ids(configure) is configure  # wrapped once only

    async def exchange() -> None:
        app = configure()
        server = await app.create_server(
            host="127.0.0.1", port=0, return_asyncio_server=True, access_log=False
        )
        assert server is not None
        await server.startup()
        await server.start_serving()
        port = server.server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        client = RasaClient(url)  # the gateway's client: one keep-alive connection
        try:
            token = logconfig.REQUEST_ID.set("req-0123456789abcdef")  # inside a /wechat call
            await client.send("with-id", "你好")
            logconfig.REQUEST_ID.reset(token)
            await client.send("without-id", "你好")  # outside any request: no header
            async with httpx.AsyncClient() as other:  # any other local caller
                await other.post(
                    f"{url}/webhooks/rest/webhook",
                    json={"sender": "ill-formed", "message": "你好"},
                    headers={"X-Request-ID": "a forged] line"},
                )
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    try:
        asyncio.run(exchange())
    finally:
        rasa_logger.removeHandler(lines)
        rasa_logger.setLevel(level)
    received = [line.split(" ", 5)[4:] for line in lines.lines]  # after time, level, name
    assert received == [
        ["[req-0123456789abcdef]", "received with-id"],
        ["[-]", "received without-id"],  # the previous request's id does not linger
        ["[-]", "received ill-formed"],
    ]


def test_rasas_tracker_store_engine_hides_its_parameters(tmp_path, monkeypatch):
    """Once the plugin's hook ran (as in every `rasa run` the wrapper starts), the SQL
    tracker store's engine hides statement parameters: a failed INSERT of an event cannot
    log the resident's words it carried."""
    import rasa.core.run
    import rasa.core.tracker_store as tracker_store

    # Restored after the test: the hook replaces both module attributes.
    monkeypatch.setattr(rasa.core.run, "configure_app", rasa.core.run.configure_app)
    monkeypatch.setattr(tracker_store, "create_engine_kwargs", tracker_store.create_engine_kwargs)
    before = tracker_store.SQLTrackerStore(db=str(tmp_path / "before.db"))
    assert before.engine.hide_parameters is False  # Rasa's own default
    rasa_process.RequestIdPlugin().configure_commandline(None)
    rasa_process.RequestIdPlugin().configure_commandline(None)  # idempotent
    store = tracker_store.SQLTrackerStore(db=str(tmp_path / "tracker.db"))
    assert store.engine.hide_parameters is True
    postgres = tracker_store.create_engine_kwargs("postgresql://u@h/db")
    assert postgres["hide_parameters"] is True and "pool_size" in postgres  # Rasa's kept
