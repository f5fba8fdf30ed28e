"""Personal DingTalk work notifications (工作通知) of the bureau's enterprise-internal app.

The group robot (`integrations.notify.DingTalkRobot`) rings a whole group; this adapter
reaches one officer on their own phone, in DingTalk's 工作通知 conversation, through
DingTalk's server API:

- `GET {api}/gettoken?appkey=&appsecret=` → `{"errcode": 0, "access_token", "expires_in"}`;
- `POST {api}/topapi/message/corpconversation/asyncsend_v2?access_token=` with
  `{"agent_id", "userid_list": "id1,id2", "msg": {...}}` → `{"errcode": 0, "task_id"}`.
  `msg` is an `action_card` (title, markdown, single_title, single_url: the console link)
  or, without a link, `markdown` (title, text); DingTalk caps it at 2048 bytes.

It implements the same `Notifier` interface as the robot: the recipients travel on the
`Notification` (`user_ids`, the officers' DingTalk user ids), as the robot's @-mentions
travel in `mobiles`, so the dispatcher drives both the same way. A notification without
`user_ids` is refused (permanent): a work notification always names its recipients.

The access token lives about two hours (`expires_in`). It is cached until then, less a
minute (`TOKEN_MARGIN`), in a `TokenCache`: `SharedTokenCache` keeps it in the shared
database (`casework.shared`), so every gateway worker uses one token rather than each
asking DingTalk for its own (gettoken is rate limited; within a token's life DingTalk
hands out the same one anyway); `MemoryTokenCache` is per process (tests, one-off
callers). A token DingTalk calls invalid or expired (40014, 42001) is dropped, fetched
anew and the send tried once more.

Errors are classified like the robot's: network errors, HTTP errors, `-1` (busy) and any
unknown errcode are transient (`NotifyError(permanent=False)`; the dispatcher retries
with backoff); a wrong AppKey/AppSecret, an IP not on the app's allow-list, a missing
permission, a wrong agent id or a malformed message are permanent. What leaves is
masked (`casework.privacy.mask_pii`: phone, ID-card and bank-card numbers); logs carry
the case id, the errcode and the number of recipients — never the secret, the token or
the text. Development's `DINGTALK_API_URL` points at the simulator's stand-in
(`gateway/simulator/partners.py`), which checks the token and the agent id.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import requests

from casework import db, shared
from casework.clock import utcnow
from casework.privacy import mask_pii
from integrations.notify import Notification, NotifyError

logger = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(seconds=60)  # a cached token is dropped this long before DingTalk's
DEFAULT_TOKEN_LIFETIME = 7200  # seconds, when DingTalk's answer has no expires_in
MAX_MSG_BYTES = 2048  # DingTalk's limit on `msg`
STALE_TOKEN_ERRCODES = {40014: "不合法的 access_token", 42001: "access_token 已过期"}
PERMANENT_ERRCODES = {
    40089: "AppKey 或 AppSecret 不正确",
    40001: "AppSecret 不正确",
    33001: "无效的企业 ID",
    60020: "服务器 IP 不在应用的白名单中",
    60011: "应用没有调用该接口的权限",
    88: "鉴权异常（应用权限）",
    40056: "agent_id 不正确",
    40035: "缺少参数",
    400002: "参数不合法",
}


class TokenCache(Protocol):
    def get(self) -> str | None:
        """The cached token, or None when there is none or it expired."""
        ...

    def put(self, token: str, expires_at: datetime) -> None: ...

    def drop(self) -> None: ...


class MemoryTokenCache:
    """One process's token (tests, one-off callers)."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[str, datetime] | None = None

    def get(self) -> str | None:
        with self._lock:
            if self._token is None or self._token[1] <= self._clock():
                return None
            return self._token[0]

    def put(self, token: str, expires_at: datetime) -> None:
        with self._lock:
            self._token = (token, expires_at)

    def drop(self) -> None:
        with self._lock:
            self._token = None


