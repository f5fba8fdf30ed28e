"""Officer notifications: a new or urgent case is pushed to the officers' DingTalk group.

- `Notifier` is the interface (one method, `send`); `DingTalkRobot` implements it with a
  DingTalk custom-robot webhook signed with 加签 (`dingtalk_sign`); `RecordingNotifier`
  is the local fake for tests. A WeCom (企业微信) group robot would be another `Notifier`.
- `DingTalkRobot.send` classifies failures: transient ones (HTTP errors, timeouts, refused
  connections, any errcode but the permanent ones) raise `NotifyError(permanent=False)`;
  errcode 310000 (keyword, signature, timestamp or IP check failed) and 300001 (invalid
  access token) are permanent: retrying cannot help. It can retry in place (`retries`,
  with a doubling sleep) for one-off callers; the gateway's robot does not
  (`notifier_from_settings`: `retries=0`): the dispatcher records the failure and the
  case is tried again later with backoff for up to 24 h (`casework.dispatch`), so no
  pass sleeps.
- Logs carry the case id, attempt and errcode; never the secret, the signed URL (its
  access token), the message body or the officers' mobiles.
- What leaves for the DingTalk group is masked here, whoever composed it: phone, ID-card
  and bank-card numbers in the title and text (`casework.privacy.mask_pii`). Only the
  @-mentions of the notified officers' own mobiles stay whole (DingTalk rings nobody
  otherwise).
- Development's `DINGTALK_WEBHOOK_URL` points at the simulator's stand-in
  (`gateway/simulator/partners.py`), which checks the signature the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from casework.privacy import mask_pii

logger = logging.getLogger(__name__)

PERMANENT_ERRCODES = {
    310000: "安全设置校验未通过（关键词、加签、时间戳或 IP）",
    300001: "机器人 access_token 无效",
}


@dataclass(frozen=True)
class Notification:
    """One message to the officers about a case."""

    case_id: int
    title: str  # shown in DingTalk's chat list and the phone notification
    text: str  # markdown body, Chinese
    url: str  # the case in the officer console
    urgent: bool
    mobiles: tuple[str, ...] = ()  # officers to @-mention when urgent
    # DingTalk user ids (staffId) a personal work notification goes to
    # (`integrations.dingtalk_work_notice`); the group robot ignores them.
    user_ids: tuple[str, ...] = ()


class NotifyError(Exception):
    """The notification was not delivered; `permanent` means retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool, errcode: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.errcode = errcode


class Notifier(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver the notification or raise NotifyError."""
        ...


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's 加签: urlencode(base64(HMAC-SHA256(secret, "{timestamp}\\n{secret}")))."""
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def masked_text(notification: Notification) -> str:
    """The notification's text with every personal number masked, except the @-mentions of
    the officers it rings."""
    keep = {
        f"@{mobile}": f"\x00{index}\x00" for index, mobile in enumerate(mentioned(notification))
    }
    text = notification.text
    for mention, marker in keep.items():
        text = text.replace(mention, marker)
    text = mask_pii(text)
    for mention, marker in keep.items():
        text = text.replace(marker, mention)
    return text


def markdown_text(notification: Notification) -> str:
    """The markdown body DingTalk shows: the masked text, the console link and, when urgent,
    one `@mobile` per officer (DingTalk only rings someone whose mobile appears in the text)."""
    parts = [masked_text(notification).rstrip()]
    if notification.url and notification.url not in notification.text:
        parts.append(f"[在控制台查看案件 #{notification.case_id}]({notification.url})")
    mentions = [f"@{mobile}" for mobile in mentioned(notification) if f"@{mobile}" not in parts[0]]
    if mentions:
        parts.append(" ".join(mentions))
    return "\n\n".join(parts)


def mentioned(notification: Notification) -> list[str]:
    """The mobiles to @-mention: only for urgent notifications, without duplicates."""
    if not notification.urgent:
        return []
    return list(dict.fromkeys(m.strip() for m in notification.mobiles if m.strip()))


class DingTalkRobot:
    """A DingTalk custom robot (自定义机器人) webhook with 加签."""

    def __init__(
        self,
        webhook_url: str,
        secret: str | None,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 1.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`retries` is the number of further attempts after the first one; the waits
        between attempts are `backoff`, 2×`backoff`, 4×`backoff`… seconds. Without a
        `secret` the robot must be secured by keywords or an IP allow-list instead."""
        self.webhook_url = webhook_url
        self.secret = secret
        self.timeout = timeout
        self.retries = max(retries, 0)
        self.backoff = backoff
        self.session = session or requests.Session()
        self._sleep = sleep

    def signed_url(self, timestamp_ms: int | None = None) -> str:
        if not self.secret:
            return self.webhook_url
        timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        separator = "&" if "?" in self.webhook_url else "?"
        sign = dingtalk_sign(self.secret, timestamp_ms)
        return f"{self.webhook_url}{separator}timestamp={timestamp_ms}&sign={sign}"

    def payload(self, notification: Notification) -> dict[str, Any]:
        return {
            "msgtype": "markdown",
            "markdown": {
                "title": mask_pii(notification.title),
                "text": markdown_text(notification),
            },
            "at": {"atMobiles": mentioned(notification), "isAtAll": False},
        }

    def send(self, notification: Notification) -> None:
        payload = self.payload(notification)
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self._post_once(payload)
            except NotifyError as error:
                if error.permanent or attempt == attempts:
                    logger.warning(
                        "DingTalk notification for case %s failed after %d attempt(s)%s: %s",
                        notification.case_id,
                        attempt,
                        " (permanent)" if error.permanent else "",
                        error,
                    )
                    raise
                delay = self.backoff * 2 ** (attempt - 1)
                logger.info(
                    "DingTalk notification for case %s: attempt %d/%d failed (%s), retry in %.1fs",
                    notification.case_id,
                    attempt,
                    attempts,
                    error,
                    delay,
                )
                if delay > 0:
                    self._sleep(delay)
                continue
            logger.info(
                "DingTalk notification for case %s sent (attempt %d, urgent=%s, %d mention(s))",
                notification.case_id,
                attempt,
                notification.urgent,
                len(payload["at"]["atMobiles"]),
            )
            return

    def _post_once(self, payload: dict[str, Any]) -> None:
        """One signed POST (a fresh timestamp each time); NotifyError unless errcode 0."""
        try:
            response = self.session.post(self.signed_url(), json=payload, timeout=self.timeout)
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
            return
        errmsg = str(answer.get("errmsg") or PERMANENT_ERRCODES.get(errcode, ""))
        raise NotifyError(
            f"errcode {errcode} {errmsg}".strip(),
            permanent=errcode in PERMANENT_ERRCODES,
            errcode=errcode,
        )


class RecordingNotifier:
    """Local fake: keeps the notifications in memory; fails the next sends on demand."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.attempts = 0
        self._failures: list[NotifyError] = []
        self._lock = threading.Lock()

    def fail_next(self, error: NotifyError, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([error] * times)

    def send(self, notification: Notification) -> None:
        with self._lock:
            self.attempts += 1
            if self._failures:
                raise self._failures.pop(0)
            self.sent.append(notification)


def notifier_from_settings(settings: Any) -> Notifier | None:
    """The configured robot, or None when DINGTALK_WEBHOOK_URL is not set."""
    url = getattr(settings, "dingtalk_webhook_url", None)
    if not url:
        return None
    secret = getattr(settings, "dingtalk_secret", None)
    if not secret:
        logger.warning("DINGTALK_SECRET not set: robot messages are sent without 加签")
    return DingTalkRobot(url, secret, retries=0)  # the dispatcher retries (with backoff)
