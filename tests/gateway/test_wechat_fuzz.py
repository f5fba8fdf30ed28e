"""Property-based fuzzing of POST /wechat (issue 8): thousands of mutated, correctly signed
callbacks of every message and event type, in plain and in safe (AES) mode.

Every callback starts as what WeChat sends for one type; Hypothesis applies up to three
mutations, each of which the test knows to keep the callback well-formed (reordered or
extra fields, unicode text, an XML declaration …) or to break it (a required field
dropped, a field repeated or nested, a number out of range or not a number, a value too
long, control characters, broken XML, DOCTYPE and entities …). Then:

- never a 5xx, never an unhandled exception, never an error logged;
- a broken callback is a 4xx and stores nothing;
- a well-formed one is answered (200: a passive reply to its sender, or `success`) and
  stored exactly once, also when WeChat's retry sends it again.

On SQLite the main run; on PostgreSQL a smaller one. The counts are printed (`-s`).
"""

from __future__ import annotations

import html
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import xmltodict
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto

from casework import db
from casework.models import Message
from gateway import wechat_fields
from gateway.app import create_app
from tests.gateway.conftest import AES_KEY, APP_ID, TOKEN, gateway_settings, sign

CRYPTO = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
EXAMPLES = {("sqlite", "plain"): 1500, ("sqlite", "safe"): 1000}
EXAMPLES_ELSEWHERE = 250  # PostgreSQL: the same properties, a smaller run

# ------------------------------------------------------------------ what WeChat sends

# kinds: "id" (openids, [A-Za-z0-9_-]), "name" (MsgType, Event), "int", "float", "text"
REQ, OPT = True, False  # required by WeChat's protocol for that type, or optional


@dataclass
class Field:
    name: str
    value: str
    kind: str
    required: bool  # by the callback's original type
    raw: bool = False  # value is XML already (a nested element, a character reference)
    attribute: bool = False
    faults: list[str] = field(default_factory=list)  # why its value is not WeChat's

    def set(self, value: str, fault: str | None = None, *, raw: bool = False) -> None:
        """A new value replaces the old one, and whatever was wrong with it."""
        self.value, self.raw = value, raw
        self.faults = [fault] if fault else []


COMMON = {"ToUserName", "FromUserName", "CreateTime", "MsgType"}
OPENID, NOW, MSGID = "{OPENID}", "{NOW}", "{MSGID}"  # filled in per example


def _base(msg_type: str, event: str | None, extra: list[tuple[str, str, str, bool]]):
    fields = [
        ("ToUserName", "gh_jmt", "id", REQ),
        ("FromUserName", OPENID, "id", REQ),  # one resident per example
        ("CreateTime", NOW, "int", REQ),
        ("MsgType", msg_type, "name", REQ),
    ]
    if event is not None:
        fields.append(("Event", event, "name", REQ))
    fields += extra
    if msg_type != "event":
        known = msg_type in ("text", "voice", "location", "image", "link", "video", "shortvideo")
        fields.append(("MsgId", MSGID, "int", REQ if known else OPT))
    return fields


