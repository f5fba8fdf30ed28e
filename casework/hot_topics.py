"""热点 — what residents wrote about this week, where, and what is rising (issue 11).

For one Beijing-time week (Monday 00:00 to Monday 00:00, Asia/Shanghai) and the week
before it, over residents' own words (inbound text and voice messages; events, images
and menu taps are not words):

- categories (the triage category of each parsed message), FAQ topics (the answer the
  bot chose, `media.parse.topic`) and scam types (the `fraud_type` entity, normalised by
  the entity synonyms), per street and per community and for the whole district;
- keywords: jieba's TF-IDF (`jieba.analyse`, its bundled IDF table, the project's user
  dictionary) over the group's messages with phone, ID-card and bank-card numbers masked
  first and anything containing a digit or a mask dropped — a keyword is a word, never a
  number;
- risers: a (place, category / FAQ topic / scam type) whose count at least
  doubled week over week and reached `RISER_MIN` — "刷单返利 doubled in 骆驼街道".

A resident's place is the street and community of their latest case, else the place
named in the last location they shared (`gazetteer.match_place`), else 未定位.
Aggregates only: every console reader may see them, like the other metrics.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from casework import gazetteer
from casework.cases import CATEGORY_LABELS
from casework.clock import BEIJING, beijing, utcnow
from casework.handling import check_reader
from casework.models import Case, Conversation, Message, User
from casework.privacy import mask_pii
from casework.triage import category_of

UNLOCATED = "未定位"
RISER_FACTOR = 2  # "suddenly doubling"
RISER_MIN = 3  # below this a doubling is noise (1 → 2)
TOP_KEYWORDS = 10
TOP_TOPICS = 10
WORDS_KINDS = ("text", "voice")
USER_DICT = Path(__file__).resolve().parent.parent / "nlu_data" / "jieba" / "userdict.txt"
# Words that say nothing about a topic, on top of jieba's own stop words.
STOP_WORDS = frozenset(
    "请问 你好 您好 我们 你们 他们 什么 怎么 怎么办 可以 需要 一下 这个 那个 现在 已经 "
    "还是 就是 没有 不是 知道 觉得 谢谢 麻烦 警官 民警 帮忙 问题 情况 时候 一个 自己 "
    "应该 能不能 是不是 有没有 为什么 如果 因为 所以 但是 然后 还有 这样 那样 对方 "
    "别人 东西 事情 今天 昨天 刚才 一直".split()
)
_NOT_A_WORD = re.compile(r"[\d*＊]")


class Keyword(BaseModel):
    word: str
    weight: float


class GroupTopics(BaseModel):
    """One place's week: how many messages, and about what."""

    place: str  # 全区, a street, or "street community"
    street: str | None = None
    community: str | None = None
    messages: int
    categories: dict[str, int]
    faq_topics: dict[str, int]
    fraud_types: dict[str, int]
    keywords: list[Keyword]


class Riser(BaseModel):
    place: str
    kind: str  # category | faq_topic | fraud_type
    key: str
    label: str
    this_week: int
    last_week: int


class HotTopicsPublic(BaseModel):
    week: str  # ISO week, e.g. 2026-W48
    since: datetime  # Beijing time
    until: datetime
    messages: int
    district: GroupTopics
    streets: list[GroupTopics]
    communities: list[GroupTopics]
    risers: list[Riser]


@dataclass(frozen=True)
class _Said:
    """One inbound message, reduced to what the report counts."""

    street: str | None
    community: str | None
    category: str | None
    topic: str | None
    fraud_types: tuple[str, ...]
    text: str  # masked


# ---- the week -------------------------------------------------------------------------------


