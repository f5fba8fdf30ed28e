"""SIMULATED WeChat servers for development: the API stand-in, a message sender, a chat page.

- `/simulator/wechat-api/cgi-bin/...`: the official-account API (token, customer-service
  messages) answered by `WeChatStandIn`; development's `WECHAT_API_BASE_URL` points here.
- `POST /simulator/api/send`: builds the XML WeChat's servers would send for a resident's
  message or event, signs (and optionally AES-encrypts) it and POSTs it to this app's own
  `/wechat` — the same HTTP request WeChat makes — then decodes the passive reply.
- `GET /simulator/api/inbox`: customer-service messages the stand-in received.
- `GET /simulator`: a phone-like chat page using the two endpoints above
  (`templates/simulator.html`, its script and style in `static/`, under the console's
  Content-Security-Policy: no inline script or style, no `innerHTML`).

Not WeChat: the real adapter is `integrations/wechat.py`.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

import httpx
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from gateway.simulator.standin import WeChatStandIn
from gateway.wechat_fields import FIELDS, OPENID

router = APIRouter(prefix="/simulator", tags=["simulator"], include_in_schema=False)

ACCOUNT_ID = "gh_jmt_simulated"  # the official account's original id (ToUserName)
WECHAT_SERVERS = "http://wechat-servers"
OPENID_FORM = f"^(?:{OPENID.pattern.pattern})$" if OPENID.pattern else None


def standin_of(request: Request) -> WeChatStandIn:
    """The app's stand-in, created on first use with the configured app id and secret."""
    state = request.app.state
    standin = getattr(state, "wechat_standin", None)
    if standin is None:
        settings = state.settings
        standin = WeChatStandIn(settings.wechat_app_id or "", settings.wechat_app_secret or "")
        state.wechat_standin = standin
    return standin


# ---------------------------------------------------------------------- the API stand-in


@router.get("/wechat-api/cgi-bin/token")
async def token(
    request: Request, grant_type: str = "", appid: str = "", secret: str = ""
) -> dict[str, Any]:
    return standin_of(request).issue_token(grant_type, appid, secret)


@router.post("/wechat-api/cgi-bin/message/custom/send")
async def custom_send(request: Request, access_token: str = "") -> Response:
    # wechatpy posts JSON bytes without a JSON content type: parse the body ourselves.
    try:
        payload: Any = json.loads(await request.body())
    except ValueError:
        payload = None
    status, answer = standin_of(request).send_custom(access_token, payload)
    if status != 200:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        return PlainTextResponse(phrase, status_code=status)
    return JSONResponse(answer)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def _answer(status: int, answer: dict[str, Any]) -> Response:
    if status != 200:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        return PlainTextResponse(phrase, status_code=status)
    return JSONResponse(answer)


@router.post("/wechat-api/cgi-bin/message/template/send")
async def template_send(request: Request, access_token: str = "") -> Response:
    """SIMULATED template message (warnings to residents outside the 48 h window)."""
    return _answer(*standin_of(request).send_template(access_token, await _json_body(request)))


@router.post("/wechat-api/cgi-bin/message/mass/sendall")
async def mass_sendall(request: Request, access_token: str = "") -> Response:
    """SIMULATED mass send by user tag."""
    return _answer(*standin_of(request).send_mass_by_tag(access_token, await _json_body(request)))


@router.get("/wechat-api/cgi-bin/tags/get")
async def tags_get(request: Request, access_token: str = "") -> Response:
    return _answer(*standin_of(request).tag_call(access_token, "get", None))


@router.post("/wechat-api/cgi-bin/tags/{action}")
async def tags_post(action: str, request: Request, access_token: str = "") -> Response:
    """SIMULATED user tags: create, members/batchtagging, members/batchuntagging."""
    return _answer(*standin_of(request).tag_call(access_token, action, await _json_body(request)))


@router.post("/wechat-api/cgi-bin/tags/members/{action}")
async def tag_members(action: str, request: Request, access_token: str = "") -> Response:
    return _answer(*standin_of(request).tag_call(access_token, action, await _json_body(request)))


@router.post("/wechat-api/cgi-bin/user/tag/get")
async def tag_users(request: Request, access_token: str = "") -> Response:
    return _answer(*standin_of(request).tag_call(access_token, "users", await _json_body(request)))


