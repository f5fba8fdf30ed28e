"""`rasa` as the project runs it: Rasa's own command line, without JAX in memory, with its
API token kept off the command line, and the gateway's request id on its log lines.

    JMT_RASA_AUTH_TOKEN=... python -m jmt.rasa_process run --enable-api ...   # as `rasa`

JAX. TensorFlow 2.12 depends on JAX and imports it at start-up for its TFLite converter,
which Rasa never uses. Measured on this machine: `import tensorflow` takes 609 MB resident
with JAX imported and 505 MB without, so every Rasa process carries ~105 MB for nothing.
Marking JAX unimportable before TensorFlow loads makes TensorFlow take its own
"JAX is not installed" path (`tensorflow/lite/python/util.py` catches the ImportError).

The token. Rasa 3.6 reads its HTTP API token only from `--auth-token`, and a process's
command line is readable by every local user (`ps`, /proc/PID/cmdline); its environment is
readable only by its owner and root. So the launcher passes the token in the environment
(`JMT_RASA_AUTH_TOKEN`, see `jmt.launch.rasa_environment`) and `main()` inserts
`--auth-token` into `sys.argv` in this process, after the exec: Rasa's argument parser reads
`sys.argv`, /proc/PID/cmdline keeps what was exec'd. A server (`run`, `shell`) started
without a token is refused: its API would be open to every local process.

The request id. The gateway sends each call's request id as the `X-Request-ID` header
(integrations/rasa.py). A Sanic request middleware, added to the app Rasa builds
(`rasa.core.run.configure_app`, which `rasa run` and `rasa shell` both go through), puts a
well-formed one in `casework.logconfig.REQUEST_ID`; the log handler of bot/logging.yml
prints it. Sanic runs the middleware and the handler in one task (and tasks the handler
starts copy its context), so Rasa's lines for that message carry the gateway's id. The
middleware sets the id on every request, `-` when there is none: requests on one
keep-alive connection share a task, and an id must not leak into the next request.

The tracker store's SQL. Rasa's SQL tracker store builds its SQLAlchemy engine itself,
without `hide_parameters`, so a failed INSERT of an event would log the event's JSON — a
resident's words — as the statement's parameters. The same plugin makes that engine hide
them, as the project's own engines do (casework/db.py).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import pluggy

from casework import logconfig

AUTH_TOKEN_ENV = "JMT_RASA_AUTH_TOKEN"
AUTH_TOKEN_FLAG = "--auth-token"
SERVERS = ("run", "shell")  # Rasa's commands that serve its HTTP API (`--auth-token`)


def _serves(argv: list[str]) -> bool:
    """`rasa run` or `rasa shell`, not `rasa run actions` (rasa-sdk) nor `rasa shell nlu`."""
    return len(argv) > 1 and argv[1] in SERVERS and not ({"actions", "nlu"} & set(argv[2:3]))


def _has_token_flag(argv: list[str]) -> bool:
    return any(a == AUTH_TOKEN_FLAG or a.startswith(AUTH_TOKEN_FLAG + "=") for a in argv)


def with_auth_token(argv: list[str], environ: dict[str, str] | Any) -> list[str]:
    """`argv` with `--auth-token` from `environ[AUTH_TOKEN_ENV]` for a server command
    (the variable is removed from `environ`, so nothing Rasa starts inherits it). Refuses a
    server without a token (neither the variable nor an explicit flag)."""
    token = environ.pop(AUTH_TOKEN_ENV, None)
    if not _serves(argv):
        return list(argv)
    if token:
        if _has_token_flag(argv):
            raise SystemExit(
                f"{AUTH_TOKEN_ENV} is set and the command line has {AUTH_TOKEN_FLAG} too: "
                "pass the token one way only (the environment keeps it out of `ps`)"
            )
        # Right after the command: Rasa reads a model path given last on the line as
        # `--model` (parse_last_positional_argument_as_model_path), so nothing goes after.
        return [*argv[:2], AUTH_TOKEN_FLAG, token, *argv[2:]]
    if _has_token_flag(argv):
        return list(argv)
    raise SystemExit(
        f"`rasa {argv[1]}` needs its API token: set {AUTH_TOKEN_ENV} (jmt/launch.py does), "
        f"or {AUTH_TOKEN_FLAG} (which every local user can then read with `ps`)"
    )


async def carry_request_id(request: Any) -> None:
    """Sanic request middleware: this request's lines carry the caller's X-Request-ID
    (when well-formed), else `-`."""
    header = request.headers.get(logconfig.REQUEST_ID_HEADER)
    well_formed = header is not None and logconfig.WELL_FORMED.fullmatch(header)
    logconfig.REQUEST_ID.set(header if well_formed else logconfig.NO_REQUEST)


def with_request_ids(configure_app: Callable[..., Any]) -> Callable[..., Any]:
    """`rasa.core.run.configure_app`, whose app also runs `carry_request_id` first."""
    if getattr(configure_app, "carries_request_ids", False):
        return configure_app

    @functools.wraps(configure_app)
    def configure(*args: Any, **kwargs: Any) -> Any:
        app = configure_app(*args, **kwargs)
        app.register_middleware(carry_request_id, "request")
        return app

    configure.carries_request_ids = True  # type: ignore[attr-defined]
    return configure


def with_hidden_parameters(engine_kwargs: Callable[..., Any]) -> Callable[..., Any]:
    """`rasa.core.tracker_store.create_engine_kwargs`, adding `hide_parameters=True`: SQL
    errors of the tracker store never print the events (residents' words) they carried."""
    if getattr(engine_kwargs, "hides_parameters", False):
        return engine_kwargs

    @functools.wraps(engine_kwargs)
    def kwargs(*args: Any, **more: Any) -> dict[str, Any]:
        return {**engine_kwargs(*args, **more), "hide_parameters": True}

    kwargs.hides_parameters = True  # type: ignore[attr-defined]
    return kwargs


class RequestIdPlugin:
    """A Rasa plugin (pluggy, `rasa.plugin`): once Rasa has parsed its command line and
    configured logging and TensorFlow, and before it runs the command, its server module
    is imported (as `rasa run` would a moment later) and its app factory wrapped; so is
    the tracker store's engine factory (`with_hidden_parameters`). Doing it
    before `rasa.__main__.main` would import TensorFlow ahead of Rasa's own set-up."""

    @pluggy.HookimplMarker("rasa")
    def configure_commandline(self, cmdline_arguments: Any) -> None:
        import rasa.core.run
        import rasa.core.tracker_store as tracker_store

        rasa.core.run.configure_app = with_request_ids(rasa.core.run.configure_app)
        tracker_store.create_engine_kwargs = with_hidden_parameters(
            tracker_store.create_engine_kwargs
        )


def main() -> None:
    sys.argv = with_auth_token(sys.argv, os.environ)
    sys.modules.setdefault("jax", None)  # type: ignore[arg-type]  # `import jax` → ImportError
    from rasa.__main__ import main as rasa_main
    from rasa.plugin import plugin_manager

    if _serves(sys.argv):
        plugin_manager().register(RequestIdPlugin())
    rasa_main()


if __name__ == "__main__":
    main()