def week_bounds(
    week: str | None = None, *, now: datetime | None = None
) -> tuple[str, datetime, datetime]:
    """(ISO week, since, until) in Beijing time. `week` "2026-W48"; by default the last
    complete week before `now`."""
    if week is None:
        today = beijing(now or utcnow()).date()
        monday = today - timedelta(days=today.weekday() + 7)
    else:
        match = re.fullmatch(r"(\d{4})-W(\d{1,2})", week.strip())
        if match is None:
            raise ValueError(f"week {week!r}: expected the ISO form 2026-W48")
        try:
            monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError as error:
            raise ValueError(f"week {week!r}: {error}") from error
    since = datetime.combine(monday, time.min, tzinfo=BEIJING)
    year, number, _ = monday.isocalendar()
    return f"{year}-W{number:02d}", since, since + timedelta(days=7)


# ---- reading --------------------------------------------------------------------------------


def _places(session: Session, conversation_ids: Iterable[int]) -> dict[int, gazetteer.Place]:
    """Each conversation's place: its resident's latest located case, else its last
    shared location, else nothing."""
    ids = set(conversation_ids)
    if not ids:
        return {}
    conversations = session.execute(
        select(Conversation.id, Conversation.openid, Conversation.location_label).where(
            Conversation.id.in_(ids)
        )
    ).all()
    by_openid = {row.openid: row.id for row in conversations}
    places: dict[int, gazetteer.Place] = {}
    located = session.execute(
        select(Case.sender_id, Case.street, Case.community)
        .where(Case.sender_id.in_(by_openid), Case.street.is_not(None))
        .order_by(Case.created_at)
    ).all()
    for row in located:  # the latest case wins
        places[by_openid[row.sender_id]] = gazetteer.Place(row.street, row.community)
    for row in conversations:
        if row.id not in places and row.location_label:
            place = gazetteer.match_place(row.location_label)
            if place is not None:
                places[row.id] = place
    return places


def _fraud_types(parse: dict[str, Any]) -> tuple[str, ...]:
    values = {
        str(entity.get("value"))
        for entity in parse.get("entities") or []
        if entity.get("entity") == "fraud_type" and entity.get("value")
    }
    return tuple(sorted(values))


def _said(session: Session, since: datetime, until: datetime) -> list[_Said]:
    # Compared in UTC: SQLite stores the UTC wall time without its zone.
    since, until = since.astimezone(timezone.utc), until.astimezone(timezone.utc)
    rows = session.execute(
        select(Message.conversation_id, Message.content, Message.intent, Message.media).where(
            Message.direction == "in",
            Message.msg_type.in_(WORDS_KINDS),
            Message.redacted_at.is_(None),
            Message.created_at >= since,
            Message.created_at < until,
        )
    ).all()
    places = _places(session, (row.conversation_id for row in rows))
    said = []
    for row in rows:
        place = places.get(row.conversation_id)
        parse = (row.media or {}).get("parse") or {}
        said.append(
            _Said(
                street=place.street if place else None,
                community=place.community if place else None,
                category=category_of(row.intent) if row.intent else None,
                topic=parse.get("topic"),
                fraud_types=_fraud_types(parse),
                text=mask_pii(row.content or ""),
            )
        )
    return said


# ---- counting -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _tfidf() -> Any:
    """jieba's TF-IDF with the project's dictionary, on its own tokenizer (the global
    one stays untouched)."""
    import jieba
    import jieba.analyse

    extractor = jieba.analyse.TFIDF()
    tokenizer = jieba.Tokenizer()
    if USER_DICT.exists():
        tokenizer.load_userdict(str(USER_DICT))
    extractor.tokenizer = tokenizer
    extractor.stop_words = set(extractor.stop_words) | STOP_WORDS
    return extractor


def keywords(texts: Iterable[str], top: int = TOP_KEYWORDS) -> list[Keyword]:
    """The group's keywords by TF-IDF; words only (nothing with a digit or a mask)."""
    text = "\n".join(texts)
    if not text.strip():
        return []
    found = []
    for word, weight in _tfidf().extract_tags(text, topK=top * 3, withWeight=True):
        if len(word) >= 2 and not _NOT_A_WORD.search(word):
            found.append(Keyword(word=word, weight=round(float(weight), 4)))
        if len(found) == top:
            break
    return found