@router.get("/api/warnings")
async def warnings_sent(request: Request) -> dict[str, Any]:
    """What the SIMULATED WeChat received for warnings: template messages and mass sends."""
    standin = standin_of(request)
    return {
        "simulated": True,
        "templates": [t.as_dict() for t in standin.templates],
        "mass_sends": [m.as_dict() for m in standin.mass_sends],
    }


@router.get("/api/inbox")
async def inbox(request: Request, openid: str, after: int = Query(0, ge=0)) -> list[dict]:
    return [m.as_dict() for m in standin_of(request).messages_for(openid, after)]


# ---------------------------------------------------------------------- WeChat's side


def _limit(name: str) -> int:
    """WeChat's limit for a field, from the gateway's one table of them: the simulator
    never builds a message the gateway would refuse as malformed."""
    return FIELDS[name].max_length


class SendRequest(BaseModel):
    openid: str = Field(..., min_length=1, max_length=_limit("FromUserName"), regex=OPENID_FORM)
    type: Literal["text", "voice", "location", "image", "link", "event"] = "text"
    content: str = Field("", max_length=min(_limit("Content"), _limit("Description")))
    recognition: str | None = Field(None, max_length=_limit("Recognition"))  # default: content
    lat: float | None = Field(None, ge=-90, le=90)
    lng: float | None = Field(None, ge=-180, le=180)
    label: str = Field("", max_length=_limit("Label"))
    event: Literal["subscribe", "unsubscribe", "CLICK"] | None = None
    key: str = Field("", max_length=_limit("EventKey"))
    title: str = Field("", max_length=_limit("Title"))
    url: str = Field("", max_length=_limit("Url"))
    encrypted: bool = False
    retry_of: str | None = None  # resend this MsgId (WeChat's retry)


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _fields(send: SendRequest) -> list[tuple[str, str | int]]:
    """The type-specific elements, in WeChat's order; strings go in CDATA, numbers bare."""
    media_id = "SIMULATED_MEDIA_" + secrets.token_hex(8)
    if send.type == "text":
        return [("Content", send.content)]
    if send.type == "voice":
        recognition = send.content if send.recognition is None else send.recognition
        return [("MediaId", media_id), ("Format", "amr"), ("Recognition", recognition)]
    if send.type == "location":
        if send.lat is None or send.lng is None:
            raise HTTPException(422, "location needs lat and lng")
        return [
            ("Location_X", f"{send.lat:.6f}"),
            ("Location_Y", f"{send.lng:.6f}"),
            ("Scale", 15),
            ("Label", send.label),
        ]
    if send.type == "image":
        return [("PicUrl", send.url or "http://mmbiz.qpic.cn/simulated.jpg"), ("MediaId", media_id)]
    if send.type == "link":
        return [("Title", send.title), ("Description", send.content), ("Url", send.url)]
    if send.event is None:
        raise HTTPException(422, "an event needs event: subscribe, unsubscribe or CLICK")
    if send.event == "CLICK":
        return [("Event", "CLICK"), ("EventKey", send.key)]
    return [("Event", send.event)]


def build_xml(send: SendRequest, *, create_time: int, msg_id: str | None) -> str:
    """The plain XML WeChat's servers send for this message or event."""
    msg_type = send.type
    elements: list[tuple[str, str | int]] = [
        ("ToUserName", ACCOUNT_ID),
        ("FromUserName", send.openid),
        ("CreateTime", create_time),
        ("MsgType", msg_type),
        *_fields(send),
    ]
    if msg_id is not None:
        elements.append(("MsgId", int(msg_id)))
    lines = [
        f"<{name}>{value if isinstance(value, int) else _cdata(value)}</{name}>"
        for name, value in elements
    ]
    return "<xml>\n" + "\n".join(lines) + "\n</xml>"


def _sign(token: str, *parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, *parts)
    return signer.signature


def _crypto(request: Request) -> WeChatCrypto | None:
    settings = request.app.state.settings
    if not settings.wechat_encoding_aes_key:
        return None
    return WeChatCrypto(
        settings.wechat_token or "", settings.wechat_encoding_aes_key, settings.wechat_app_id or ""
    )


