"""The action server: rasa-sdk's Sanic app behind a shared secret.

rasa-sdk 3.6 has no authentication of its own, and an action run opens cases, so anyone
who reaches /webhook could file hand-offs. Rasa sends ACTIONS_TOKEN as the `?token=`
query parameter (`token:` on `action_endpoint` in bot/endpoints*.yml, Rasa's
EndpointConfig); every call but GET /health (the gateway's probe) without it is a 401.

The token is required whenever one is configured, wherever the server listens: simpler
than "only beyond loopback", and strictly safer (development generates one into var/, so
it is always configured there). Without a token only a loopback address is allowed.

Logging: the project's format (casework/logconfig.py). Each action call runs with the
request id the gateway put in the message's metadata (`tracker.latest_message`), so every
line an action logs carries it, and one line names the action run for that request.

    python -m jmt.actions_server [--host H] [--port P]   # `make run` starts it via jmt.launch
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import zlib
from typing import Any

from rasa_sdk import utils
from rasa_sdk.constants import APPLICATION_ROOT_LOGGER_NAME
from rasa_sdk.endpoint import create_app as create_sdk_app
from rasa_sdk.plugin import plugin_manager
from sanic import Sanic, response
from sanic.request import Request

from casework import logconfig

logger = logging.getLogger("jmt.actions_server")  # its name also when run with -m

OPEN_PATHS = frozenset({"/health"})  # the gateway's liveness probe; says nothing else
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def request_id_of(action_call: Any) -> str | None:
    """The gateway's request id in an action call's tracker (None when absent or odd)."""
    try:
        metadata = action_call["tracker"]["latest_message"]["metadata"]
        value = metadata["request_id"]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, str) and logconfig.WELL_FORMED.fullmatch(value) else None


def _action_call(request: Request) -> Any:
    try:  # rasa-sdk's own reading of the body: deflate-compressed or plain JSON
        if request.headers.get("Content-Encoding") == "deflate":
            return json.loads(zlib.decompress(request.body))
        return request.json
    except Exception:  # noqa: BLE001 — rasa-sdk answers a bad body itself (400)
        return None


def create_app(*, token: str | None, actions_package: str = "actions") -> Sanic:
    """rasa-sdk's app, without CORS (no browser calls it), refusing calls without `token`."""
    app = create_sdk_app(actions_package, cors_origins=None)

    @app.on_request
    async def require_token(request: Request) -> response.HTTPResponse | None:
        if request.path in OPEN_PATHS or token is None:
            return None
        provided = request.args.get("token") or ""
        if hmac.compare_digest(provided.encode(), token.encode()):
            return None
        logger.warning("refused %s %s without the action token", request.method, request.path)
        return response.json({"error": "unauthorized"}, status=401)

    @app.on_request
    async def carry_request_id(request: Request) -> None:
        # Middleware and handler run in one task: the handler's lines see this id.
        if request.path != "/webhook":
            return
        action_call = _action_call(request)
        request_id = request_id_of(action_call)
        if request_id is not None:
            logconfig.REQUEST_ID.set(request_id)
        if isinstance(action_call, dict):
            logger.info("run %s", action_call.get("next_action"))

    return app


def main(argv: list[str] | None = None) -> None:
    from casework.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.actions_host, help="default: ACTIONS_HOST")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ACTIONS_PORT", 5055)))
    parser.add_argument("--actions", default="actions", help="the actions package")
    args = parser.parse_args(argv)
    token = settings.actions_token
    if not token and args.host not in LOOPBACK:
        raise SystemExit(f"ACTIONS_TOKEN is required to listen on {args.host}")
    utils.update_sanic_log_level()  # sanic's own levels (LOG_LEVEL_LIBRARIES)
    logconfig.configure(settings.log_level)  # one format, request ids, scrubbed
    logging.getLogger(APPLICATION_ROOT_LOGGER_NAME).setLevel(settings.log_level)
    app = create_app(token=token, actions_package=args.actions)
    plugin_manager().hook.attach_sanic_app_extensions(app=app)  # as rasa-sdk's run() does
    logger.info(
        "action server on http://%s:%s (%s)",
        args.host,
        args.port,
        "token required" if token else "no token: loopback only",
    )
    app.run(args.host, args.port, workers=utils.number_of_sanic_workers(), access_log=False)


if __name__ == "__main__":
    main()
