"""What happens when an intake is complete, cancelled, or needs a human.

Hand-offs record a case through the domain layer and pause the conversation
(`ConversationPaused`): from then on an officer owns it. Non-police noise and dog matters
become diversion tickets for the governance platform and the bot carries on.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import records

logger = logging.getLogger(__name__)


def reset_intake() -> list[EventType]:
    """Forget the finished intake so the next one starts clean (the case keeps the data)."""
    slots = [*records.INTAKE_SLOTS, "case_category", "requested_slot"]
    return [SlotSet(slot, None) for slot in slots]


def hand_off(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    *,
    category: str,
    priority: str,
    reason: str,
    response: str,
    desk: str | None = None,
) -> list[EventType]:
    """Record the case, tell the resident, and give the conversation to the officers."""
    case_id = records.record_case(
        tracker, category=category, priority=priority, reason=reason, desk=desk, pause=True
    )
    dispatcher.utter_message(response=response)
    return [
        ActiveLoop(None),
        *reset_intake(),
        SlotSet("case_id", case_id),
        ConversationPaused(),
    ]


def divert(
    dispatcher: CollectingDispatcher, tracker: Tracker, *, category: str, kind: str, response: str
) -> list[EventType]:
    """Record a ticket for the governance platform and tell the resident its number — or,
    when the same problem at the same place is already open, that it is being handled."""
    ticket_id, linked_to = records.record_ticket(tracker, category=category, kind=kind)
    if linked_to is not None:
        dispatcher.utter_message(response="utter_ticket_linked", ticket_id=linked_to)
    else:
        dispatcher.utter_message(response=response, ticket_id=ticket_id)
    return [*reset_intake(), SlotSet("ticket_id", linked_to or ticket_id)]


class ActionSubmitFraud(Action):
    def name(self) -> str:
        return "action_submit_fraud"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if tracker.get_slot("money_lost"):
            return hand_off(
                dispatcher,
                tracker,
                category="fraud_suspicion",
                priority="urgent",
                reason="money_lost",
                response="utter_fraud_handed_over",
            )
        if tracker.get_slot("wants_officer"):
            return hand_off(
                dispatcher,
                tracker,
                category="fraud_suspicion",
                priority="normal",
                reason="resident_request",
                response="utter_handoff",
            )
        # Not paid, no officer wanted: keep the scammer's contact for the anti-fraud desk.
        case_id = records.record_case(
            tracker, category="fraud_suspicion", priority="low", reason="dissuaded"
        )
        dispatcher.utter_message(response="utter_fraud_recorded")
        return [*reset_intake(), SlotSet("case_id", case_id)]


class ActionSubmitNoise(Action):
    def name(self) -> str:
        return "action_submit_noise"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        return divert(
            dispatcher,
            tracker,
            category="noise_complaint",
            kind="noise",
            response="utter_noise_ticket",
        )


class ActionSubmitDog(Action):
    def name(self) -> str:
        return "action_submit_dog"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if tracker.get_slot("bitten"):
            # A bite is a police matter (and a health one): hand it to the officer.
            return hand_off(
                dispatcher,
                tracker,
                category="dog_complaint",
                priority="high",
                reason="dog_bite",
                response="utter_dog_bite_handed_over",
            )
        return divert(
            dispatcher, tracker, category="dog_complaint", kind="dog", response="utter_dog_ticket"
        )


class ActionSubmitLegal(Action):
    def name(self) -> str:
        return "action_submit_legal"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if tracker.get_slot("wants_officer"):
            return hand_off(
                dispatcher,
                tracker,
                category="legal_help",
                priority="normal",
                reason="resident_request",
                response="utter_handoff",
            )
        dispatcher.utter_message(response="utter_anything_else")
        return reset_intake()


class ActionEmergencyAlert(Action):
    """Alert the duty officer at once, before asking anything."""

    def name(self) -> str:
        return "action_emergency_alert"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        case_id = records.record_case(
            tracker, category="emergency", priority="urgent", reason="emergency"
        )
        return [SlotSet("case_id", case_id), SlotSet("case_category", "emergency")]


class ActionSubmitEmergency(Action):
    def name(self) -> str:
        return "action_submit_emergency"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        return hand_off(
            dispatcher,
            tracker,
            category="emergency",
            priority="urgent",
            reason="emergency",
            response="utter_emergency_handed_over",
        )


class ActionHandoff(Action):
    """The resident asked for a human (找民警), at any point of the conversation."""

    def name(self) -> str:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        category = records.case_category(tracker)
        urgent = category == "emergency" or (
            category == "fraud_suspicion" and tracker.get_slot("money_lost") is True
        )
        return hand_off(
            dispatcher,
            tracker,
            category=category,
            priority="urgent" if urgent else "normal",
            reason="resident_request",
            response="utter_handoff_urgent" if urgent else "utter_handoff",
        )


class ActionDefaultFallback(Action):
    """The two-stage fallback failed twice: a human reads it instead of guessing again."""

    def name(self) -> str:
        return "action_default_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        return hand_off(
            dispatcher,
            tracker,
            category=records.case_category(tracker),
            priority="normal",
            reason="fallback",
            response="utter_handoff_fallback",
        )


class ActionCancelIntake(Action):
    """算了/不用了 during an intake: stop asking, submit nothing."""

    def name(self) -> str:
        return "action_cancel_intake"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        dispatcher.utter_message(response="utter_cancelled")
        events: list[Any] = [ActiveLoop(None), *reset_intake()]
        return events