def _group(place: str, street: str | None, community: str | None, said: list[_Said]) -> GroupTopics:
    categories = Counter(s.category for s in said if s.category)
    topics = Counter(s.topic for s in said if s.topic)
    frauds = Counter(f for s in said for f in s.fraud_types)
    return GroupTopics(
        place=place,
        street=street,
        community=community,
        messages=len(said),
        categories=dict(categories.most_common()),
        faq_topics=dict(topics.most_common(TOP_TOPICS)),
        fraud_types=dict(frauds.most_common()),
        keywords=keywords(s.text for s in said),
    )


def _street_key(said: _Said) -> str:
    return said.street or UNLOCATED


def _community_key(said: _Said) -> tuple[str, str]:
    return (said.street or UNLOCATED, said.community or UNLOCATED)


def _counts(group: GroupTopics) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for kind, table in (
        ("category", group.categories),
        ("faq_topic", group.faq_topics),
        ("fraud_type", group.fraud_types),
    ):
        counts.update({(kind, key): n for key, n in table.items()})
    return counts


def _label(kind: str, key: str) -> str:
    if kind == "category":
        return CATEGORY_LABELS.get(key, key)
    return key


def risers(this_week: list[GroupTopics], last_week: list[GroupTopics]) -> list[Riser]:
    """What at least doubled (and reached RISER_MIN) in the same place week over week."""
    before = {group.place: _counts(group) for group in last_week}
    found = []
    for group in this_week:
        previous = before.get(group.place, {})
        for (kind, key), count in _counts(group).items():
            last = previous.get((kind, key), 0)
            if count >= RISER_MIN and count >= RISER_FACTOR * last:
                found.append(
                    Riser(
                        place=group.place,
                        kind=kind,
                        key=key,
                        label=_label(kind, key),
                        this_week=count,
                        last_week=last,
                    )
                )
    return sorted(found, key=lambda r: (-(r.this_week - r.last_week), r.place, r.kind, r.key))


def _groups(said: list[_Said], *, keyed_by_community: bool) -> list[GroupTopics]:
    grouped: dict[Any, list[_Said]] = defaultdict(list)
    for item in said:
        if keyed_by_community and item.community is None:
            continue  # counted in its street (or 未定位) already: no "未定位 未定位" row
        grouped[_community_key(item) if keyed_by_community else _street_key(item)].append(item)
    groups = []
    for key, items in grouped.items():
        if keyed_by_community:
            street, community = key
            groups.append(_group(f"{street} {community}", street, community, items))
        else:
            groups.append(_group(key, key, None, items))
    return sorted(groups, key=lambda g: (g.street == UNLOCATED, -g.messages, g.place))


def compute(
    *, session: Session, week: str | None = None, now: datetime | None = None
) -> HotTopicsPublic:
    """The hot topics of `week` (default: the last complete one)."""
    name, since, until = week_bounds(week, now=now)
    said = _said(session, since, until)
    before = _said(session, since - timedelta(days=7), since)
    streets = _groups(said, keyed_by_community=False)
    communities = _groups(said, keyed_by_community=True)
    district = _group("全区", None, None, said)
    last_district = _group("全区", None, None, before)
    found = risers(
        [district, *streets, *communities],
        [
            last_district,
            *_groups(before, keyed_by_community=False),
            *_groups(before, keyed_by_community=True),
        ],
    )
    return HotTopicsPublic(
        week=name,
        since=since,
        until=until,
        messages=len(said),
        district=district,
        streets=streets,
        communities=communities,
        risers=found,
    )


def weekly(*, session: Session, user: User, week: str | None = None) -> HotTopicsPublic:
    """The hot topics for a console reader (aggregates and single words only)."""
    check_reader(user)
    return compute(session=session, week=week)
