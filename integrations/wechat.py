"""WeChat official-account API (customer-service messages) through wechatpy.

- `WECHAT_API_BASE_URL` points the whole client at another server (a proxy, or the local
  stand-in of the simulator). wechatpy 1.8 hard-codes the token URL in
  `fetch_access_token`, so `WeChatApi` overrides that one method.
- The access token lives in `SqlTokenStorage` (the shared database), so every gateway
  worker uses one token and none fetches a token per message.
- `send_text` classifies failures: transient ones (errcode -1, HTTP 5xx, timeouts) are
  retried by the outbox; permanent ones (45015 outside the 48-hour window, 40003 bad
  openid, other 4xx) are not.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

from casework import db, shared

logger = logging.getLogger(__name__)

PERMANENT_ERRCODES = {
    40003: "openid 无效",
    45015: "超出48小时客服消息回复时限",
    45047: "客服接口下行条数超过上限",
    40013: "AppID 无效",
    40125: "AppSecret 无效",
    48001: "接口未授权",
}
TRANSIENT_ERRCODES = {-1: "系统繁忙", 45009: "接口调用超过频率限制"}
STALE_TOKEN_ERRCODES = {40001, 40014, 42001}  # the token was revoked or expired early


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


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
        expires = datetime.now(timezone.utc) + timedelta(seconds=max((ttl or 7200) - 120, 60))
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
        try:
            try:
                self.api.message.send_text(openid, text)
            except WeChatClientException as error:
                if error.errcode not in STALE_TOKEN_ERRCODES:
                    raise
                # Another worker's token, or one WeChat dropped early: fetch anew, retry once.
                self.api.session.delete(self.api.access_token_key)
                self.api.fetch_access_token()
                self.api.message.send_text(openid, text)
        except WeChatClientException as error:
            raise classify(error) from error
        except requests.RequestException as error:  # timeouts, refused connections
            raise DeliveryError(f"network: {type(error).__name__}", permanent=False) from error
        logger.info("sent customer-service message in %.0f ms", (time.monotonic() - started) * 1000)


def classify(error: WeChatClientException) -> DeliveryError:
    code = error.errcode
    if code is None:  # an HTTP error, no WeChat errcode
        status = getattr(getattr(error, "response", None), "status_code", None)
        permanent = status is not None and 400 <= status < 500
        return DeliveryError(f"HTTP {status}", permanent=permanent)
    if code in PERMANENT_ERRCODES:
        return DeliveryError(f"{code} {PERMANENT_ERRCODES[code]}", permanent=True)
    label = TRANSIENT_ERRCODES.get(code, error.errmsg or "")
    return DeliveryError(f"{code} {label}", permanent=False)
