"""GET /wechat (URL verification) and POST /wechat (messages and events).

The official-account callback protocol: plain mode, and AES safe mode when the request
says `encrypt_type=aes`, as `WECHAT_MODE` (plain | compat | safe) allows. Bad requests get
403/400/413 and are never stored: every field is validated first (`wechat_fields`), and a
signature already accepted with another body is a replay (403). A failure to store
answers 503 so WeChat retries; nothing else ever reaches the caller as an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.background import BackgroundTask

from casework import broadcast_queue, db
from casework.intake import Replayed, SignedCallback
from gateway import protocol
from gateway.messages import describe

logger = logging.getLogger(__name__)
router = APIRouter(tags=["wechat"])


def _query(request: Request) -> protocol.CallbackQuery:
    params = request.query_params
    return protocol.CallbackQuery(
        signature=params.get("signature", ""),
        timestamp=params.get("timestamp", ""),
        nonce=params.get("nonce", ""),
        encrypt_type=params.get("encrypt_type"),
        msg_signature=params.get("msg_signature"),
    )


def _refuse(error: protocol.ProtocolError, request: Request) -> Response:
    client = request.client.host if request.client else "?"
    logger.warning("refused WeChat request from %s: %s (%d)", client, error.reason, error.status)
    return PlainTextResponse(error.reason, status_code=error.status)


@router.get("/wechat", include_in_schema=False)
def verify_url(request: Request) -> Response:
    """WeChat's URL check: echo `echostr` when the signature is right."""
    try:
        protocol.verify_signature(request.app.state.settings.wechat_token, _query(request))
    except protocol.ProtocolError as error:
        return _refuse(error, request)
    return PlainTextResponse(request.query_params.get("echostr", ""))


@router.post("/wechat", include_in_schema=False)
async def receive(request: Request) -> Response:
    arrived = time.monotonic()  # WeChat's 5 s started when it sent the request
    settings = request.app.state.settings
    crypto = request.app.state.crypto
    query = _query(request)
    try:
        declared = int(request.headers.get("content-length") or 0)
        if declared > protocol.MAX_BODY_BYTES:
            raise protocol.ProtocolError(413, "body too large")
        protocol.verify_signature(settings.wechat_token, query)
        body = await request.body()
        protocol.check_body(body)
        fields = protocol.decode(body, query, crypto, mode=settings.wechat_mode)
        incoming = describe(fields)
        signed = SignedCallback(
            nonce_key=protocol.nonce_key(query),
            body=protocol.signed_content(query, body),
            window=protocol.replay_window(query),
        )
    except protocol.ProtocolError as error:
        return _refuse(error, request)
    except ValueError as error:  # bad Content-Length, undecodable bytes
        return _refuse(protocol.ProtocolError(400, f"bad request: {error}"), request)
    after: list[Callable[[], Awaitable[None]]] = []  # records written once the reply is sent
    try:
        reply = await request.app.state.inbound.handle(
            incoming, signed=signed, arrived=arrived, after=after
        )
    except Replayed:
        return _refuse(protocol.ProtocolError(403, "replayed signature with another body"), request)
    except Exception:
        # Not stored (the database is down?): 503 makes WeChat retry the same message.
        logger.exception("could not handle %s", incoming.dedupe_key)
        return PlainTextResponse("temporarily unavailable", status_code=503)
    if incoming.job is not None:  # a warning's template / mass job finished (idempotent)
        try:
            await asyncio.to_thread(record_job, settings.database_url, incoming.job)
        except Exception:
            logger.exception("could not record %s", incoming.dedupe_key)
            return PlainTextResponse("temporarily unavailable", status_code=503)
    background = BackgroundTask(_run_after, after) if after else None
    if reply is None:
        return PlainTextResponse("success", background=background)
    return Response(
        protocol.render_reply(reply, fields, query, crypto),
        media_type="application/xml",
        background=background,
    )


def record_job(database_url: str, job: dict) -> None:
    with db.session_scope(database_url) as session:
        broadcast_queue.record_job_result(
            session=session,
            event=job["event"],
            msg_id=job["msg_id"],
            status=job["status"],
            total=job.get("total"),
            sent=job.get("sent"),
            errors=job.get("errors"),
        )


async def _run_after(steps: list[Callable[[], Awaitable[None]]]) -> None:
    for step in steps:
        try:
            await step()
        except Exception:
            logger.exception("could not record an answer already sent")
