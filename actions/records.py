"""From a conversation's slots to the domain layer's records (cases and tickets), and the
resident's own settings (community, mobile with consent, warning topics, 退订).

The only place actions touch `casework`: it builds the details an officer needs from the
tracker, and opens cases and tickets through the domain service functions.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from rasa_sdk import Tracker
from sqlalchemy.orm import Session

from actions import parsing
from casework import cases, conversations, db, residents, subscriptions
from casework.gazetteer import STREETS, Place, match_place
from casework.vocabulary import WARNING_TOPIC_LABELS

logger = logging.getLogger(__name__)

CASE_INTENTS = {
    "report_fraud": "fraud_suspicion",
    "emergency": "emergency",
    "legal_help": "legal_help",
    "complain_noise": "noise_complaint",
    "complain_dog": "dog_complaint",
}
CATEGORY_LABELS = cases.CATEGORY_LABELS
# The slots an officer needs for each category, in the order a summary shows them.
CATEGORY_SLOTS = {
    "fraud_suspicion": (
        "money_lost",
        "amount",
        "event_time",
        "payment_method",
        "scammer_contact",
        "fraud_type",
        "platform",
    ),
    "emergency": ("location",),
    "legal_help": ("legal_topic",),
    "noise_complaint": ("location", "noise_source", "noise_ongoing", "event_time"),
    "dog_complaint": ("location", "dog_incident", "bitten", "injury"),
    "faq": (),
    "other": (),
}
INTAKE_SLOTS = sorted(
    {slot for slots in CATEGORY_SLOTS.values() for slot in slots} | {"wants_officer", "dissuaded"}
)


@lru_cache(maxsize=1)
def _schema_ready() -> bool:
    """Migrate once per process, the first time an action needs the database."""
    db.migrate()
    return True


def case_category(tracker: Tracker) -> str:
    """The category of what the resident is talking about: the intake's, else the latest
    case intent's, else 'other'."""
    category = tracker.get_slot("case_category")
    if category:
        return str(category)
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            intent = (event.get("parse_data") or {}).get("intent", {}).get("name")
            if intent in CASE_INTENTS:
                return CASE_INTENTS[intent]
    return "other"


def trigger_text(tracker: Tracker, category: str) -> str:
    """The resident's message that started this matter (or the latest one)."""
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        intent = (event.get("parse_data") or {}).get("intent", {}).get("name")
        if CASE_INTENTS.get(intent) == category:
            return str(event.get("text") or "")
    return str(tracker.latest_message.get("text") or "")


def details_for(tracker: Tracker, category: str) -> dict[str, Any]:
    """Collected slots for the category plus their normalised forms."""
    details: dict[str, Any] = {slot: tracker.get_slot(slot) for slot in CATEGORY_SLOTS[category]}
    amount = tracker.get_slot("amount")
    if category == "fraud_suspicion" and amount is not None:
        yuan = amount if isinstance(amount, int | float) else parsing.parse_amount(str(amount))
        details["amount_yuan"] = yuan
    when = tracker.get_slot("event_time")
    if when and "event_time" in details:
        details["event_time_iso"] = parsing.parse_time(str(when))  # Beijing time
    contact = " ".join(str(tracker.get_slot(s) or "") for s in ("scammer_contact",))
    if category == "fraud_suspicion" and contact.strip():
        details["scammer_phones"] = parsing.find_phones(contact)
        details["scammer_accounts"] = parsing.find_bank_accounts(contact)
        # Kept but flagged: the officer checks these with the resident (parsing.py says why).
        details["unverified_accounts"] = parsing.unverified_accounts(details["scammer_accounts"])
    place = match_place(str(tracker.get_slot("location") or ""))
    if place is not None:
        details["street"], details["community"] = place.street, place.community
    details["first_message"] = trigger_text(tracker, category)
    return details


def summary_for(category: str, details: dict[str, Any]) -> str:
    """One line an officer reads in the queue: category, key facts, the resident's words."""
    facts = []
    if details.get("money_lost"):
        facts.append("已转账")
    if details.get("amount_yuan"):
        facts.append(f"{details['amount_yuan']:.0f}元")
    for key in (
        "fraud_type",
        "payment_method",
        "legal_topic",
        "location",
        "noise_source",
        "dog_incident",
    ):
        if details.get(key):
            facts.append(str(details[key]))
    if details.get("bitten"):
        facts.append("有人被咬")
    text = details.get("first_message", "")
    head = f"【{CATEGORY_LABELS[category]}】" + "｜".join(facts)
    return f"{head}：{text[:120]}" if text else head


def record_case(
    tracker: Tracker,
    *,
    category: str,
    priority: str,
    reason: str,
    desk: str | None = None,
    pause: bool = False,
) -> int:
    """Open (or update) the resident's case and return its id. With `pause`, the
    conversation is handed to officers: the gateway stops sending it to the bot."""
    _schema_ready()
    details = details_for(tracker, category)
    with db.session_scope() as session:
        case = cases.open_case(
            session=session,
            sender_id=tracker.sender_id,
            category=category,
            priority=priority,
            reason=reason,
            summary=summary_for(category, details),
            details=details,
            location=tracker.get_slot("location"),
            desk=desk,
        )
        case_id = int(case.id)
        _remember_community(session, tracker.sender_id, details)
        if pause:
            conversations.hand_to_officers(session=session, openid=tracker.sender_id)
    logger.info("case %s %s/%s for %s (%s)", case_id, category, priority, tracker.sender_id, reason)
    return case_id