def _read_reply(
    raw: str, openid: str, crypto: WeChatCrypto | None
) -> tuple[str | None, str | None]:
    """(text of the passive reply, error) from the gateway's answer body, checked as
    WeChat would: decryptable, a text reply, addressed to the resident."""
    if raw.strip() in ("", "success"):
        return None, None
    try:
        xml = raw
        if crypto is not None:
            root = ElementTree.fromstring(raw)
            xml = crypto.decrypt_message(
                raw,
                root.findtext("MsgSignature"),
                root.findtext("TimeStamp"),
                root.findtext("Nonce"),
            )
            if isinstance(xml, bytes):
                xml = xml.decode("utf-8")
        root = ElementTree.fromstring(xml)
    except Exception as error:  # noqa: BLE001 — report what WeChat would reject
        return None, f"WeChat could not read the reply: {type(error).__name__}: {error}"
    if root.findtext("MsgType") != "text":
        return None, f"not a text reply: {root.findtext('MsgType')}"
    if root.findtext("ToUserName") != openid:
        return None, f"reply addressed to {root.findtext('ToUserName')!r}, not {openid!r}"
    return root.findtext("Content") or "", None


@router.post("/api/send")
async def send_as_wechat(send: SendRequest, request: Request) -> dict[str, Any]:
    """Send the gateway's /wechat what WeChat would for this message; return its answer."""
    settings = request.app.state.settings
    standin = standin_of(request)
    now = int(time.time())
    if send.type == "event":
        if send.retry_of is not None:
            raise HTTPException(422, "events have no MsgId to retry")
        msg_id, xml = None, build_xml(send, create_time=now, msg_id=None)
    else:
        if send.retry_of is not None and not re.fullmatch(r"[0-9]{1,20}", send.retry_of):
            raise HTTPException(422, "retry_of must be a MsgId (digits)")
        msg_id = send.retry_of or str(secrets.randbits(63) or 1)
        xml = standin.inbound(msg_id) or build_xml(send, create_time=now, msg_id=msg_id)
        standin.remember_inbound(msg_id, xml)

    sender = ElementTree.fromstring(xml).findtext("FromUserName") or send.openid  # on retries
    token = settings.wechat_token or ""
    timestamp, nonce = str(now), str(secrets.randbelow(10**9) + 10**9)
    params = {
        "signature": _sign(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": sender,
    }
    # Safe mode refuses plain callbacks: WeChat then encrypts every message, and so do we.
    encrypt = send.encrypted or settings.wechat_mode == "safe"
    crypto = _crypto(request) if encrypt else None
    body = xml
    if crypto is not None:
        sealed = ElementTree.fromstring(crypto.encrypt_message(xml, nonce, timestamp))
        body = (
            f"<xml>\n<ToUserName>{_cdata(ACCOUNT_ID)}</ToUserName>\n"
            f"<Encrypt>{_cdata(sealed.findtext('Encrypt') or '')}</Encrypt>\n</xml>"
        )
        params.update(encrypt_type="aes", msg_signature=sealed.findtext("MsgSignature") or "")

    transport = httpx.ASGITransport(app=request.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=WECHAT_SERVERS) as client:
        answer = await client.post(
            "/wechat",
            params=params,
            content=body.encode("utf-8"),
            headers={"Content-Type": "text/xml", "User-Agent": "Mozilla/4.0 (simulated WeChat)"},
        )
    reply, error = (None, None)
    if answer.status_code == 200:
        reply, error = _read_reply(answer.text, sender, crypto)
    return {
        "status": answer.status_code,
        "reply": reply,
        "raw": answer.text,
        "msg_id": msg_id,  # a string: 64-bit ids do not survive JavaScript numbers
        "encrypted": crypto is not None,
        "error": error,
    }


# ---------------------------------------------------------------------- the chat page

STATIC_DIR = Path(__file__).resolve().parent / "static"  # mounted by gateway/app.py
STATIC_PREFIX = "/simulator/static"
PAGE = Path(__file__).resolve().parent / "templates" / "simulator.html"


@router.get("", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    """The chat page: markup only; its script and style are static files, so the
    console's Content-Security-Policy (gateway/console/routes.py) applies here too."""
    return HTMLResponse(PAGE.read_text("utf-8"))
