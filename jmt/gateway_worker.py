"""One gateway worker: uvicorn serving `gateway.app:app` on a listening socket it inherits.

The launcher binds the gateway's port once and hands the same socket to every worker
(`--fd`), as gunicorn does: the kernel queues connections on that one socket and any live
worker accepts them, so while a worker is restarted (or all of them are) WeChat's
callbacks wait in the queue instead of meeting "connection refused".

Why not `uvicorn --workers N`: uvicorn 0.30.6's own manager (supervisors/multiprocess.py)
does restart a dead worker, but at once every 0.5 s without backoff and logged only at
INFO, and the launcher would then have two process managers with two policies. Why not
SO_REUSEPORT: each worker would own a queue of its own, and the connections waiting in a
killed worker's queue would be reset.

Client addresses. Behind the TLS reverse proxy every connection comes from the proxy, so
uvicorn takes the client's address from `X-Forwarded-For` — only when the proxy is one of
`FORWARDED_ALLOW_IPS` (default 127.0.0.1: a proxy on this host). The address is what the
per-address login limit counts and what the audit trail records: a proxy on another host
not listed here would make every officer one address, and 20 failures anywhere would
lock all of them out for 15 minutes.
"""

from __future__ import annotations

import argparse
import socket

import uvicorn

from casework.settings import _env  # the one settings reader: environment, then .env
from jmt import paths

# The project's log format from uvicorn's first line (casework/logconfig.py's format,
# scrubbed): uvicorn applies its own logging config before the app is even imported.
LOG_CONFIG = paths.BOT / "logging.yml"


def uvicorn_config(app: str, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn's settings for one worker (FORWARDED_ALLOW_IPS read like every setting)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=str(LOG_CONFIG),
        proxy_headers=True,
        forwarded_allow_ips=_env("FORWARDED_ALLOW_IPS") or "127.0.0.1",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--app", default="gateway.app:app")
    args = parser.parse_args()
    listener = socket.socket(fileno=args.fd)  # family and type read from the socket itself
    host, port = listener.getsockname()[:2]
    config = uvicorn_config(args.app, host=host, port=port)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        # uvicorn 0.30 shuts down gracefully on SIGINT (Ctrl-C reaches every process of the
        # terminal's group), then raises the signal again: done, not a crash to print.
        pass


if __name__ == "__main__":
    main()