MEDIA = [("MediaId", "media-1", "text", REQ)]
BASES: dict[str, list[tuple[str, str, str, bool]]] = {
    "text": _base("text", None, [("Content", "身份证丢了怎么补办", "text", REQ)]),
    "voice": _base(
        "voice",
        None,
        [*MEDIA, ("Format", "amr", "text", REQ), ("Recognition", "楼上装修太吵了", "text", OPT)],
    ),
    "location": _base(
        "location",
        None,
        [
            ("Location_X", "29.950000", "float", REQ),
            ("Location_Y", "121.710000", "float", REQ),
            ("Scale", "15", "float", OPT),
            ("Label", "宁波市镇海区总浦桥社区", "text", OPT),
        ],
    ),
    "image": _base("image", None, [("PicUrl", "http://mmbiz.qpic.cn/a.jpg", "text", REQ), *MEDIA]),
    "link": _base(
        "link",
        None,
        [
            ("Title", "高额返利", "text", REQ),
            ("Description", "日赚500", "text", REQ),
            ("Url", "http://scam.example/a", "text", REQ),
        ],
    ),
    "video": _base("video", None, [*MEDIA, ("ThumbMediaId", "thumb-1", "text", REQ)]),
    "shortvideo": _base("shortvideo", None, [*MEDIA, ("ThumbMediaId", "thumb-1", "text", REQ)]),
    "file": _base("file", None, [("Title", "合同.pdf", "text", OPT)]),  # a type we do not know
    "subscribe": _base("event", "subscribe", [("EventKey", "", "text", OPT)]),
    "unsubscribe": _base("event", "unsubscribe", []),
    "click": _base("event", "CLICK", [("EventKey", "contact_officer", "text", REQ)]),
    "click_guide": _base("event", "CLICK", [("EventKey", "service_guide", "text", REQ)]),
    "view": _base("event", "VIEW", [("EventKey", "https://example.org/guide", "text", REQ)]),
    "scan": _base(
        "event", "SCAN", [("EventKey", "123", "text", REQ), ("Ticket", "gQH47joAAAAA", "text", OPT)]
    ),
    "location_event": _base(
        "event",
        "LOCATION",
        [
            ("Latitude", "29.950000", "float", REQ),
            ("Longitude", "121.710000", "float", REQ),
            ("Precision", "30.000000", "float", OPT),
        ],
    ),
    "template_result": _base(
        "event", "TEMPLATESENDJOBFINISH", [("Status", "success", "text", OPT)]
    ),
}

# ------------------------------------------------------------------ mutations

# XML's Char production: what may appear in a document at all.
XML_TEXT = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="\ufffe\uffff",
    min_codepoint=0x9,
).filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20)
FREE_TEXT = st.text(XML_TEXT, max_size=120)
ILLEGAL = st.sampled_from([chr(c) for c in (*range(0, 9), 0x0B, 0x0C, *range(0x0E, 0x20))])
NOT_NUMBERS = ["", "abc", "1e5", "nan", "inf", "-inf", " 12", "12 ", "١٢٣", "0x10", "1_000"]
NOT_NUMBERS += ["--1", "+-1", "1.2.3", "１２"]
OUT_OF_RANGE = {
    "CreateTime": ["0", "999999999", "4102444801", "99999999999999999999"],
    "MsgId": ["0", str(2**64), "-5"],
    "Location_X": ["90.5", "-90.000001", "400"],
    "Latitude": ["90.5", "-91"],
    "Location_Y": ["180.5", "-181"],
    "Longitude": ["180.5", "-181"],
    "Scale": ["101", "-1"],
    "Precision": ["-1", "99999999"],
}
EXTRA_NAMES = ["MsgDataId", "Idx", "bizmsgmenuid", "Unknown_Field", "X1"]


@dataclass
class Callback:
    fields: list[Field]
    document_faults: list[str] = field(default_factory=list)  # broken XML as a whole
    applied: list[str] = field(default_factory=list)
    required: set[str] = field(default_factory=set)  # by the original type
    type_changed: bool = False
    xml_decl: bool = False
    pretty: bool = False
    text_edits: list[Callable[[str], str]] = field(default_factory=list)

    def faults(self) -> list[str]:
        """Why WeChat would never send this (empty: a well-formed callback)."""
        found = list(self.document_faults)
        names = Counter(f.name for f in self.fields)
        found += [f"{name} twice" for name, n in names.items() if n > 1]
        for f in self.fields:
            found += f.faults + ([f"attribute on {f.name}"] if f.attribute else [])
        required = set(self.required)
        if self.type_changed:  # a type we do not know needs only the common fields
            required &= COMMON
        found += [f"{name} missing" for name in sorted(required - set(names))]
        return found

    def fill(self, openid: str, now: int, msg_id: int) -> None:
        for f in self.fields:
            f.value = {OPENID: openid, NOW: str(now), MSGID: str(msg_id)}.get(f.value, f.value)

    def render(self) -> str:
        parts = []
        for f in self.fields:
            bare = f.raw or (f.kind != "text" and set(f.value) <= set("0123456789.-"))
            value = f.value if bare else cdata(f.value)
            attribute = ' lang="zh"' if f.attribute else ""
            parts.append(f"<{f.name}{attribute}>{value}</{f.name}>")
        joiner = "\n  " if self.pretty else ""
        xml = f"<xml>{joiner}{joiner.join(parts)}{joiner and chr(10)}</xml>"
        if self.xml_decl:
            xml = '<?xml version="1.0" encoding="UTF-8"?>\n' + xml
        for edit in self.text_edits:
            xml = edit(xml)
        return xml


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _limit(name: str) -> int:
    return wechat_fields.FIELDS.get(name, wechat_fields.EXTRA).max_length


