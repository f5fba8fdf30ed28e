"""Simulated Rasa replicas on real local sockets, for the replica-pool tests: one that
answers like Rasa's REST channel and tracker API, one that accepts a request and dies
before answering, and an address that never accepts a connection (connect time-out).
These are stand-ins, not Rasa."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from integrations import rasa
from tests.live_server import LiveServer


def answering_replica(
    name: str, seen: list[dict[str, Any]], *, status: int = 200, delay: float = 0.0
) -> FastAPI:
    """A stand-in replica: the REST webhook answers `<name>: <message>` (or `status`
    after `delay` seconds); every request is recorded in `seen`."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str, request: Request) -> JSONResponse:
        body = await request.json() if request.method == "POST" else None
        seen.append({"path": f"/{path}", "method": request.method, "body": body})
        if delay:
            await asyncio.sleep(delay)
        if status != 200:
            return JSONResponse({"message": "internal error"}, status_code=status)
        if path == "webhooks/rest/webhook":
            return JSONResponse(
                [{"recipient_id": body["sender"], "text": f"{name}: {body['message']}"}]
            )
        if path == "status":
            return JSONResponse({"model_file": f"{name}.tar.gz"})
        if path.endswith("/tracker"):
            return JSONResponse({"paused": False, "latest_message": {"intent": {"name": "greet"}}})
        return JSONResponse({})

    return app


def served(name: str, seen: list[dict[str, Any]], **kwargs: Any) -> LiveServer:
    return LiveServer(answering_replica(name, seen, **kwargs))


def sender_first_on(url: str, urls: list[str]) -> str:
    """A sender whose turns the pool sends to `url` first (rendezvous hashing)."""
    for i in range(10_000):
        sender = f"resident-{i}"
        if max(urls, key=lambda u: rasa._rank(sender, u)) == url:
            return sender
    raise AssertionError("no sender ranks that replica first")


def refused_url() -> str:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Unanswering:
    """A listening socket whose accept queue is full and never drained: the kernel drops
    further connection attempts, so connecting times out (a hung or unreachable host)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._fillers: list[socket.socket] = []
        for _ in range(4):  # fill the accept queue (backlog 0 holds one or two)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self.sock.getsockname())
            self._fillers.append(filler)

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self.sock.close()


class DyingReplica:
    """Accepts a connection, reads the whole request, records it and dies without an answer
    (the connection is reset), as a Rasa replica killed mid-turn would."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(body) < length:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.received.append(head + b"\r\n\r\n" + body)
                # Reset, not a clean close: the process is gone.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        self.sock.close()
