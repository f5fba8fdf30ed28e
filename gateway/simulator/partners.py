"""SIMULATED partner servers for development and tests: a DingTalk robot and the
governance platform (区级治理指挥中心 / 街道综治). Nothing here talks to DingTalk or to a
real platform; the real adapters are `integrations/notify.py` and
`integrations/governance.py`, and development's `DINGTALK_WEBHOOK_URL` and
`GOVERNANCE_WEBHOOK_URL` point here.

- `POST /simulator/dingtalk/robot/send?access_token=&timestamp=&sign=`: a custom robot
  with 加签, checked against `DINGTALK_SECRET` (and the timestamp within an hour, as
  DingTalk does); answers `{"errcode": 0, "errmsg": "ok"}` or errcode 310000 / 300001.
- `GET /simulator/api/dingtalk`: the robot messages received.
- `GET /simulator/dingtalk/gettoken?appkey=&appsecret=` and
  `POST /simulator/dingtalk/topapi/message/corpconversation/asyncsend_v2?access_token=`:
  the enterprise-internal app's server API for personal work notifications (工作通知),
  checked against `DINGTALK_APP_KEY` / `DINGTALK_APP_SECRET` / `DINGTALK_AGENT_ID`. A
  token lives `expires_in` (7200 s); an unknown token answers errcode 40014, an expired
  one 42001, a wrong key or secret 40089, a wrong agent id 40056, a malformed message
  40035. Each recipient's notices are recorded.
- `GET /simulator/api/dingtalk/work-notices?userid=&after=`: what each officer received.
- `POST /simulator/governance/tickets`: the platform's intake, checking the signed-webhook
  headers (`X-JMT-Timestamp`, `X-JMT-Nonce`, `X-JMT-Signature` over timestamp, nonce,
  method, path and body) against `GOVERNANCE_SECRET` (403 when wrong, stale or a nonce
  seen before); answers
  `{"ok": true, "platform_id": "GOV-<n>"}`. A ticket sent again (same `ticket_id` or
  `id` in the body) gets the same platform id, as after a client-side timeout.
- `GET /simulator/api/governance`: the tickets received.
- `POST /simulator/api/governance/{ticket_id}/status` `{"status", "note"}`: plays the
  platform calling back — a `POST /api/tickets/{ticket_id}/status` to this app, signed
  the same way with `GOVERNANCE_CALLBACK_SECRET`.

The signatures are computed here independently of the adapters, so a mistake in an
adapter shows up as a refusal. Tests fail the next calls on demand::

    app.state.dingtalk_standin.fail_next(errcode=130101)     # send too fast (transient)
    app.state.dingtalk_standin.fail_next(http_status=502)    # a proxy error
    app.state.governance_standin.fail_next(http_status=503)  # platform down
    app.state.governance_standin.fail_next(delay=2.0)        # answers late, still records
    app.state.work_notice_standin.fail_next(errcode=-1)      # DingTalk busy (transient)
    app.state.work_notice_standin.expire_tokens()            # every token dropped early
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

router = APIRouter(prefix="/simulator", tags=["simulator"], include_in_schema=False)

GOVERNANCE_PLATFORM = "http://governance-platform"
DINGTALK_MAX_SKEW_MS = 3600 * 1000  # DingTalk refuses timestamps more than an hour off
GOVERNANCE_MAX_SKEW = 300  # seconds, as docs/console-api.md specifies for both directions
DINGTALK_ERRMSGS = {
    130101: "send too fast, exceed 20 times per minute",
    300001: "token is not exist",
    310000: "sign not match",
    40035: "missing parameter json",
    -1: "system busy",
}


@dataclass(frozen=True)
class Failure:
    """What the next call answers instead of success: an errcode (HTTP 200, DingTalk
    only), an HTTP error status, or a delay before the normal answer."""

    errcode: int | None = None
    http_status: int | None = None
    delay: float | None = None
    errmsg: str | None = None


class _Failures:
    """A thread-safe queue of programmed failures (tests poke it while the app runs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Failure] = deque()

    def push(self, failure: Failure, times: int) -> None:
        with self._lock:
            self._queue.extend([failure] * times)

    def pop(self) -> Failure | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