def _over_limit(name: str) -> int:
    """Longer than `name` may be in any message: a VIEW's EventKey is a URL (1,024)."""
    overrides = [
        spec.max_length
        for (_, field), spec in wechat_fields.EVENT_OVERRIDES.items()
        if field == name
    ]
    return max([_limit(name), *overrides])


@st.composite
def mutation(draw, callback: Callback) -> None:
    """Apply one mutation to `callback`, noting whether it breaks it."""
    fields = callback.fields
    kinds = [
        "drop",
        "duplicate",
        "nest",
        "attribute",
        "oversize",
        "not_a_number",
        "out_of_range",
        "unicode",
        "control",
        "empty",
        "extra",
        "reorder",
        "pretty",
        "xml_decl",
        "truncate",
        "doctype",
        "pi",
        "junk_after",
        "root",
        "event_case",
        "unknown_type",
        "huge",
    ]
    # Half the draws keep a callback well-formed, so that well-formed ones are many.
    benign = ["unicode", "extra", "reorder", "pretty", "xml_decl", "event_case", "unknown_type"]
    kind = draw(st.sampled_from(kinds + benign * 3))
    # The field it applies to, among those it can apply to (numbers for number faults).
    candidates = {
        "not_a_number": [i for i, f in enumerate(fields) if f.kind in ("int", "float")],
        "out_of_range": [i for i, f in enumerate(fields) if f.name in OUT_OF_RANGE],
    }.get(kind, list(range(len(fields))))
    if not candidates:
        return
    index = draw(st.sampled_from(candidates))
    target = fields[index]

    def document(why: str) -> None:
        callback.document_faults.append(why)

    if kind == "drop":
        del fields[index]
    elif kind == "duplicate":
        fields.insert(index, Field(**{**target.__dict__, "faults": list(target.faults)}))
    elif kind == "nest":
        inner = draw(st.sampled_from(["<b/>", "<a>1</a>", "x<a/>y", "<a><b>深</b></a>"]))
        target.set(inner, f"nested in {target.name}", raw=True)
    elif kind == "attribute":
        target.attribute = True
    elif kind == "oversize":
        if target.kind == "text":
            value = "长" * (_over_limit(target.name) + draw(st.integers(1, 500)))
        elif target.kind in ("id", "name"):
            value = "a" * (_over_limit(target.name) + draw(st.integers(1, 5000)))
        else:
            value = "1" * draw(st.integers(21, 400))
        target.set(value, f"{target.name} too long")
    elif kind == "not_a_number":
        if target.kind in ("int", "float"):
            bad = [*NOT_NUMBERS, *(["1.5"] if target.kind == "int" else [])]
            target.set(draw(st.sampled_from(bad)), f"{target.name} not a number")
    elif kind == "out_of_range":
        if target.name in OUT_OF_RANGE:
            value = draw(st.sampled_from(OUT_OF_RANGE[target.name]))
            target.set(value, f"{target.name} out of range")
    elif kind == "unicode":
        text = draw(FREE_TEXT)
        if target.kind == "text":
            target.set(text[: _limit(target.name)])
        else:  # ids, names and numbers are ASCII: one CJK character makes any of them bad
            target.set(text[:10] + "中", f"unicode in {target.name}")
    elif kind == "control":
        character = draw(ILLEGAL)
        value = "" if target.raw else target.value
        position = draw(st.integers(0, len(value)))
        fault = f"control character in {target.name}"
        if draw(st.booleans()):  # as a character reference: well-formed only if it were legal
            target.set(html.escape(value[:position]) + f"&#{ord(character)};", fault, raw=True)
        else:
            target.set(value[:position] + character + value[position:], fault)
    elif kind == "empty":
        target.set("", None if target.kind == "text" else f"empty {target.name}")
    elif kind == "extra":
        name = draw(st.sampled_from(EXTRA_NAMES))
        fields.insert(index, Field(name, draw(FREE_TEXT), "text", False))
    elif kind == "reorder":
        draw(st.randoms(use_true_random=False)).shuffle(fields)
    elif kind == "pretty":
        callback.pretty = True
    elif kind == "xml_decl":
        callback.xml_decl = True
    elif kind == "truncate":
        cut = draw(st.integers(1, 200))
        callback.text_edits.append(lambda xml: xml[: max(len(xml) - cut, 0)])
        document("truncated")
    elif kind == "doctype":
        prolog = draw(
            st.sampled_from(
                [
                    '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
                    '<!DOCTYPE xml [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>',
                    "<!DOCTYPE xml>",
                ]
            )
        )
        callback.text_edits.append(lambda xml: prolog + xml)
        document("doctype")
    elif kind == "pi":
        callback.text_edits.append(lambda xml: xml.replace("<xml>", "<xml><?php echo 1?>", 1))
        document("processing instruction")
    elif kind == "junk_after":
        callback.text_edits.append(lambda xml: xml + "<xml></xml>")
        document("a second root")
    elif kind == "root":
        callback.text_edits.append(
            lambda xml: xml.replace("<xml>", "<msg>").replace("</xml>", "</msg>")
        )
        document("another root")
    elif kind == "event_case":
        for f in fields:
            if f.name == "Event" and not f.raw:
                f.value = f.value.swapcase()  # WeChat's event names are case-insensitive
    elif kind == "unknown_type":
        for f in fields:
            if f.name == "MsgType":
                f.set("miniprogrampage")
                callback.type_changed = True
    elif kind == "huge":
        padding = Field("Padding", "填" * 30_000, "text", False)
        padding.faults.append("body over 64 KB")
        fields.append(padding)
    callback.applied.append(kind)


