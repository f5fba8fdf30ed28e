"""The two-stage fallback's first question, in Chinese.

When the NLU is unsure, Rasa's two-stage fallback asks the resident to confirm its best
guess. Rasa's own `action_default_ask_affirmation` says "Did you mean 'report_fraud'?"
with Yes/No buttons — English, an intent name, and buttons WeChat cannot show. This action
of the same name overrides it: it asks in plain Chinese what the resident seems to want
(one `utter_ask_affirmation_<intent>` response per intent, a general one otherwise), and
the resident answers 是/不是 (the `affirm`/`deny` intents).
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

FALLBACK_INTENT = "nlu_fallback"
# Intents with a question of their own (`utter_ask_affirmation_<intent>`); any other gets
# the general `utter_ask_affirmation`.
AFFIRMABLE_INTENTS = (
    "report_fraud",
    "emergency",
    "legal_help",
    "complain_noise",
    "complain_dog",
    "faq",
    "request_human",
    "out_of_scope",
    "unsubscribe_warnings",
    "subscribe_warnings",
    "withdraw_mobile",
    "set_community",
)


def intent_to_affirm(parse_data: dict[str, Any]) -> str | None:
    """The intent to ask about: the top one, or the runner-up when the top is the
    fallback itself (as Rasa's own action chooses)."""
    intent = (parse_data.get("intent") or {}).get("name")
    ranking = parse_data.get("intent_ranking") or []
    if intent == FALLBACK_INTENT and len(ranking) > 1:
        intent = ranking[1].get("name")
    if intent == FALLBACK_INTENT:
        return None
    return str(intent) if intent else None


class ActionDefaultAskAffirmation(Action):
    def name(self) -> str:
        return "action_default_ask_affirmation"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        intent = intent_to_affirm(tracker.latest_message or {})
        if intent in AFFIRMABLE_INTENTS:
            dispatcher.utter_message(response=f"utter_ask_affirmation_{intent}")
        else:
            dispatcher.utter_message(response="utter_ask_affirmation")
        return []