def _one_of(**values: Any) -> None:
    if sum(value is not None for value in values.values()) != 1:
        raise ValueError("give exactly one of " + ", ".join(values))


async def _wait(failure: Failure | None) -> Failure | None:
    """Sleep for a delay-only failure (then answer normally); other failures are returned."""
    if failure is not None and failure.delay is not None:
        await asyncio.sleep(failure.delay)
        return None
    return failure


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


# ---------------------------------------------------------------------- DingTalk


def dingtalk_signature(secret: str, timestamp: str) -> str:
    """The base64 signature DingTalk expects (before URL encoding)."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class RobotMessage:
    """One robot message as the stand-in received it."""

    id: int
    msgtype: str
    title: str
    text: str
    at_mobiles: list[str]
    is_at_all: bool
    received_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DingTalkStandIn:
    """SIMULATED DingTalk custom robot (自定义机器人) with 加签. Without a secret the
    robot is taken to be secured another way (keywords) and signatures are not checked."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.attempts = 0  # calls to the webhook, good or bad
        self._lock = threading.Lock()
        self._failures = _Failures()
        self._messages: list[RobotMessage] = []

    def fail_next(
        self,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        delay: float | None = None,
        errmsg: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue `times` failures for the next sends (after the token and sign checks)."""
        _one_of(errcode=errcode, http_status=http_status, delay=delay)
        self._failures.push(Failure(errcode, http_status, delay, errmsg), times)

    @property
    def pending_failures(self) -> int:
        return len(self._failures)

    def check(self, access_token: str, timestamp: str, sign: str, *, now: float) -> int | None:
        """The errcode for a bad token or signature, None when the request may pass."""
        with self._lock:
            self.attempts += 1
        if not access_token:
            return 300001
        if not self.secret:
            return None
        if not timestamp.isdigit() or abs(now * 1000 - int(timestamp)) > DINGTALK_MAX_SKEW_MS:
            return 310000
        expected = dingtalk_signature(self.secret, timestamp).encode("ascii")
        return None if hmac.compare_digest(expected, sign.encode("utf-8", "replace")) else 310000

    def next_failure(self) -> Failure | None:
        return self._failures.pop()

    def record(self, payload: Any) -> int | None:
        """Record a well-formed markdown or text message; else DingTalk's errcode."""
        if not isinstance(payload, dict):
            return 40035
        msgtype = payload.get("msgtype")
        body = payload.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype not in ("markdown", "text") or not isinstance(body, dict):
            return 40035
        text = body.get("text" if msgtype == "markdown" else "content")
        title = body.get("title", "") if msgtype == "markdown" else ""
        if not isinstance(text, str) or not text or not isinstance(title, str):
            return 40035
        if msgtype == "markdown" and not title:
            return 40035
        at = payload.get("at")
        if not isinstance(at, dict):
            at = {}
        mobiles = [str(m) for m in at.get("atMobiles") or [] if isinstance(m, (str, int))]
        with self._lock:
            self._messages.append(
                RobotMessage(
                    id=len(self._messages) + 1,
                    msgtype=msgtype,
                    title=title,
                    text=text,
                    at_mobiles=mobiles,
                    is_at_all=bool(at.get("isAtAll")),
                    received_at=time.time(),
                )
            )
        return None

    @property
    def messages(self) -> list[RobotMessage]:
        with self._lock:
            return list(self._messages)


def dingtalk_of(request: Request) -> DingTalkStandIn:
    """The app's DingTalk stand-in, created on first use with the configured secret."""
    state = request.app.state
    standin = getattr(state, "dingtalk_standin", None)
    if standin is None:
        standin = DingTalkStandIn(getattr(state.settings, "dingtalk_secret", None))
        state.dingtalk_standin = standin
    return standin


def _dingtalk_answer(errcode: int, errmsg: str | None = None) -> JSONResponse:
    # DingTalk answers errors with HTTP 200 and an errcode.
    return JSONResponse({"errcode": errcode, "errmsg": errmsg or DINGTALK_ERRMSGS.get(errcode)})


@router.post("/dingtalk/robot/send")
async def dingtalk_send(
    request: Request, access_token: str = "", timestamp: str = "", sign: str = ""
) -> Response:
    standin = dingtalk_of(request)
    code = standin.check(access_token, timestamp, sign, now=time.time())
    if code is not None:
        return _dingtalk_answer(code)
    failure = await _wait(standin.next_failure())
    if failure is not None and failure.http_status is not None:
        return PlainTextResponse(_phrase(failure.http_status), status_code=failure.http_status)
    if failure is not None and failure.errcode is not None:
        return _dingtalk_answer(failure.errcode, failure.errmsg)
    try:
        payload: Any = json.loads(await request.body())
    except ValueError:
        payload = None
    code = standin.record(payload)
    if code is not None:
        return _dingtalk_answer(code)
    return _dingtalk_answer(0, "ok")


@router.get("/api/dingtalk")
async def dingtalk_messages(request: Request, after: int = Query(0, ge=0)) -> list[dict]:
    return [m.as_dict() for m in dingtalk_of(request).messages if m.id > after]


# ---------------------------------------------------------------------- DingTalk work notices

WORK_NOTICE_TOKEN_LIFETIME = 7200  # seconds, as DingTalk's gettoken answers
WORK_NOTICE_MAX_MSG_BYTES = 2048
WORK_NOTICE_ERRMSGS = {
    40014: "不合法的access_token",
    42001: "access_token超时",
    40089: "不合法的corpid或corpsecret",
    40056: "不合法的agentid",
    40035: "缺少参数",
    -1: "系统繁忙",
}


@dataclass(frozen=True)
class WorkNotice:
    """One work notification as one officer received it."""

    id: int
    task_id: int
    userid: str
    msgtype: str
    title: str
    text: str
    single_url: str | None
    received_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _work_notice_content(msg: Any) -> tuple[str, str, str, str | None] | None:
    """(msgtype, title, text, single_url) of a well-formed `msg`, else None."""
    if not isinstance(msg, dict):
        return None
    msgtype = msg.get("msgtype")
    body = msg.get(msgtype) if isinstance(msgtype, str) else None
    if not isinstance(body, dict):
        return None
    title: Any
    text: Any
    url: Any
    if msgtype == "text":
        title, text, url = "", body.get("content"), None
    elif msgtype == "markdown":
        title, text, url = body.get("title"), body.get("text"), None
    elif msgtype == "action_card":
        title, text, url = body.get("title"), body.get("markdown"), body.get("single_url")
        if not isinstance(url, str) or not url or not body.get("single_title"):
            return None
    else:
        return None
    if not isinstance(title, str) or not isinstance(text, str) or not text:
        return None
    if msgtype != "text" and not title:
        return None
    return msgtype, title, text, url


class WorkNoticeStandIn:
    """SIMULATED DingTalk server API of an enterprise-internal app: access tokens and
    asynchronous work notifications. Thread-safe: tests poke it while the app runs."""

    def __init__(
        self,
        app_key: str | None,
        app_secret: str | None,
        agent_id: str | None,
        *,
        token_lifetime: int = WORK_NOTICE_TOKEN_LIFETIME,
    ) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.agent_id = agent_id
        self.token_lifetime = token_lifetime
        self.token_fetches = 0
        self.attempts = 0  # asyncsend_v2 calls, good or bad
        self._lock = threading.Lock()
        self._failures = _Failures()
        self._tokens: dict[str, float] = {}  # token -> expiry (time.time())
        self._notices: list[WorkNotice] = []
        self._tasks = 0

    def fail_next(
        self,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        delay: float | None = None,
        times: int = 1,
    ) -> None:
        """Queue `times` failures for the next sends (after the token check)."""
        _one_of(errcode=errcode, http_status=http_status, delay=delay)
        self._failures.push(Failure(errcode, http_status, delay), times)

    def next_failure(self) -> Failure | None:
        return self._failures.pop()

    def expire_tokens(self) -> None:
        """Drop every token now, as DingTalk may before `expires_in`."""
        with self._lock:
            self._tokens.clear()

    def issue_token(self, appkey: str, appsecret: str, *, now: float) -> dict[str, Any]:
        with self._lock:
            self.token_fetches += 1
            good = bool(self.app_key) and bool(self.app_secret)
            if not (
                good
                and hmac.compare_digest(appkey.encode(), str(self.app_key).encode())
                and hmac.compare_digest(appsecret.encode(), str(self.app_secret).encode())
            ):
                return {"errcode": 40089, "errmsg": WORK_NOTICE_ERRMSGS[40089]}
            token = secrets.token_hex(16)
            self._tokens[token] = now + self.token_lifetime
        return {
            "errcode": 0,
            "errmsg": "ok",
            "access_token": token,
            "expires_in": self.token_lifetime,
        }

    def check_token(self, token: str, *, now: float) -> int | None:
        with self._lock:
            self.attempts += 1
            expiry = self._tokens.get(token)
        if expiry is None:
            return 40014
        return 42001 if expiry <= now else None

    def record(self, payload: Any) -> tuple[int | None, int | None]:
        """(errcode, None) for a bad request, else (None, task_id) once recorded."""
        if not isinstance(payload, dict):
            return 40035, None
        if str(payload.get("agent_id")) != str(self.agent_id):
            return 40056, None
        users = payload.get("userid_list")
        userids = (
            [u.strip() for u in users.split(",") if u.strip()] if isinstance(users, str) else []
        )
        content = _work_notice_content(payload.get("msg"))
        if not userids or content is None:
            return 40035, None
        size = len(json.dumps(payload.get("msg"), ensure_ascii=False).encode())
        if size > WORK_NOTICE_MAX_MSG_BYTES:
            return 40035, None
        msgtype, title, text, url = content
        with self._lock:
            self._tasks += 1
            for userid in dict.fromkeys(userids):
                self._notices.append(
                    WorkNotice(
                        id=len(self._notices) + 1,
                        task_id=self._tasks,
                        userid=userid,
                        msgtype=msgtype,
                        title=title,
                        text=text,
                        single_url=url,
                        received_at=time.time(),
                    )
                )
            return None, self._tasks

    @property
    def notices(self) -> list[WorkNotice]:
        with self._lock:
            return list(self._notices)


def work_notice_of(request: Request) -> WorkNoticeStandIn:
    """The app's work-notice stand-in, created on first use with the configured app."""
    state = request.app.state
    standin = getattr(state, "work_notice_standin", None)
    if standin is None:
        settings = state.settings
        standin = WorkNoticeStandIn(
            getattr(settings, "dingtalk_app_key", None),
            getattr(settings, "dingtalk_app_secret", None),
            getattr(settings, "dingtalk_agent_id", None),
        )
        state.work_notice_standin = standin
    return standin


@router.get("/dingtalk/gettoken")
async def work_notice_token(request: Request, appkey: str = "", appsecret: str = "") -> Response:
    return JSONResponse(work_notice_of(request).issue_token(appkey, appsecret, now=time.time()))


@router.post("/dingtalk/topapi/message/corpconversation/asyncsend_v2")
async def work_notice_send(request: Request, access_token: str = "") -> Response:
    standin = work_notice_of(request)
    code = standin.check_token(access_token, now=time.time())
    if code is not None:
        return JSONResponse({"errcode": code, "errmsg": WORK_NOTICE_ERRMSGS[code]})
    failure = await _wait(standin.next_failure())
    if failure is not None and failure.http_status is not None:
        return PlainTextResponse(_phrase(failure.http_status), status_code=failure.http_status)
    if failure is not None and failure.errcode is not None:
        message = WORK_NOTICE_ERRMSGS.get(failure.errcode, "error")
        return JSONResponse({"errcode": failure.errcode, "errmsg": message})
    try:
        payload: Any = json.loads(await request.body())
    except ValueError:
        payload = None
    code, task_id = standin.record(payload)
    if code is not None:
        return JSONResponse({"errcode": code, "errmsg": WORK_NOTICE_ERRMSGS[code]})
    return JSONResponse({"errcode": 0, "errmsg": "ok", "task_id": task_id, "request_id": "sim"})


@router.get("/api/dingtalk/work-notices")
async def work_notices(
    request: Request, userid: str | None = Query(None, max_length=64), after: int = Query(0, ge=0)
) -> list[dict]:
    return [
        n.as_dict()
        for n in work_notice_of(request).notices
        if n.id > after and (userid is None or n.userid == userid)
    ]


# ---------------------------------------------------------------------- governance platform


def governance_signature(
    secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """Hex HMAC-SHA256 over `"{timestamp}.{nonce}.{METHOD}.{path}." + body` (CONTRACT.md)."""
    head = f"{timestamp}.{nonce}.{method.upper()}.{path}.".encode()
    return hmac.new(secret.encode("utf-8"), head + body, hashlib.sha256).hexdigest()


@dataclass
class PlatformTicket:
    """One ticket as the stand-in received it, and the statuses it called back."""

    id: int
    platform_id: str
    payload: dict[str, Any]
    received_at: float
    times_received: int = 1
    status: str = "received"
    callbacks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class GovernanceStandIn:
    """SIMULATED governance platform intake. Thread-safe: tests poke it while the app runs."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.attempts = 0  # calls to the intake, good or bad
        self._lock = threading.Lock()
        self._failures = _Failures()
        self._tickets: list[PlatformTicket] = []
        self._nonces: dict[str, float] = {}  # nonce -> when it may be forgotten

    def fail_next(
        self, *, http_status: int | None = None, delay: float | None = None, times: int = 1
    ) -> None:
        """Queue `times` failures for the next tickets (after the signature check)."""
        _one_of(http_status=http_status, delay=delay)
        self._failures.push(Failure(http_status=http_status, delay=delay), times)

    @property
    def pending_failures(self) -> int:
        return len(self._failures)

    def next_failure(self) -> Failure | None:
        return self._failures.pop()

    def signature_ok(
        self,
        body: bytes,
        headers: Any,
        *,
        method: str,
        path: str,
        now: float,
    ) -> bool:
        """A real platform's check: signature, a timestamp at most 300 s off, and a nonce
        never seen within the window."""
        with self._lock:
            self.attempts += 1
        timestamp = headers.get("X-JMT-Timestamp") or ""
        nonce = headers.get("X-JMT-Nonce") or ""
        signature = headers.get("X-JMT-Signature") or ""
        if not self.secret or not timestamp.isdigit() or not nonce or not signature:
            return False
        if abs(now - int(timestamp)) > GOVERNANCE_MAX_SKEW:
            return False
        expected = governance_signature(self.secret, method, path, timestamp, nonce, body)
        if not hmac.compare_digest(
            expected.encode("ascii"), signature.lower().encode("utf-8", "replace")
        ):
            return False
        with self._lock:
            self._nonces = {n: t for n, t in self._nonces.items() if t > now}
            if nonce in self._nonces:
                return False
            self._nonces[nonce] = now + 2 * GOVERNANCE_MAX_SKEW
        return True

    def record(self, payload: dict[str, Any]) -> PlatformTicket:
        """Record the ticket; one sent again (same `ticket_id`/`id`) is the same ticket."""
        key = payload.get("ticket_id", payload.get("id"))
        with self._lock:
            for ticket in self._tickets:
                if key is not None and key == ticket.payload.get(
                    "ticket_id", ticket.payload.get("id")
                ):
                    ticket.times_received += 1
                    return ticket
            number = len(self._tickets) + 1
            ticket = PlatformTicket(number, f"GOV-{number}", payload, time.time())
            self._tickets.append(ticket)
            return ticket

    def record_callback(self, ticket_id: int, status: str, note: str, http_status: int) -> None:
        """Remember a status the platform sent back (and the app's answer)."""
        with self._lock:
            for ticket in self._tickets:
                if ticket_id in (ticket.payload.get("ticket_id"), ticket.payload.get("id")):
                    ticket.callbacks.append(
                        {"status": status, "note": note, "http_status": http_status}
                    )
                    if 200 <= http_status < 300:
                        ticket.status = status

    @property
    def tickets(self) -> list[dict[str, Any]]:
        with self._lock:
            return [t.as_dict() for t in self._tickets]


def governance_of(request: Request) -> GovernanceStandIn:
    """The app's governance stand-in, created on first use with the configured secret."""
    state = request.app.state
    standin = getattr(state, "governance_standin", None)
    if standin is None:
        standin = GovernanceStandIn(getattr(state.settings, "governance_secret", None))
        state.governance_standin = standin
    return standin


@router.post("/governance/tickets")
async def governance_intake(request: Request) -> Response:
    standin = governance_of(request)
    body = await request.body()
    headers = request.headers
    if not standin.signature_ok(
        body, headers, method=request.method, path=request.url.path, now=time.time()
    ):
        return JSONResponse({"ok": False, "error": "bad or stale signature"}, status_code=403)
    failure = await _wait(standin.next_failure())
    if failure is not None and failure.http_status is not None:
        return PlainTextResponse(_phrase(failure.http_status), status_code=failure.http_status)
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return JSONResponse({"ok": False, "error": "body is not a JSON object"}, status_code=400)
    ticket = standin.record(payload)
    return JSONResponse({"ok": True, "platform_id": ticket.platform_id})


@router.get("/api/governance")
async def governance_tickets(request: Request) -> list[dict[str, Any]]:
    return governance_of(request).tickets


class StatusCallback(BaseModel):
    status: str = Field(..., max_length=32)  # not checked here: the app answers 422
    note: str = Field("", max_length=2000)


@router.post("/api/governance/{ticket_id}/status")
async def governance_callback(
    ticket_id: int, callback: StatusCallback, request: Request
) -> dict[str, Any]:
    """Send this app what the platform would when a ticket's status changes."""
    secret = getattr(request.app.state.settings, "governance_callback_secret", None)
    if not secret:
        raise HTTPException(409, "GOVERNANCE_CALLBACK_SECRET is not set: the platform cannot sign")
    body = json.dumps(
        {"status": callback.status, "note": callback.note}, ensure_ascii=False
    ).encode("utf-8")
    path = f"/api/tickets/{ticket_id}/status"
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    headers = {
        "X-JMT-Timestamp": timestamp,
        "X-JMT-Nonce": nonce,
        "X-JMT-Signature": governance_signature(secret, "POST", path, timestamp, nonce, body),
        "Content-Type": "application/json",
        "User-Agent": "simulated governance platform",
    }
    transport = httpx.ASGITransport(app=request.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=GOVERNANCE_PLATFORM) as client:
        answer = await client.post(path, content=body, headers=headers)
    try:
        reply: Any = answer.json()
    except ValueError:
        reply = answer.text
    governance_of(request).record_callback(
        ticket_id, callback.status, callback.note, answer.status_code
    )
    return {"status": answer.status_code, "body": reply}
