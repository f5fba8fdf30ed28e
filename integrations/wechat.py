"""WeChat official-account API (customer-service messages) through wechatpy.

- `WECHAT_API_BASE_URL` points the whole client at another server (a proxy, or the local
  stand-in of the simulator). wechatpy 1.8 hard-codes the token URL in
  `fetch_access_token`, so `WeChatApi` overrides that one method.
- The access token lives in `SqlTokenStorage` (the shared database), so every gateway
  worker uses one token and none fetches a token per message.
- Warnings (预警推送) use template messages, user tags and mass send by tag
  (`send_template`, `ensure_tag`, `sync_tag`, `send_mass_to_tag`).
- `send_text` classifies failures: transient ones (errcode -1, HTTP 5xx, timeouts) are
  retried by the outbox; permanent ones (45015 outside the 48-hour window, 40003 bad
  openid, other 4xx) are not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

from casework import db, shared
from casework.clock import utcnow

logger = logging.getLogger(__name__)

PERMANENT_ERRCODES = {
    40003: "openid 无效",
    45015: "超出48小时客服消息回复时限",
    45047: "客服接口下行条数超过上限",
    40013: "AppID 无效",
    40125: "AppSecret 无效",
    48001: "接口未授权",
    40037: "模板 ID 无效",
    43004: "用户未关注公众号",
}
TRANSIENT_ERRCODES = {-1: "系统繁忙", 45009: "接口调用超过频率限制"}
STALE_TOKEN_ERRCODES = {40001, 40014, 42001}  # the token was revoked or expired early
TAG_EXISTS = 45157  # 标签名已存在
TAG_BATCH = 50  # openids per batchtagging / batchuntagging call
TAG_TTL = 30 * 24 * 3600  # seconds a tag id is cached (tags are not renamed)


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool, errcode: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.errcode = errcode  # WeChat's errcode, when it gave one (45009: quota)


class SqlTokenStorage(SessionStorage):
    """wechatpy session storage in the `shared_values` table (shared by all workers)."""

    def __init__(self, database_url: str | None = None) -> None:
        self.database_url = database_url

    def get(self, key: str, default: Any = None) -> Any:
        with db.session_scope(self.database_url) as session:
            value = shared.read(session=session, key=f"wechat:{key}")
        return default if value is None else value

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        # Expire a little early so no worker uses a token WeChat has already dropped.
        expires = utcnow() + timedelta(seconds=max((ttl or 7200) - 120, 60))
        with db.session_scope(self.database_url) as session:
            shared.write(session=session, key=f"wechat:{key}", value=str(value), expires_at=expires)

    def delete(self, key: str) -> None:
        with db.session_scope(self.database_url) as session:
            shared.remove(session=session, key=f"wechat:{key}")


class WeChatApi(WeChatClient):
    """wechatpy's client with every URL, the token URL included, under `base_url`."""

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        base_url: str,
        storage: SessionStorage,
        timeout: float = 5.0,
    ) -> None:
        # No wechatpy auto-retry: it refetches the token and retries without a limit.
        super().__init__(appid, secret, session=storage, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = base_url.rstrip("/") + "/cgi-bin/"
        self._token_url = base_url.rstrip("/") + "/cgi-bin/token"

    def fetch_access_token(self) -> dict[str, Any]:
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
        return self._fetch_access_token(url=self._token_url, params=params)

    @property
    def access_token(self) -> str:
        # wechatpy trusts a stored token only when this process fetched it (expires_at);
        # the shared storage already drops expired tokens, so a stored one is good.
        token = self.session.get(self.access_token_key)
        if token:
            return token
        self.fetch_access_token()
        return self.session.get(self.access_token_key)


class WeChatMessenger:
    """Sends customer-service text messages; raises DeliveryError with a classification."""

    def __init__(self, api: WeChatApi) -> None:
        self.api = api

    def send_text(self, openid: str, text: str) -> None:
        started = time.monotonic()
        self._call(lambda: self.api.message.send_text(openid, text))
        logger.info("sent customer-service message in %.0f ms", (time.monotonic() - started) * 1000)

    def _call(self, request: Callable[[], Any]) -> Any:
        """One API call: a stale token is refetched and the call retried once; failures
        become DeliveryError with their classification."""
        try:
            try:
                return request()
            except WeChatClientException as error:
                if error.errcode not in STALE_TOKEN_ERRCODES:
                    raise
                # Another worker's token, or one WeChat dropped early: fetch anew, retry once.
                self.api.session.delete(self.api.access_token_key)
                self.api.fetch_access_token()
                return request()
        except WeChatClientException as error:
            raise classify(error) from error
        except requests.RequestException as error:  # timeouts, refused connections
            raise DeliveryError(f"network: {type(error).__name__}", permanent=False) from error

    # ---- warnings (预警推送): template messages, user tags, mass send by tag

    def send_template(self, openid: str, template_id: str, data: dict[str, Any]) -> str:
        """A template message (no 48-hour window); WeChat's msgid, which its
        TEMPLATESENDJOBFINISH event names."""
        answer = self._call(lambda: self.api.message.send_template(openid, template_id, data))
        return str(answer.get("msgid", ""))

    def ensure_tag(self, name: str) -> int:
        """The id of the user tag `name` (≤ 30 characters), created when missing; kept in
        the shared storage so workers do not create it twice."""
        key = f"tag:{name}"
        known = self.api.session.get(key)
        if known:
            return int(known)
        try:
            tag = self._call(lambda: self.api.tag.create(name))
            tag_id = int(tag["id"])
        except DeliveryError as error:
            if error.errcode != TAG_EXISTS:
                raise
            tags = self._call(lambda: self.api.tag.get())
            tag_id = next(int(t["id"]) for t in tags if t.get("name") == name)
        self.api.session.set(key, str(tag_id), ttl=TAG_TTL)
        return tag_id

    def sync_tag(self, tag_id: int, openids: list[str]) -> tuple[int, int]:
        """Make the tag's members exactly `openids` (tag_user / untag_user, 50 at a time as
        WeChat allows); returns (tagged, untagged)."""
        members = set(self._call(lambda: list(self.api.tag.iter_tag_users(tag_id))))
        wanted = set(openids)
        add, remove = sorted(wanted - members), sorted(members - wanted)
        for start in range(0, len(add), TAG_BATCH):
            self._call(partial(self.api.tag.tag_user, tag_id, add[start : start + TAG_BATCH]))
        for start in range(0, len(remove), TAG_BATCH):
            chunk = remove[start : start + TAG_BATCH]
            self._call(partial(self.api.tag.untag_user, tag_id, chunk))
        return len(add), len(remove)

    def send_mass_to_tag(self, tag_id: int, text: str) -> str:
        """A text mass send to a user tag; WeChat's msg_id (MASSSENDJOBFINISH names it).
        Posted as WeChat documents it today (`filter.tag_id`): wechatpy 1.8's
        `send_mass_text(group_id)` still writes the old `group_id` key."""
        data = {
            "filter": {"is_to_all": False, "tag_id": tag_id},
            "text": {"content": text},
            "msgtype": "text",
            "send_ignore_reprint": 0,
        }
        answer = self._call(lambda: self.api.post("message/mass/sendall", data=data))
        return str(answer.get("msg_id", ""))


def classify(error: WeChatClientException) -> DeliveryError:
    code = error.errcode
    if code is None:  # an HTTP error, no WeChat errcode
        status = getattr(getattr(error, "response", None), "status_code", None)
        permanent = status is not None and 400 <= status < 500
        return DeliveryError(f"HTTP {status}", permanent=permanent)
    if code in PERMANENT_ERRCODES:
        return DeliveryError(f"{code} {PERMANENT_ERRCODES[code]}", permanent=True, errcode=code)
    label = TRANSIENT_ERRCODES.get(code, error.errmsg or "")
    return DeliveryError(f"{code} {label}", permanent=False, errcode=code)
