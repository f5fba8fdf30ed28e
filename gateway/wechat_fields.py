"""What a WeChat callback may contain: one table of field specs, checked before storage.

A callback is a flat `<xml>` of scalar elements. `parse` reads it strictly (no DOCTYPE,
entities, processing instructions, attributes, nested or repeated elements) and
`validate` checks every field against `FIELDS` and the fields each message type or
event requires (`REQUIRED`, `EVENT_REQUIRED`). Anything else raises `InvalidCallback`,
which the route answers with a 400: a signed request is not a well-formed one.

The limits are WeChat's where it documents them (openid, content) and generous bounds
of our own elsewhere, chosen so nothing valid is refused and nothing overflows a column.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from collections.abc import Mapping
from dataclasses import dataclass

MAX_FIELDS = 48  # WeChat's richest event has about 20; a flood of extras is not WeChat
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # element names we accept at all
_INTEGER = re.compile(r"-?[0-9]{1,20}")  # ASCII only: int() would take "١٢٣" and "1_0"
_DECIMAL = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,15})?")  # no "nan", "inf" or "1e308"


class InvalidCallback(ValueError):
    """A signed callback that is not a well-formed WeChat message (→ 400)."""


@dataclass(frozen=True)
class Spec:
    """One field: a text of at most `max_length` characters (matching `pattern` when
    given), or a number within [low, high]."""

    kind: str = "text"  # text | int | float
    max_length: int = 1024
    pattern: re.Pattern[str] | None = None
    low: float | None = None
    high: float | None = None


OPENID = Spec(max_length=64, pattern=re.compile(r"[A-Za-z0-9_-]+"))  # WeChat's are 28
URL = Spec(max_length=1024)
MEDIA_ID = Spec(max_length=256)  # WeChat's are 64
EXTRA = Spec(max_length=1024)  # fields WeChat adds over time that we do not read

FIELDS: dict[str, Spec] = {
    # every message and event
    "ToUserName": OPENID,  # the account's original id, gh_...
    "FromUserName": OPENID,
    "CreateTime": Spec("int", low=1_000_000_000, high=4_102_444_800),  # 2001 … 2100
    "MsgType": Spec(max_length=16, pattern=re.compile(r"[a-z_]+")),  # messages.msg_type
    "MsgId": Spec("int", low=1, high=2**64 - 1),  # unsigned 64 bits
    # messages
    "Content": Spec(max_length=2048),
    "MediaId": MEDIA_ID,
    "ThumbMediaId": MEDIA_ID,
    "Format": Spec(max_length=16),
    "Recognition": Spec(max_length=2048),
    "Location_X": Spec("float", low=-90, high=90),  # latitude
    "Location_Y": Spec("float", low=-180, high=180),  # longitude
    "Scale": Spec("float", low=0, high=100),
    "Label": Spec(max_length=512),
    "PicUrl": URL,
    "Title": Spec(max_length=512),
    "Description": Spec(max_length=2048),
    "Url": URL,
    # events
    "Event": Spec(max_length=64, pattern=re.compile(r"[A-Za-z_]+")),
    "EventKey": Spec(max_length=128),
    "Ticket": Spec(max_length=256),
    "Latitude": Spec("float", low=-90, high=90),
    "Longitude": Spec("float", low=-180, high=180),
    "Precision": Spec("float", low=0, high=10_000_000),
    # TEMPLATESENDJOBFINISH / MASSSENDJOBFINISH: the job's id (MsgID, not MsgId), its
    # outcome ("success", "failed:user block", "send success", "err(10001)" …), counts
    "MsgID": Spec("int", low=1, high=2**64 - 1),
    "Status": Spec(max_length=128),
    "TotalCount": Spec("int", low=0, high=10**9),
    "FilterCount": Spec("int", low=0, high=10**9),
    "SentCount": Spec("int", low=0, high=10**9),
    "ErrorCount": Spec("int", low=0, high=10**9),
}
COMMON = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
# What each message type needs (other types need only COMMON and get a polite reply).
REQUIRED: dict[str, tuple[str, ...]] = {
    "text": ("Content", "MsgId"),
    "voice": ("MediaId", "Format", "MsgId"),  # Recognition only with speech recognition on
    "location": ("Location_X", "Location_Y", "MsgId"),
    "image": ("PicUrl", "MediaId", "MsgId"),
    "link": ("Title", "Description", "Url", "MsgId"),
    "video": ("MediaId", "ThumbMediaId", "MsgId"),
    "shortvideo": ("MediaId", "ThumbMediaId", "MsgId"),
    "event": ("Event",),
}
# What each event needs, by lower-case Event (others need only Event).
EVENT_REQUIRED: dict[str, tuple[str, ...]] = {
    "click": ("EventKey",),
    "view": ("EventKey",),
    "scan": ("EventKey",),
    "location": ("Latitude", "Longitude"),
}
# The only structured fields WeChat sends: MASSSENDJOBFINISH's copyright-check and article
# results. Their insides are skipped unread (at most NESTED_MAX elements, NESTED_DEPTH
# deep); the field's value is "". Anything else nested is refused as before.
NESTED_SKIPPED = frozenset({"CopyrightCheckResult", "ArticleUrlResult"})
NESTED_MAX = 500
NESTED_DEPTH = 6
# A field whose limits depend on the event: a VIEW's EventKey is the menu's URL.
EVENT_OVERRIDES: dict[tuple[str, str], Spec] = {("view", "EventKey"): URL}


class _FlatReader:
    """expat handlers that collect `<xml>`'s scalar children and refuse anything else."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.depth = 0
        self.field = ""
        self.text: list[str] = []
        self.nested = 0  # elements skipped inside NESTED_SKIPPED fields

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            if name != "xml":
                raise InvalidCallback("the root element is not <xml>")
        elif self.depth == 2:
            if not _NAME.fullmatch(name):
                raise InvalidCallback("a field name that is not WeChat's")
            if name in self.fields:
                raise InvalidCallback(f"<{name}> twice")
            if len(self.fields) >= MAX_FIELDS:
                raise InvalidCallback("too many fields")
            self.field, self.text = name, []
        elif self.field in NESTED_SKIPPED and self.depth <= NESTED_DEPTH:
            self.nested += 1
            if self.nested > NESTED_MAX or not _NAME.fullmatch(name):
                raise InvalidCallback(f"too much inside <{self.field}>")
        else:
            raise InvalidCallback(f"a nested element inside <{self.field}>")
        if attributes:  # after the name checks: a refusal never echoes a name of any length
            raise InvalidCallback(f"attributes on <{name}>")

    def end(self, name: str) -> None:
        if self.depth == 2:
            self.fields[name] = "" if name in NESTED_SKIPPED else "".join(self.text)
        self.depth -= 1

    def characters(self, data: str) -> None:
        if self.depth == 2:
            self.text.append(data)
        elif self.depth > 2 and self.field in NESTED_SKIPPED:
            return  # skipped unread
        elif data.strip():
            raise InvalidCallback("text outside the fields")

    @staticmethod
    def refuse(*_: object) -> None:
        # WeChat never sends these; the route's byte check refuses them too (XXE, billion
        # laughs), this is the parser's own word on it.
        raise InvalidCallback("DOCTYPE, entities and processing instructions are not accepted")


