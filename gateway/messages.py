"""What each kind of WeChat message means to 警民通 (pure: no I/O).

`describe` turns a callback's validated fields (`wechat_fields`) into an `Incoming`: the
key that makes storing it idempotent, what a person reads in the transcript, what (if
anything) goes to the bot and with which metadata, or the reply the gateway gives itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WELCOME = (
    "您好，欢迎关注镇海警民通！\n"
    "您可以直接发文字或语音告诉我遇到的事情，比如“被骗了”“楼上太吵”“狗咬人了”，"
    "也可以问办事问题，比如“身份证丢了怎么补办”。需要真人时说“找民警”。\n"
    "情况紧急请直接拨打110。"
)
SERVICE_GUIDE = (
    "我可以帮您：\n"
    "1. 解答户籍、身份证、居住证、出入境、交警业务、无犯罪记录证明等办事问题；\n"
    "2. 登记诈骗、噪音、犬只、法律咨询等情况并转给民警或相关部门；\n"
    "3. 需要民警时，说“找民警”即可。情况紧急请直接拨打110。"
)
VOICE_NOT_RECOGNISED = "抱歉，没听清您的语音。方便的话请打字告诉我，情况紧急请直接拨打110。"
IMAGE_RECEIVED = "已收到您的图片。请再用文字简单说明一下情况，方便我们处理。"
UNSUPPORTED = "抱歉，暂时不支持这种消息。请发送文字、语音或位置，情况紧急请直接拨打110。"

# Menu CLICK keys of the account's custom menu → what the resident means by them.
MENU_TEXTS = {
    "contact_officer": "我要找民警",  # 联系民警
    "antifraud_tips": "常见的诈骗类型有哪些",  # 反诈知识
    "my_community": "设置我的社区",  # 我的社区: community, warning topics, mobile (issue 11)
}
MENU_REPLIES = {"service_guide": SERVICE_GUIDE}  # 办事指南


@dataclass
class Incoming:
    openid: str
    dedupe_key: str
    msg_type: str
    content: str  # what a person reads in the transcript
    media: dict[str, Any] = field(default_factory=dict)
    bot_text: str | None = None  # what goes to Rasa; None: the bot is not asked
    metadata: dict[str, Any] = field(default_factory=dict)  # for Rasa
    local_reply: str | None = None  # answered by the gateway itself
    event: str | None = None
    job: dict[str, Any] | None = None  # a template / mass send job's result (warnings)


JOB_EVENTS = ("templatesendjobfinish", "masssendjobfinish")


def describe(fields: Mapping[str, str]) -> Incoming:
    """What the callback means; `fields` passed `wechat_fields.validate`, so every field its
    type requires is present, scalar and within its limits."""
    openid = fields["FromUserName"]
    kind = fields["MsgType"]
    if kind == "event":
        return _describe_event(fields, openid)
    msg_id = fields.get("MsgId")
    key = f"msg:{int(msg_id)}" if msg_id else f"msg:{openid}:{int(fields['CreateTime'])}"
    base: dict[str, Any] = {"openid": openid, "dedupe_key": key, "msg_type": kind}
    if kind == "text":
        text = fields["Content"]
        return Incoming(**base, content=text, bot_text=text, metadata={"message_type": "text"})
    if kind == "voice":
        recognition = fields.get("Recognition", "").strip()
        media = {
            "media_id": fields["MediaId"],
            "format": fields["Format"],
            "recognition": recognition,
        }
        if not recognition:
            return Incoming(**base, content="[语音]", media=media, local_reply=VOICE_NOT_RECOGNISED)
        return Incoming(
            **base,
            content=recognition,
            media=media,
            bot_text=recognition,
            metadata={"message_type": "voice"},
        )
    if kind == "location":
        lat, lng = float(fields["Location_X"]), float(fields["Location_Y"])
        label = fields.get("Label", "")
        location = {"lat": lat, "lng": lng, "label": label}
        return Incoming(
            **base,
            content=f"[位置] {label} ({lat}, {lng})",
            media={"location": location},
            bot_text=label or "这是我的位置",
            metadata={"message_type": "location", "location": location},
        )
    if kind == "image":
        media = {"media_id": fields["MediaId"], "pic_url": fields["PicUrl"]}
        return Incoming(**base, content="[图片]", media=media, local_reply=IMAGE_RECEIVED)
    if kind == "link":
        media = {
            "title": fields["Title"],
            "description": fields["Description"],
            "url": fields["Url"],
        }
        text = " ".join(p for p in (media["title"], media["description"], media["url"]) if p)
        return Incoming(
            **base,
            content=f"[链接] {text}",
            media=media,
            bot_text=text,
            metadata={"message_type": "link", "link": media},
        )
    return Incoming(**base, content=f"[{kind}]", local_reply=UNSUPPORTED)


def _describe_event(fields: Mapping[str, str], openid: str) -> Incoming:
    event = fields["Event"].lower()
    key = f"evt:{openid}:{int(fields['CreateTime'])}:{event}"
    base: dict[str, Any] = {
        "openid": openid,
        "dedupe_key": key,
        "msg_type": "event",
        "event": event,
    }
    if event == "subscribe":
        return Incoming(**base, content="[关注]", local_reply=WELCOME)
    if event == "unsubscribe":
        return Incoming(**base, content="[取消关注]")
    if event in JOB_EVENTS and "MsgID" in fields:
        # Keyed by the job's id: WeChat's retries of the event store nothing twice. (One
        # without MsgID names no job: stored like any other event, nothing to update.)
        msg_id = str(int(fields["MsgID"]))
        status = fields.get("Status", "")
        job: dict[str, Any] = {"event": event, "msg_id": msg_id, "status": status}
        for name, key in (("TotalCount", "total"), ("SentCount", "sent"), ("ErrorCount", "errors")):
            if name in fields:
                job[key] = int(fields[name])
        return Incoming(
            **{**base, "dedupe_key": f"evt:{event}:{msg_id}"},
            content=f"[事件] {event} {status[:64]}",
            media={"job": job},
            job=job,
        )
    if event == "click":
        menu_key = fields["EventKey"]
        if menu_key in MENU_TEXTS:
            return Incoming(
                **base,
                content=f"[菜单] {menu_key}",
                bot_text=MENU_TEXTS[menu_key],
                metadata={"message_type": "menu", "menu_key": menu_key},
            )
        return Incoming(
            **base,
            content=f"[菜单] {menu_key}",
            local_reply=MENU_REPLIES.get(menu_key, SERVICE_GUIDE),
        )
    # VIEW (a menu link), LOCATION reports, template-send results ...: nothing to answer.
    return Incoming(**base, content=f"[事件] {event}")


def bot_texts(messages: list[dict[str, Any]]) -> list[str]:
    """Rasa's messages as plain texts (buttons become a numbered list)."""
    texts = []
    for message in messages:
        text = str(message.get("text") or "")
        buttons = message.get("buttons") or []
        if buttons:
            options = [f"{i}. {b.get('title', '')}" for i, b in enumerate(buttons, start=1)]
            text = "\n".join([text, *options]).strip()
        if not text and message.get("image"):
            text = str(message["image"])
        if text:
            texts.append(text)
    return texts


PASSIVE_LIMIT_BYTES = 2000  # WeChat's limit for a text reply is 2048 bytes


def compose(texts: list[str]) -> tuple[str, list[str]]:
    """One passive reply joining the bot's messages, or the first passive and the rest
    for the customer-service API when together they are too long."""
    joined = "\n\n".join(texts)
    if len(joined.encode("utf-8")) <= PASSIVE_LIMIT_BYTES:
        return joined, []
    return texts[0], texts[1:]