@st.composite
def callbacks(draw) -> tuple[str, Callback, bool]:
    """(type, the callback, whether WeChat retries it), the callback maybe mutated."""
    name = draw(st.sampled_from(sorted(BASES)))
    fields = [Field(*spec) for spec in BASES[name]]
    callback = Callback(fields, required={f.name for f in fields if f.required})
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        draw(mutation(callback))
    return name, callback, draw(st.booleans())


# ------------------------------------------------------------------ the harness


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def inbound_count() -> int:
    with db.session_scope() as session:
        query = select(func.count()).select_from(Message).where(Message.direction == "in")
        return session.execute(query).scalar_one()


def signed_request(xml: str, *, safe: bool, stamp: str, nonce: str, envelope_edit):
    """(query, body) as WeChat sends `xml`: signed, and in safe mode AES-encrypted."""
    params = {"signature": sign(stamp, nonce), "timestamp": stamp, "nonce": nonce}
    if not safe:
        return params, xml
    sealed = CRYPTO.encrypt_message(xml, nonce, stamp)
    msg_signature = xmltodict.parse(sealed)["xml"]["MsgSignature"]
    params |= {"encrypt_type": "aes", "msg_signature": msg_signature}
    return params, envelope_edit(sealed) if envelope_edit else sealed


def post(client: TestClient, params: dict[str, str], body: str):
    return client.post(
        "/wechat", params=params, content=body.encode("utf-8"), headers={"Content-Type": "text/xml"}
    )


