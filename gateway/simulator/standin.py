"""SIMULATED WeChat official-account API, in memory (development and tests only).

A stand-in for `api.weixin.qq.com`: it issues access tokens, records the
customer-service messages the gateway sends (per openid, with increasing ids) and, for
tests, fails the next calls on demand::

    standin.fail_next(errcode=-1)         # 系统繁忙 (transient)
    standin.fail_next(http_status=502)    # a gateway error in front of WeChat
    standin.fail_next(errcode=45015)      # outside the 48-hour window (permanent)
    standin.fail_next(errcode=45009, api="template")  # the template quota ran out

Warnings (预警推送) use three more APIs, simulated here too and recorded: template
messages (`send_template`, with an optional daily quota: `template_quota`), user tags
(create, list, tag/untag users, list a tag's users) and mass send by tag
(`send_mass_by_tag`, which reaches the tag's members at that moment).

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
    45157: "invalid tag name",
    45159: "invalid tag",
    40037: "invalid template_id",
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


@dataclass(frozen=True)
class RecordedTemplate:
    """One template message as the stand-in received it (SIMULATED)."""

    msgid: int
    touser: str
    template_id: str
    data: dict[str, Any]
    received_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RecordedMass:
    """One mass send by tag (SIMULATED): the members the tag had at that moment."""

    msg_id: int
    tag_id: int
    content: str
    recipients: tuple[str, ...]
    received_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        # ---- warnings: template messages, user tags, mass sends (all SIMULATED)
        self.template_quota: int | None = None  # sends left today; None: unlimited
        self.api_calls: dict[str, int] = {}  # calls per API name, good or bad
        self._api_failures: dict[str, deque[Failure]] = {}
        self._templates: list[RecordedTemplate] = []
        self._tags: dict[int, str] = {}  # tag id -> name
        self._tag_members: dict[int, set[str]] = {}
        self._mass: list[RecordedMass] = []
        self._next_msgid = 1_000_000

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
        api: str = "custom",
    ) -> None:
        """Queue `times` failures for the next calls of `api` (after the token check):
        custom (customer-service messages), template, tag, mass."""
        if (errcode is None) == (http_status is None):
            raise ValueError("give exactly one of errcode or http_status")
        with self._lock:
            queue = (
                self._failures if api == "custom" else self._api_failures.setdefault(api, deque())
            )
            for _ in range(times):
                queue.append(Failure(errcode, http_status, errmsg))

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

    # ------------------------------------------------------------------ warnings (SIMULATED)

    def _refusal(self, api: str, access_token: str) -> tuple[int, dict[str, Any]] | None:
        """Token check and queued failures of `api`; called with the lock held."""
        self.api_calls[api] = self.api_calls.get(api, 0) + 1
        code = self._token_error(access_token)
        if code is not None:
            return 200, {"errcode": code, "errmsg": errmsg(code)}
        failures = self._api_failures.get(api)
        if failures:
            failure = failures.popleft()
            if failure.http_status is not None:
                return failure.http_status, {}
            assert failure.errcode is not None
            return 200, {
                "errcode": failure.errcode,
                "errmsg": failure.errmsg or errmsg(failure.errcode),
            }
        return None

    def _msgid(self) -> int:
        self._next_msgid += 1
        return self._next_msgid

    def send_template(self, access_token: str, payload: Any) -> tuple[int, dict[str, Any]]:
        """POST /cgi-bin/message/template/send: records the message, answers its msgid."""
        with self._lock:
            refused = self._refusal("template", access_token)
            if refused is not None:
                return refused
            if self.template_quota is not None:
                if self.template_quota <= 0:
                    return 200, {"errcode": 45009, "errmsg": errmsg(45009)}
                self.template_quota -= 1
            if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
                return 200, {"errcode": 47001, "errmsg": errmsg(47001)}
            if not isinstance(payload.get("touser"), str) or not payload["touser"]:
                return 200, {"errcode": 40003, "errmsg": errmsg(40003)}
            if not isinstance(payload.get("template_id"), str) or not payload["template_id"]:
                return 200, {"errcode": 40037, "errmsg": errmsg(40037)}
            msgid = self._msgid()
            self._templates.append(
                RecordedTemplate(
                    msgid=msgid,
                    touser=payload["touser"],
                    template_id=payload["template_id"],
                    data=payload["data"],
                    received_at=time.time(),
                )
            )
            return 200, {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def tag_call(self, access_token: str, action: str, payload: Any) -> tuple[int, dict[str, Any]]:
        """The user-tag APIs: create, get, batchtagging, batchuntagging, users (user/tag/get)."""
        with self._lock:
            refused = self._refusal("tag", access_token)
            if refused is not None:
                return refused
            body = payload if isinstance(payload, dict) else {}
            if action == "get":
                tags = [
                    {"id": i, "name": n, "count": len(self._tag_members.get(i, ()))}
                    for i, n in self._tags.items()
                ]
                return 200, {"tags": tags}
            if action == "create":
                name = str((body.get("tag") or {}).get("name") or "")
                if not name or len(name) > 30 or name in self._tags.values():
                    return 200, {"errcode": 45157, "errmsg": errmsg(45157)}
                tag_id = 100 + len(self._tags)
                self._tags[tag_id] = name
                self._tag_members[tag_id] = set()
                return 200, {"tag": {"id": tag_id, "name": name}}
            tag_id = int(body.get("tagid") or 0)
            if tag_id not in self._tags:
                return 200, {"errcode": 45159, "errmsg": errmsg(45159)}
            members = self._tag_members[tag_id]
            if action in ("batchtagging", "batchuntagging"):
                openids = body.get("openid_list") or []
                if not isinstance(openids, list) or len(openids) > 50:
                    return 200, {"errcode": 40032, "errmsg": "invalid openid_list size"}
                for openid in openids:
                    (members.add if action == "batchtagging" else members.discard)(str(openid))
                return 200, {"errcode": 0, "errmsg": "ok"}
            if action == "users":
                ordered = sorted(members)
                after = str(body.get("next_openid") or "")
                page = [o for o in ordered if o > after][:10_000]
                more = len([o for o in ordered if o > after]) > len(page)
                return 200, {
                    "count": len(page),
                    "data": {"openid": page},
                    "next_openid": page[-1] if more and page else "",
                }
            return 404, {}

    def send_mass_by_tag(self, access_token: str, payload: Any) -> tuple[int, dict[str, Any]]:
        """POST /cgi-bin/message/mass/sendall (text, to a tag): records who it reached."""
        with self._lock:
            refused = self._refusal("mass", access_token)
            if refused is not None:
                return refused
            body = payload if isinstance(payload, dict) else {}
            filter_ = body.get("filter") or {}
            tag_id = filter_.get("tag_id", filter_.get("group_id"))
            if body.get("msgtype") != "text" or not (body.get("text") or {}).get("content"):
                return 200, {"errcode": 40008, "errmsg": errmsg(40008)}
            if filter_.get("is_to_all"):
                recipients: set[str] = set().union(*self._tag_members.values())
            elif tag_id in self._tags:
                recipients = set(self._tag_members[tag_id])
            else:
                return 200, {"errcode": 45159, "errmsg": errmsg(45159)}
            msg_id = self._msgid()
            self._mass.append(
                RecordedMass(
                    msg_id=msg_id,
                    tag_id=int(tag_id or 0),
                    content=str(body["text"]["content"]),
                    recipients=tuple(sorted(recipients)),
                    received_at=time.time(),
                )
            )
            return 200, {"errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id}

    @property
    def templates(self) -> list[RecordedTemplate]:
        with self._lock:
            return list(self._templates)

    @property
    def mass_sends(self) -> list[RecordedMass]:
        with self._lock:
            return list(self._mass)

    def tag_members(self, name: str) -> set[str]:
        with self._lock:
            for tag_id, tag_name in self._tags.items():
                if tag_name == name:
                    return set(self._tag_members[tag_id])
            return set()

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
