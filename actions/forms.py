"""Form validation: normalise what residents answer and decide what to ask next.

Each `Validate<X>Form` belongs to the form `<x>_form` of the domain. `extract_<slot>`
methods read answers the NLU has no entity for (keywords in free text), so a resident who
says several things in one message is not asked again.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions import parsing, records

UNKNOWN = "不清楚"

FRAUD_RESPONSE_KEYS = {
    "刷单返利": "task_rebate",
    "虚假投资理财": "investment",
    "虚假网络贷款": "loan",
    "冒充电商物流客服": "fake_service",
    "冒充公检法": "fake_police",
    "虚假征信": "credit",
    "网络游戏虚假交易": "game",
    "网络婚恋交友": "romance",
    "冒充领导熟人": "fake_boss",
    "冒充军警购物": "fake_military",
}
LEGAL_RESPONSE_KEYS = {
    "劳动欠薪": "labor",
    "婚姻家庭": "family",
    "借贷债务": "debt",
    "房屋租赁": "lease",
    "交通事故赔偿": "traffic",
    "消费维权": "consumer",
    "继承": "inheritance",
    "人身损害": "injury",
}


def latest_text(tracker: Tracker) -> str:
    return str(tracker.latest_message.get("text") or "")


def shared_location(tracker: Tracker) -> str | None:
    """A location the resident shared in WeChat (message metadata from the gateway)."""
    metadata = tracker.latest_message.get("metadata") or {}
    location = metadata.get("location") if isinstance(metadata, dict) else None
    if not isinstance(location, dict):
        return None
    label = location.get("label") or ""
    lat, lng = location.get("lat"), location.get("lng")
    coords = f"({lat},{lng})" if lat is not None and lng is not None else ""
    return f"{label}{coords}" or None


def address_in_message(tracker: Tracker) -> str | None:
    """All address entities of the latest message joined in order: the NLU often splits
    "庄市街道兴庄社区" into two, and Rasa's own mapping would keep only the last."""
    entities = [
        e for e in tracker.latest_message.get("entities") or [] if e.get("entity") == "address"
    ]
    if len(entities) < 2:
        return None
    entities.sort(key=lambda e: e.get("start", 0))
    return "".join(str(e.get("value", "")) for e in entities)


def whole_answer(tracker: Tracker, slot: str, value: Any, limit: int = 40) -> Any:
    """When the resident answers the question for `slot`, keep the whole short answer: the
    NLU's entity may be only part of it (昨天晚上 of 昨天晚上八点, 庄市街道 of
    庄市街道兴庄社区)."""
    text = latest_text(tracker).strip()
    answering = tracker.get_slot("requested_slot") == slot
    if answering and isinstance(value, str) and value in text and len(text) <= limit:
        return text
    return value