ENVELOPE_EDITS: list[tuple[str, Callable[[str], str] | None]] = [
    ("intact", None),
    ("envelope truncated", lambda s: s[:-20]),
    (
        "Encrypt nested",
        lambda s: s.replace("<Encrypt><![CDATA[", "<Encrypt><a><![CDATA[").replace(
            "]]></Encrypt>", "]]></a></Encrypt>"
        ),
    ),
    (
        "Encrypt missing",
        lambda s: s.replace("<Encrypt>", "<Other>").replace("</Encrypt>", "</Other>"),
    ),
    ("Encrypt corrupted", lambda s: s.replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[AAAA")),
]


def assert_reply_to(sender: str, reply: str, *, safe: bool) -> None:
    """A passive text reply addressed to the resident (decryptable in safe mode)."""
    if safe:
        sealed = xmltodict.parse(reply)["xml"]
        reply = CRYPTO.decrypt_message(
            reply, sealed["MsgSignature"], sealed["TimeStamp"], sealed["Nonce"]
        )
    parsed = xmltodict.parse(reply)["xml"]
    assert (parsed["ToUserName"], parsed["MsgType"]) == (sender, "text")
    assert parsed["Content"]


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_no_mutated_signed_callback_is_a_5xx_and_every_good_one_is_answered_once(
    database_url, monkeypatch, rasa, error_log, mode
):
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    examples = EXAMPLES.get((backend, mode), EXAMPLES_ELSEWHERE)
    monkeypatch.setenv("WECHAT_MODE", mode)  # plain: no AES key at all
    app = create_app(
        gateway_settings(database_url, monkeypatch, aes=mode == "safe"),
        start_outbox=False,
        rasa=rasa,
        passive_budget=1.0,
        probe_actions=False,
    )
    tally: Counter[str] = Counter()
    mutations: Counter[str] = Counter()
    residents = itertools.count(1)
    nonces = itertools.count(10**8)  # Hypothesis seeds `random` alike for every example
    msg_ids = itertools.count(random.Random(mode).randrange(10**17, 10**18))
    safe = mode == "safe"

    with TestClient(app) as client:
        app.state.inbound.rate_limiter.limit = 10**9  # not what is tested here

        @settings(
            max_examples=examples,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            case=callbacks(),
            envelope=st.sampled_from(ENVELOPE_EDITS[:1] * 6 + ENVELOPE_EDITS[1:])
            if safe
            else st.just(ENVELOPE_EDITS[0]),
        )
        def check(case, envelope):
            kind, callback, retried = case
            now = int(time.time())
            callback.fill(f"fz-{mode}-{next(residents)}", now, next(msg_ids))
            xml = callback.render()
            faults = callback.faults()
            if envelope[1] is not None:
                faults.append(envelope[0])
            params, body = signed_request(
                xml,
                safe=safe,
                stamp=str(now),
                nonce=str(next(nonces)),
                envelope_edit=envelope[1],
            )
            before = inbound_count()
            answer = post(client, params, body)
            tally["inputs"] += 1
            tally[f"status {answer.status_code}"] += 1
            mutations.update(callback.applied)
            assert answer.status_code < 500, (kind, callback.applied, answer.text)
            if faults:
                assert 400 <= answer.status_code < 500, (kind, faults, answer.text, xml[:300])
                assert inbound_count() == before, (kind, faults)
                return
            assert answer.status_code == 200, (kind, callback.applied, answer.text, xml[:500])
            assert inbound_count() == before + 1, (kind, callback.applied)
            if answer.text != "success":
                sender = next(f.value for f in callback.fields if f.name == "FromUserName")
                assert_reply_to(sender, answer.text, safe=safe)
            tally["well-formed"] += 1
            if retried:  # WeChat's retry: the very same request again
                again = post(client, params, body)
                tally["inputs"] += 1
                tally["retries"] += 1
                assert (again.status_code, again.text == "success") == (
                    200,
                    answer.text == "success",
                ), again.text
                assert inbound_count() == before + 1, (kind, "a retry stored twice")

        check()
    server_errors = sum(n for key, n in tally.items() if key.startswith("status 5"))
    print(
        f"\nfuzz {backend}/{mode}: {tally['inputs']} inputs, {server_errors} 5xx; "
        f"{dict(sorted(tally.items()))}"
    )
    print(f"mutations: {dict(mutations.most_common())}")
    assert tally["well-formed"] > examples // 5  # the generator is not all breakage
    assert not [r for r in error_log.records if r.name.startswith(("gateway", "casework"))]