def parse(xml_text: str) -> dict[str, str]:
    """The callback's fields, read strictly: `<xml>` holding scalar elements only."""
    parser = xml.parsers.expat.ParserCreate("utf-8")  # the body was decoded as UTF-8
    reader = _FlatReader()
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.characters
    parser.StartDoctypeDeclHandler = reader.refuse
    parser.EntityDeclHandler = reader.refuse
    parser.ProcessingInstructionHandler = reader.refuse
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(xml_text, True)
    except xml.parsers.expat.ExpatError as error:
        reason = xml.parsers.expat.errors.messages.get(error.code, "error")
        raise InvalidCallback(f"malformed XML: {reason}") from error
    return reader.fields


def _check(name: str, value: str, spec: Spec) -> None:
    if spec.kind == "text":
        if len(value) > spec.max_length:
            raise InvalidCallback(f"{name} longer than {spec.max_length} characters")
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            raise InvalidCallback(f"{name} is not of WeChat's form")
        return
    form = _INTEGER if spec.kind == "int" else _DECIMAL
    if not form.fullmatch(value):
        raise InvalidCallback(f"{name} is not a number")
    number = int(value) if spec.kind == "int" else float(value)
    if (spec.low is not None and number < spec.low) or (
        spec.high is not None and number > spec.high
    ):
        raise InvalidCallback(f"{name} out of range")


def validate(fields: Mapping[str, str]) -> dict[str, str]:
    """`fields` checked against the table; returns them as a plain dict."""
    msg_type = fields.get("MsgType", "")
    event = fields.get("Event", "").lower() if msg_type == "event" else ""
    required = (*COMMON, *REQUIRED.get(msg_type, ()), *EVENT_REQUIRED.get(event, ()))
    for name in required:
        if name not in fields:
            raise InvalidCallback(f"{name} is missing")
    for name, value in fields.items():
        spec = EVENT_OVERRIDES.get((event, name)) or FIELDS.get(name, EXTRA)
        _check(name, value, spec)
    return dict(fields)
