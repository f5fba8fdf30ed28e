"""SIMULATED WeChat official-account API, in memory (development and tests only).

A stand-in for `api.weixin.qq.com`: it issues access tokens, records the
customer-service messages the gateway sends (per openid, with increasing ids) and, for
tests, fails the next calls on demand::

    standin.fail_next(errcode=-1)         # 系统繁忙 (transient)
    standin.fail_next(http_status=502)    # a gateway error in front of WeChat
    standin.fail_next(errcode=45015)      # outside the 48-hour window (permanent)

Nothing here talks to WeChat; the real adapter is `integrations/wechat.py`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

TOKEN_TTL = 7200  # seconds, as WeChat answers
ERRMSGS = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40008: "invalid message type",
    40013: "invalid appid",
    40125: "invalid appsecret",
    42001: "access_token expired",
    44004: "empty content",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
}


def errmsg(errcode: int) -> str:
    return ERRMSGS.get(errcode, "simulated error")


@dataclass(frozen=True)
class RecordedMessage:
    """One customer-service message as the stand-in received it."""

    id: int
    touser: str
    msgtype: str
    content: str
    received_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Failure:
    """What the next send answers instead of success: an errcode (HTTP 200) or an HTTP
    error status without a WeChat body."""

    errcode: int | None = None
    http_status: int | None = None
    errmsg: str | None = None


class WeChatStandIn:
    """SIMULATED WeChat API state. Thread-safe: tests poke it while the app runs."""

    def __init__(self, app_id: str, app_secret: str) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.token_fetches = 0  # calls to /cgi-bin/token, good or bad
        self.send_attempts = 0  # calls to /cgi-bin/message/custom/send, good or bad
        self._lock = threading.Lock()
        self._tokens: dict[str, bool] = {}  # token -> still valid
        self._failures: deque[Failure] = deque()
        self._messages: list[RecordedMessage] = []
        self._last_id = 0
        self._inbound: dict[str, str] = {}  # MsgId -> XML the simulator sent (for retries)

    # ------------------------------------------------------------------ tokens

    def issue_token(self, grant_type: str, appid: str, secret: str) -> dict[str, Any]:
        """The JSON answer of GET /cgi-bin/token."""
        with self._lock:
            self.token_fetches += 1
            if grant_type != "client_credential":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            if not appid or appid != self.app_id:
                return {"errcode": 40013, "errmsg": errmsg(40013)}
            if secret != self.app_secret:
                return {"errcode": 40125, "errmsg": errmsg(40125)}
            token = "SIMULATED-" + secrets.token_urlsafe(24)
            self._tokens[token] = True
            return {"access_token": token, "expires_in": TOKEN_TTL}

    def expire_tokens(self) -> None:
        """Every token issued so far answers 42001 from now on (clients must refetch)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, False)

    def _token_error(self, access_token: str) -> int | None:
        valid = self._tokens.get(access_token)
        if valid is None:
            return 40001
        return None if valid else 42001

    # ------------------------------------------------------------------ failures

    def fail_next(
        self,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        errmsg: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue `times` failures for the next sends (after the token check)."""
        if (errcode is None) == (http_status is None):
            raise ValueError("give exactly one of errcode or http_status")
        with self._lock:
            for _ in range(times):
                self._failures.append(Failure(errcode, http_status, errmsg))

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._failures)

    # ------------------------------------------------------------------ messages

    def send_custom(self, access_token: str, payload: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) of POST /cgi-bin/message/custom/send."""
        with self._lock:
            self.send_attempts += 1
            code = self._token_error(access_token)
            if code is not None:
                return 200, {"errcode": code, "errmsg": errmsg(code)}
            if self._failures:
                failure = self._failures.popleft()
                if failure.http_status is not None:
                    return failure.http_status, {}
                assert failure.errcode is not None
                return 200, {
                    "errcode": failure.errcode,
                    "errmsg": failure.errmsg or errmsg(failure.errcode),
                }
            code = _payload_error(payload)
            if code is not None:
                return 200, {"errcode": code, "errmsg": errmsg(code)}
            msgtype = payload["msgtype"]
            body = payload.get(msgtype)
            content = body["content"] if msgtype == "text" else json.dumps(body, ensure_ascii=False)
            self._last_id += 1
            self._messages.append(
                RecordedMessage(
                    id=self._last_id,
                    touser=payload["touser"],
                    msgtype=msgtype,
                    content=str(content),
                    received_at=time.time(),
                )
            )
            return 200, {"errcode": 0, "errmsg": "ok"}

    def messages_for(self, openid: str, after: int = 0) -> list[RecordedMessage]:
        with self._lock:
            return [m for m in self._messages if m.touser == openid and m.id > after]

    @property
    def messages(self) -> list[RecordedMessage]:
        with self._lock:
            return list(self._messages)

    # ------------------------------------------------------------------ inbound log

    def remember_inbound(self, msg_id: str, xml: str) -> None:
        """Keep what the simulator sent as message `msg_id`, so it can resend it."""
        with self._lock:
            self._inbound[msg_id] = xml
            while len(self._inbound) > 1000:
                self._inbound.pop(next(iter(self._inbound)))

    def inbound(self, msg_id: str) -> str | None:
        with self._lock:
            return self._inbound.get(msg_id)


def _payload_error(payload: Any) -> int | None:
    """WeChat's errcode for a malformed customer-service message (text is checked closely;
    other types are recorded as their JSON)."""
    if not isinstance(payload, dict):
        return 47001
    if not isinstance(payload.get("touser"), str) or not payload["touser"]:
        return 40003
    msgtype = payload.get("msgtype")
    if not isinstance(msgtype, str) or not isinstance(payload.get(msgtype), dict):
        return 40008
    if msgtype == "text" and not str(payload["text"].get("content") or ""):
        return 44004
    return None