class SharedTokenCache:
    """The token in the shared database (`shared_values`), used by every gateway worker."""

    def __init__(
        self, database_url: str | None, app_key: str, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.database_url = database_url
        self.key = f"dingtalk-work-notice-token:{app_key}"[:128]
        self._clock = clock

    def get(self) -> str | None:
        with db.session_scope(self.database_url) as session:
            return shared.read(session=session, key=self.key, now=self._clock())

    def put(self, token: str, expires_at: datetime) -> None:
        with db.session_scope(self.database_url) as session:
            shared.write(session=session, key=self.key, value=token, expires_at=expires_at)

    def drop(self) -> None:
        with db.session_scope(self.database_url) as session:
            shared.remove(session=session, key=self.key)


def _agent_id(value: str) -> int | str:
    """DingTalk documents agent_id as a number."""
    return int(value) if value.isdigit() else value


def _fit(text: str, budget: int) -> str:
    """`text` cut (keeping its last line, the reply hint) to at most `budget` UTF-8 bytes."""
    if len(text.encode()) <= budget:
        return text
    head, _, last = text.rpartition("\n")
    room = budget - len(last.encode()) - len("…\n".encode())
    cut = head.encode()[: max(room, 0)].decode("utf-8", "ignore")
    return f"{cut}…\n{last}"


class DingTalkWorkNotice:
    """DingTalk 工作通知 through an enterprise-internal app (agent)."""

    def __init__(
        self,
        api_url: str,
        app_key: str,
        app_secret: str,
        agent_id: str,
        *,
        token_cache: TokenCache | None = None,
        timeout: float = 5.0,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.app_key = app_key
        self.app_secret = app_secret
        self.agent_id = agent_id
        self.timeout = timeout
        self.session = session or requests.Session()
        self._clock = clock
        self.tokens: TokenCache = token_cache or MemoryTokenCache(clock)

    # ------------------------------------------------------------------ the token

    def access_token(self) -> str:
        return self.tokens.get() or self.fetch_token()

    def fetch_token(self) -> str:
        """Ask DingTalk for a token and cache it until it expires (less `TOKEN_MARGIN`)."""
        answer = self._call(
            "GET",
            "/gettoken",
            params={"appkey": self.app_key, "appsecret": self.app_secret},
        )
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise NotifyError("gettoken answered without an access_token", permanent=False)
        try:
            lifetime = int(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME
        expires_at = self._clock() + timedelta(seconds=lifetime) - TOKEN_MARGIN
        self.tokens.put(token, expires_at)
        logger.info("DingTalk work-notice token fetched (valid %d s)", lifetime)
        return token

    # ------------------------------------------------------------------ the message

    def payload(self, notification: Notification) -> dict[str, Any]:
        title = mask_pii(notification.title)[:64]
        if notification.url:
            body: dict[str, Any] = {
                "msgtype": "action_card",
                "action_card": {
                    "title": title,
                    "markdown": "",
                    "single_title": "打开案件",
                    "single_url": notification.url,
                },
            }
            text_key = ("action_card", "markdown")
        else:
            body = {"msgtype": "markdown", "markdown": {"title": title, "text": ""}}
            text_key = ("markdown", "text")
        empty = len(json.dumps(body, ensure_ascii=False).encode())
        text = _fit(mask_pii(notification.text), MAX_MSG_BYTES - empty - 64)
        body[text_key[0]][text_key[1]] = text
        return {
            "agent_id": _agent_id(self.agent_id),
            "userid_list": ",".join(dict.fromkeys(notification.user_ids)),
            "msg": body,
        }

    def send(self, notification: Notification) -> None:
        if not notification.user_ids:
            raise NotifyError("a work notification needs recipients (user_ids)", permanent=True)
        payload = self.payload(notification)
        try:
            answer = self._send_with_token(payload)
        except NotifyError as error:
            logger.warning(
                "DingTalk work notification for case %s to %d officer(s) failed%s: %s",
                notification.case_id,
                len(notification.user_ids),
                " (permanent)" if error.permanent else "",
                error,
            )
            raise
        logger.info(
            "DingTalk work notification for case %s sent to %d officer(s) (task %s)",
            notification.case_id,
            len(notification.user_ids),
            answer.get("task_id"),
        )

    def _send_with_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        path = "/topapi/message/corpconversation/asyncsend_v2"
        try:
            return self._call("POST", path, token=self.access_token(), json=payload)
        except NotifyError as error:
            if error.errcode not in STALE_TOKEN_ERRCODES:
                raise
        # Dropped early by DingTalk, or another worker's stale token: fetch anew, once.
        self.tokens.drop()
        return self._call("POST", path, token=self.fetch_token(), json=payload)

    def _call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """One request; the answer when errcode is 0, else NotifyError (classified)."""
        params = dict(kwargs.pop("params", {}) or {})
        if token is not None:
            params["access_token"] = token
        try:
            response = self.session.request(
                method, self.api_url + path, params=params, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:  # timeouts, refused connections
            raise NotifyError(f"network: {type(error).__name__}", permanent=False) from error
        if response.status_code != 200:
            raise NotifyError(f"HTTP {response.status_code}", permanent=False)
        try:
            answer = response.json()
            errcode = int(answer.get("errcode", -1))
        except (ValueError, TypeError, AttributeError) as error:
            raise NotifyError("answer is not DingTalk JSON", permanent=False) from error
        if errcode == 0:
            return dict(answer)
        known = PERMANENT_ERRCODES.get(errcode) or STALE_TOKEN_ERRCODES.get(errcode, "")
        errmsg = str(answer.get("errmsg") or known)
        raise NotifyError(
            f"errcode {errcode} {errmsg}".strip(),
            permanent=errcode in PERMANENT_ERRCODES,
            errcode=errcode,
        )


def work_notice_from_settings(settings: Any) -> DingTalkWorkNotice | None:
    """The configured app, or None when DINGTALK_APP_KEY (or its agent id, secret or API
    URL) is not set: officers are then notified in the group only."""
    key = getattr(settings, "dingtalk_app_key", None)
    secret = getattr(settings, "dingtalk_app_secret", None)
    agent = getattr(settings, "dingtalk_agent_id", None)
    api = getattr(settings, "dingtalk_api_url", None)
    if not (key and secret and agent and api):
        if key:
            logger.warning(
                "DINGTALK_APP_KEY is set without DINGTALK_APP_SECRET, DINGTALK_AGENT_ID or "
                "DINGTALK_API_URL: no personal work notifications"
            )
        return None
    cache = SharedTokenCache(getattr(settings, "database_url", None), key)
    return DingTalkWorkNotice(api, key, secret, agent, token_cache=cache)