def record_ticket(tracker: Tracker, *, category: str, kind: str) -> tuple[int, int | None]:
    """Record a diversion ticket for the governance platform. Returns (ticket id, id of the
    open ticket it duplicates, if any)."""
    _schema_ready()
    details = details_for(tracker, category)
    with db.session_scope() as session:
        ticket = cases.open_ticket(
            session=session,
            sender_id=tracker.sender_id,
            kind=kind,
            summary=summary_for(category, details),
            details=details,
            location=tracker.get_slot("location"),
            street=details.get("street"),
            community=details.get("community"),
        )
        ticket_id, linked_to = int(ticket.id), ticket.linked_to_id
        _remember_community(session, tracker.sender_id, details)
    logger.info(
        "ticket %s (%s) for %s%s",
        ticket_id,
        kind,
        tracker.sender_id,
        f", same as ticket {linked_to}" if linked_to else "",
    )
    return ticket_id, linked_to


# ------------------------------------------------------------------ where residents live and
# what they want to hear (我的社区, 退订): one small function per domain-service call.


def home_place(text: str, *, street: str | None = None) -> Place | None:
    """The street and community in a resident's answer. Besides the gazetteer's full names
    (`match_place`), a community's short name is enough once its street is known
    (骆驼街道 … "万景" → 万景社区), or when it is unique in the district (万景 → 万景社区)."""
    place = match_place(text)
    if place is not None and place.community:
        return place
    street = (place.street if place else None) or street
    candidates = STREETS.get(street, ()) if street else tuple(residents.COMMUNITIES)
    short = [c for c in candidates if len(_short(c)) >= 2 and _short(c) in text]
    if len(short) == 1:
        return Place(street=residents.street_of(short[0]), community=short[0])
    return place


def _short(community: str) -> str:
    return community.removesuffix("社区").removesuffix("村")


def communities_of(street: str) -> tuple[str, ...]:
    return STREETS.get(street, ())


def normalise_mobile(text: str) -> str | None:
    """The mainland mobile number in `text` (digits only), or None."""
    for candidate in parsing.find_phones(text) or [text]:
        try:
            return residents.normalise_phone(candidate, mobile_only=True)
        except residents.PhoneError:
            continue
    return None


def save_community(tracker: Tracker, community: str) -> None:
    _schema_ready()
    with db.session_scope() as session:
        residents.set_profile(session=session, openid=tracker.sender_id, community=community)
    logger.info("community %s for %s", community, tracker.sender_id)


def save_mobile(tracker: Tracker, mobile: str) -> str:
    """Keep the mobile the resident agreed to give (consent recorded with its time);
    returns it masked."""
    _schema_ready()
    with db.session_scope() as session:
        profile = residents.set_profile(
            session=session, openid=tracker.sender_id, mobile=mobile, consent=True
        )
    logger.info("mobile %s registered with consent by %s", profile.mobile_masked, tracker.sender_id)
    return str(profile.mobile_masked)


def withdraw_mobile(tracker: Tracker) -> bool:
    """撤回手机号授权: delete the registered mobile; False when there was none."""
    _schema_ready()
    with db.session_scope() as session:
        done = residents.withdraw_mobile(session=session, openid=tracker.sender_id)
    logger.info("mobile withdrawn by %s: %s", tracker.sender_id, done.withdrawn)
    return done.withdrawn


def choose_topics(tracker: Tracker, topics: list[str]) -> None:
    _schema_ready()
    with db.session_scope() as session:
        subscriptions.choose_topics(session=session, openid=tracker.sender_id, topics=topics)
    logger.info("warning topics %s for %s", ",".join(topics), tracker.sender_id)


def opt_out(tracker: Tracker) -> None:
    _schema_ready()
    with db.session_scope() as session:
        subscriptions.opt_out(session=session, openid=tracker.sender_id)
    logger.info("warnings opted out by %s", tracker.sender_id)


def opt_in(tracker: Tracker) -> None:
    _schema_ready()
    with db.session_scope() as session:
        subscriptions.opt_in(session=session, openid=tracker.sender_id)
    logger.info("warnings opted in by %s", tracker.sender_id)


def resident_community(tracker: Tracker) -> str | None:
    """The community the resident registered, as 街道+社区, or None."""
    _schema_ready()
    with db.session_scope() as session:
        profile = residents.profile(session=session, openid=tracker.sender_id)
    return _community_label(profile.street, profile.community)


def preference_summary(tracker: Tracker) -> dict[str, str]:
    """What is stored now, in the words of the summary the resident reads."""
    _schema_ready()
    with db.session_scope() as session:
        profile = residents.profile(session=session, openid=tracker.sender_id)
        wanted = subscriptions.preferences(session=session, openid=tracker.sender_id)
    if wanted.opted_out:
        topics = "已退订（回复“订阅提醒”可恢复）"
    else:
        labels = "、".join(WARNING_TOPIC_LABELS[code] for code in wanted.topics)
        topics = labels if wanted.chosen else f"全部（{labels}）"
    return {
        "community": _community_label(profile.street, profile.community) or "未设置",
        "topics": topics,
        "mobile": profile.mobile_masked or "未登记",
    }


def _community_label(street: str | None, community: str | None) -> str | None:
    if not community:
        return None
    return f"{street or ''}{community}"


def _remember_community(session: Session, openid: str, details: dict[str, Any]) -> None:
    """An intake's address named a community and the resident has none yet: it is very
    likely where they live or spend their days, and their warnings should be local."""
    community = details.get("community")
    if not community or residents.profile(session=session, openid=openid).community:
        return
    residents.set_profile(session=session, openid=openid, community=community)
    logger.info("community %s for %s, from an intake's address", community, openid)
