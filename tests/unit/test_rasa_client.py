"""RasaClient sends RASA_TOKEN on every call to Rasa, and never logs it."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from integrations.rasa import RasaClient, redact
from tests.live_server import LiveServer

SECRET = "rasa-secret-token-42"


def fake_rasa(seen: list[tuple[str, str | None]]) -> FastAPI:
    """Answers like Rasa with --auth-token: 401 without the token (the REST channel is
    not covered by Rasa's token, but the client sends it there too)."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT"])
    async def anything(path: str, request: Request) -> JSONResponse:
        seen.append((f"{request.method} /{path}", request.query_params.get("token")))
        if path == "conversations/refused/tracker":
            return JSONResponse({"message": "User is not authenticated."}, status_code=401)
        if path == "webhooks/rest/webhook":
            return JSONResponse([{"text": "您好"}])
        if path == "model/parse":
            text = (await request.json())["text"]
            if text == "坏":
                return JSONResponse({"error": "boom"}, status_code=500)
            return JSONResponse(
                {"text": text, "intent": {"name": "unsubscribe_warnings", "confidence": 0.9}}
            )
        return JSONResponse({"latest_message": {}})

    return app


def test_every_call_carries_the_token_and_logs_hide_it(caplog):
    seen: list[tuple[str, str | None]] = []
    caplog.set_level(logging.DEBUG)

    async def calls(url: str) -> None:
        client = RasaClient(url, token=SECRET)
        try:
            assert await client.send("resident", "你好") == [{"text": "您好"}]
            await client.latest_parse("resident")
            assert await client.resume("resident")
            assert await client.healthy()
            await client.latest_parse("refused")  # a 401 is logged with its URL
        finally:
            await client.close()

    with LiveServer(fake_rasa(seen)) as server:
        asyncio.run(calls(server.url))
    assert [path for path, _ in seen] == [
        "POST /webhooks/rest/webhook",
        "GET /conversations/resident/tracker",
        "POST /conversations/resident/tracker/events",
        "GET /status",
        "GET /conversations/refused/tracker",
    ]
    assert {token for _, token in seen} == {SECRET}
    assert "could not read the parse of refused" in caplog.text
    assert "token=***" in caplog.text  # the URL is still useful, the token is not in it
    assert SECRET not in caplog.text


def test_without_a_token_no_token_parameter_is_sent():
    seen: list[tuple[str, str | None]] = []

    async def call(url: str) -> None:
        client = RasaClient(url)
        await client.healthy()
        await client.close()

    with LiveServer(fake_rasa(seen)) as server:
        asyncio.run(call(server.url))
    assert seen == [("GET /status", None)]


def test_redact_hides_every_token_value():
    assert redact("GET http://h/status?token=abc&x=1 and ?a=1&token=def'") == (
        "GET http://h/status?token=***&x=1 and ?a=1&token=***'"
    )


def test_parse_reads_the_nlu_alone_and_is_none_when_rasa_fails():
    seen: list[tuple[str, str | None]] = []

    async def calls(url: str) -> tuple:
        client = RasaClient(url, token=SECRET)
        try:
            return await client.parse("别再发了"), await client.parse("坏")
        finally:
            await client.close()

    with LiveServer(fake_rasa(seen)) as server:
        parsed, failed = asyncio.run(calls(server.url))
    assert (parsed.intent, parsed.confidence) == ("unsubscribe_warnings", 0.9)
    assert failed is None
    assert seen == [("POST /model/parse", SECRET)] * 2  # no tracker was touched