class LocationMixin:
    """`location` from a shared WeChat location (beats any typed text), else the whole
    address the resident typed."""

    async def extract_location(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        location = shared_location(tracker) or address_in_message(tracker)
        return {"location": location} if location else {}

    async def validate_location(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if shared_location(tracker):
            return {"location": value}
        return {"location": whole_answer(tracker, "location", value)}


class EventTimeMixin:
    """When the resident answers "when?", keep the whole answer: the NLU's time entity
    may be only part of it (昨天晚上 of 昨天晚上八点)."""

    async def validate_event_time(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"event_time": whole_answer(tracker, "event_time", value)}


class ValidateFraudForm(EventTimeMixin, FormValidationAction):
    def name(self) -> str:
        return "validate_fraud_form"

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        if tracker.get_slot("money_lost") is False:
            # Not paid yet: what kind of scam and who, then dissuade and offer an officer.
            return ["money_lost", "fraud_type", "scammer_contact", "wants_officer"]
        # Paid (or not known yet): everything anti-fraud needs for a stop-payment.
        return [
            "money_lost",
            "amount",
            "event_time",
            "payment_method",
            "scammer_contact",
            "fraud_type",
        ]

    async def extract_money_lost(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("money_lost") is not None:
            return {}
        lost = parsing.money_lost_from_text(latest_text(tracker))
        return {} if lost is None else {"money_lost": lost}

    async def extract_amount(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        # The NLU does not always tag the amount (五千块 in a long sentence); the text
        # itself says it.
        if tracker.get_slot("amount") is not None:
            return {}
        yuan = parsing.parse_amount(latest_text(tracker), require_unit=True)
        return {} if yuan is None else {"amount": yuan}

    async def extract_payment_method(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("payment_method"):
            return {}
        method = parsing.payment_method_from_text(latest_text(tracker))
        return {"payment_method": method} if method else {}

    async def extract_scammer_contact(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        # A number the resident gives at any point of the intake is kept (added to any
        # contact already known), even after the question was answered with "不知道".
        text = latest_text(tracker)
        found = parsing.find_phones(text) + parsing.find_bank_accounts(text)
        if not found:
            return {}
        known = str(tracker.get_slot("scammer_contact") or "")
        # Drop "不知道" and fragments of these numbers (the NLU may have tagged "678").
        kept = [
            part
            for part in known.split()
            if part not in (UNKNOWN, "不知道") and not any(part in number for number in found)
        ]
        contact = " ".join([*kept, *found])
        return {} if contact == known else {"scammer_contact": contact}

    async def validate_scammer_contact(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        # The tokenizer can cut a long number into pieces (139 / 12345 / 678) and the NLU
        # tag only one; the numbers in the message itself are the reliable source.
        text = latest_text(tracker)
        found = parsing.find_phones(text) + parsing.find_bank_accounts(text)
        if not found or (isinstance(value, str) and all(n in value for n in found)):
            return {"scammer_contact": value}
        return {"scammer_contact": " ".join(found)}

    async def extract_fraud_type(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("fraud_type"):
            return {}
        fraud_type = parsing.fraud_type_from_text(latest_text(tracker))
        return {"fraud_type": fraud_type} if fraud_type else {}

    async def validate_money_lost(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is not True:
            return {"money_lost": value, "case_category": "fraud_suspicion"}
        # Minutes matter: advise the stop-payment and alert anti-fraud before asking more.
        dispatcher.utter_message(response="utter_stop_payment_now")
        case_id = records.record_case(
            tracker, category="fraud_suspicion", priority="urgent", reason="money_lost"
        )
        return {"money_lost": True, "case_id": case_id, "case_category": "fraud_suspicion"}

    async def validate_amount(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value == UNKNOWN or isinstance(value, int | float):
            return {"amount": value}
        yuan = parsing.parse_amount(str(value))
        # Keep the resident's words when they are not a number: an officer can read them.
        return {"amount": yuan if yuan is not None else str(value)}

    async def validate_payment_method(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"payment_method": parsing.payment_method_from_text(str(value)) or str(value)}

    async def validate_fraud_type(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value in FRAUD_RESPONSE_KEYS or value == UNKNOWN:
            return {"fraud_type": value}
        return {"fraud_type": parsing.fraud_type_from_text(str(value)) or str(value)}

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        events = await super().run(dispatcher, tracker, domain)
        slots = {**tracker.slots, **{e["name"]: e["value"] for e in events if e["event"] == "slot"}}
        ready = slots.get("fraud_type") and slots.get("scammer_contact")
        if slots.get("money_lost") is False and ready and not slots.get("dissuaded"):
            # Not paid yet and we know enough: explain this scam before offering an officer.
            key = FRAUD_RESPONSE_KEYS.get(str(slots["fraud_type"]), "general")
            dispatcher.utter_message(response=f"utter_dissuade_{key}")
            events.append(SlotSet("dissuaded", True))
        return events


class ValidateNoiseForm(LocationMixin, EventTimeMixin, FormValidationAction):
    def name(self) -> str:
        return "validate_noise_form"

    async def extract_noise_ongoing(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        # "还在吵" answers "现在还在吵吗？" even though the NLU hears a noise complaint.
        if tracker.get_slot("requested_slot") != "noise_ongoing":
            return {}
        if tracker.get_slot("noise_ongoing") is not None:
            return {}
        ongoing = parsing.ongoing_from_text(latest_text(tracker))
        return {} if ongoing is None else {"noise_ongoing": ongoing}

    async def validate_noise_source(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"noise_source": str(value), "case_category": "noise_complaint"}


class ValidateDogForm(LocationMixin, FormValidationAction):
    def name(self) -> str:
        return "validate_dog_form"

    async def extract_bitten(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("bitten") is not None:
            return {}
        bitten = parsing.bitten_from_text(latest_text(tracker))
        return {} if bitten is None else {"bitten": bitten}

    async def validate_bitten(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is True:
            # Rabies advice cannot wait for the rest of the questions.
            dispatcher.utter_message(response="utter_rabies_advice")
        return {"bitten": value, "case_category": "dog_complaint"}


class ValidateLegalForm(FormValidationAction):
    def name(self) -> str:
        return "validate_legal_form"

    async def extract_legal_topic(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("legal_topic"):
            return {}
        topic = parsing.legal_topic_from_text(latest_text(tracker))
        return {"legal_topic": topic} if topic else {}

    async def validate_legal_topic(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        topic = value if value in LEGAL_RESPONSE_KEYS else parsing.legal_topic_from_text(str(value))
        dispatcher.utter_message(
            response=f"utter_legal_guidance_{LEGAL_RESPONSE_KEYS.get(topic or '', 'general')}"
        )
        dispatcher.utter_message(response="utter_legal_12348")
        return {"legal_topic": topic or str(value), "case_category": "legal_help"}


class ValidateEmergencyForm(LocationMixin, FormValidationAction):
    def name(self) -> str:
        return "validate_emergency_form"
