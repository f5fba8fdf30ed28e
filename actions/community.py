"""我的社区 and 退订: the resident's own settings, in their own words.

`community_form` asks three short questions — street and community (matched with the
gazetteer, asked again politely twice, 跳过 accepted), the warning topics (all by
default), and whether they will leave a mobile number for targeted anti-fraud warnings.
The number is asked for, and kept, only after a clear yes; a number typed before that is
held in the dialogue until the answer and dropped on a no. Each answer is saved as soon
as it is given (`records.save_community`, `records.choose_topics`, `records.save_mobile`),
so a resident who stops half-way keeps what they set.

退订 (`action_unsubscribe_warnings`), 订阅提醒 (`action_subscribe_warnings`) and
withdrawing the mobile (`action_withdraw_mobile`, 把我的手机号删了) work at any time, also
in the middle of an intake, which then goes on (bot/data/rules.yml).
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions import parsing, records
from actions.forms import latest_text, shared_location

FORM = "community_form"
SKIPPED = "跳过"
NO_TOPICS = "不要"
OPTED_OUT = "已退订"
FORM_SLOTS = (
    "home_community",
    "home_street",
    "warning_topics",
    "mobile_consent",
    "resident_mobile",
    "preference_retries",
)
# Not answers to this form's questions: the turn is left to their rules (cancel, 找民警,
# emergency, 退订 / 订阅) and the form asks its question again afterwards. A message the
# NLU reads as an FAQ question is an answer when it fits the question (万景社区, 1 3).
NOT_ANSWERS = {
    "cancel",
    "request_human",
    "emergency",
    "unsubscribe_warnings",
    "subscribe_warnings",
    "withdraw_mobile",
}
# Answers that fit nothing are met with a polite second question this many times; then the
# step is skipped (the community) or left at its default (topics: all; mobile: none).
MAX_RETRIES = 2
ALL_TOPICS = list(parsing.WARNING_TOPIC_WORDS)


def reset_preferences() -> list[EventType]:
    return [SlotSet(slot, None) for slot in (*FORM_SLOTS, "requested_slot")]


def _intent(tracker: Tracker) -> str | None:
    return (tracker.latest_message.get("intent") or {}).get("name")


def _answer(tracker: Tracker, slot: str) -> str | None:
    """The latest message as an answer to the question for `slot`: None when that
    question was not asked, or when the message is no answer (see NOT_ANSWERS)."""
    if tracker.get_slot("requested_slot") != slot or tracker.get_slot(slot) is not None:
        return None
    text = latest_text(tracker).strip()
    if parsing.is_skip(text):
        return SKIPPED
    intent = _intent(tracker)
    if intent in NOT_ANSWERS or (intent == "faq" and not _fits(slot, text)):
        return None
    return text


def _fits(slot: str, text: str) -> bool:
    """Whether `text` reads as an answer to the question for `slot`."""
    if slot == "home_community":
        return records.home_place(text) is not None
    if slot == "warning_topics":
        return parsing.warning_topics_from_text(text) is not None
    if slot == "mobile_consent":
        return parsing.consent_from_text(text) is not None
    return records.normalise_mobile(text) is not None


def _retries(tracker: Tracker) -> dict[str, int]:
    return dict(tracker.get_slot("preference_retries") or {})


def _one_more_try(tracker: Tracker, slot: str) -> dict[str, Any] | None:
    """Count an answer that did not fit; None when the tries are used up."""
    retries = _retries(tracker)
    if retries.get(slot, 0) >= MAX_RETRIES:
        return None
    retries[slot] = retries.get(slot, 0) + 1
    return {slot: None, "preference_retries": retries}


def _is_raw_mobile(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit() and len(value) == 11


class ValidateCommunityForm(FormValidationAction):
    def name(self) -> str:
        return "validate_community_form"

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        slots = ["home_community", "warning_topics", "mobile_consent"]
        if tracker.get_slot("mobile_consent") is True:
            slots.append("resident_mobile")
        return slots

    # ---------------------------------------------------------- street and community

    async def extract_home_community(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        location = shared_location(tracker)
        if (
            tracker.get_slot("requested_slot") is None
            and tracker.get_slot("home_community") is None
        ):
            # The message that opened the form may name the place (我住在骆驼街道万景社区).
            text = location or latest_text(tracker)
            if _intent(tracker) == "set_community" and records.home_place(text):
                return {"home_community": text}
            return {}
        answer = _answer(tracker, "home_community")
        if answer is None:
            return {}
        if location:  # a shared WeChat location beats what was typed
            return {"home_community": location}
        if _intent(tracker) == "deny":  # 不想说 / 不告诉你
            return {"home_community": SKIPPED}
        return {"home_community": answer}

    async def validate_home_community(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value == SKIPPED:
            return {"home_community": SKIPPED}
        place = records.home_place(str(value), street=tracker.get_slot("home_street"))
        if place is not None and place.community:
            records.save_community(tracker, place.community)
            dispatcher.utter_message(response="utter_community_saved", community=place.label)
            return {"home_community": place.label, "home_street": place.street}
        if place is not None and place.street:
            # A street is half the answer: ask which of its communities (not a failed try).
            return {"home_community": None, "home_street": place.street}
        retry = _one_more_try(tracker, "home_community")
        if retry is None:
            dispatcher.utter_message(response="utter_community_not_found")
            return {"home_community": SKIPPED}
        return retry

    # ---------------------------------------------------------- warning topics

    async def extract_warning_topics(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        answer = _answer(tracker, "warning_topics")
        if answer is None:
            return {}
        if answer == SKIPPED:
            return {"warning_topics": SKIPPED}
        topics = parsing.warning_topics_from_text(answer)
        if topics is None and _intent(tracker) == "affirm":  # 好的 / 可以: the default, all
            topics = ALL_TOPICS
        if topics is None and _intent(tracker) == "deny":  # 不要 / 不需要
            topics = []
        # Text that names no choice is still an answer: validation says so and asks again.
        return {"warning_topics": answer if topics is None else topics}

    async def validate_warning_topics(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value in (SKIPPED, OPTED_OUT, NO_TOPICS):
            return {"warning_topics": value}
        if isinstance(value, list) and value:
            records.choose_topics(tracker, value)
            return {"warning_topics": value}
        if isinstance(value, list):  # 都不要: no warnings at all is an opt-out
            records.opt_out(tracker)
            dispatcher.utter_message(response="utter_topics_none")
            return {"warning_topics": NO_TOPICS}
        retry = _one_more_try(tracker, "warning_topics")
        if retry is None:  # still unclear: leave the default (every topic)
            return {"warning_topics": SKIPPED}
        dispatcher.utter_message(response="utter_topics_not_understood")
        return retry

    # ---------------------------------------------------------- mobile, with consent

    async def extract_mobile_consent(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        answer = _answer(tracker, "mobile_consent")
        if answer is None:
            return {}
        if answer == SKIPPED or _intent(tracker) == "deny":
            return {"mobile_consent": False}
        consent = parsing.consent_from_text(answer)
        if consent is None and _intent(tracker) == "affirm":
            consent = True
        # Neither yes nor no (a bare number, 我想想): validation holds a number and the
        # question is asked again — only a clear yes keeps a number.
        return {"mobile_consent": consent}

    async def validate_mobile_consent(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        number = records.normalise_mobile(latest_text(tracker))
        held = tracker.get_slot("resident_mobile")
        number = number or (held if _is_raw_mobile(held) else None)
        if value is False:
            if number:
                dispatcher.utter_message(response="utter_mobile_not_kept")
            return {"mobile_consent": False, "resident_mobile": None}
        if value is True and number:  # 同意，13812345678 — or the yes to a held number
            return {"mobile_consent": True, "resident_mobile": _keep(dispatcher, tracker, number)}
        if value is True:
            return {"mobile_consent": True}
        if number:  # the number before the answer: held until the yes or the no
            return {"mobile_consent": None, "resident_mobile": number}
        retry = _one_more_try(tracker, "mobile_consent")  # 我想想: ask again, then a no
        return retry or {"mobile_consent": False, "resident_mobile": None}

    async def extract_resident_mobile(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        answer = _answer(tracker, "resident_mobile")
        if answer is None:
            return {}
        if answer == SKIPPED or _intent(tracker) == "deny":
            return {"resident_mobile": SKIPPED}
        return {"resident_mobile": answer}

    async def validate_resident_mobile(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value == SKIPPED:
            return {"resident_mobile": SKIPPED}
        number = records.normalise_mobile(str(value))
        if number and tracker.get_slot("mobile_consent") is True:
            return {"resident_mobile": _keep(dispatcher, tracker, number)}
        retry = _one_more_try(tracker, "resident_mobile")
        if retry is None:
            return {"resident_mobile": SKIPPED}
        dispatcher.utter_message(response="utter_mobile_invalid")
        return retry


def _keep(dispatcher: CollectingDispatcher, tracker: Tracker, number: str) -> str:
    """Save the number the resident agreed to give; from now on only its masked form
    stays in the dialogue."""
    masked = records.save_mobile(tracker, number)
    dispatcher.utter_message(response="utter_mobile_saved", mobile=masked)
    return masked


class ActionAskHomeCommunity(Action):
    """The community question, worded for where the answers have got to."""

    def name(self) -> str:
        return "action_ask_home_community"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        street = tracker.get_slot("home_street")
        if street:
            communities = "、".join(records.communities_of(str(street)))
            dispatcher.utter_message(
                response="utter_ask_home_community_in_street",
                street=street,
                communities=communities,
            )
        elif _retries(tracker).get("home_community"):
            dispatcher.utter_message(response="utter_ask_home_community_again")
        else:
            dispatcher.utter_message(response="utter_ask_home_community")
        return []


class ActionAskMobileConsent(Action):
    """The consent question; shorter when the resident has already sent a number."""

    def name(self) -> str:
        return "action_ask_mobile_consent"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if _is_raw_mobile(tracker.get_slot("resident_mobile")):
            dispatcher.utter_message(response="utter_ask_mobile_consent_held")
        else:
            dispatcher.utter_message(response="utter_ask_mobile_consent")
        return []


class ActionStartCommunity(Action):
    """我的社区: a clean start (nothing left from an earlier, unfinished round) and what is
    registered now."""

    def name(self) -> str:
        return "action_start_community"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        dispatcher.utter_message(response="utter_community_intro")
        current = records.resident_community(tracker)
        if current:
            dispatcher.utter_message(response="utter_community_current", community=current)
        return reset_preferences()


class ActionSubmitCommunity(Action):
    """Every answer is already saved: read back what is stored now."""

    def name(self) -> str:
        return "action_submit_community"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        dispatcher.utter_message(
            response="utter_community_done", **records.preference_summary(tracker)
        )
        return reset_preferences()


class ActionCancelCommunity(Action):
    """算了 during 我的社区: stop asking; what was already saved stays."""

    def name(self) -> str:
        return "action_cancel_community"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        dispatcher.utter_message(response="utter_community_cancelled")
        return [ActiveLoop(None), *reset_preferences()]


class ActionUnsubscribeWarnings(Action):
    """退订 / 取消提醒, in any wording, at any time: no warning is sent from now on."""

    def name(self) -> str:
        return "action_unsubscribe_warnings"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        records.opt_out(tracker)
        dispatcher.utter_message(response="utter_unsubscribed")
        if tracker.active_loop_name == FORM and tracker.get_slot("warning_topics") is None:
            # Mid-我的社区: choosing topics now would opt the resident back in.
            return [SlotSet("warning_topics", OPTED_OUT)]
        return []


class ActionSubscribeWarnings(Action):
    """订阅提醒 / 恢复提醒: warnings again, with the topics chosen before (all if none)."""

    def name(self) -> str:
        return "action_subscribe_warnings"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        records.opt_in(tracker)
        dispatcher.utter_message(response="utter_subscribed")
        return []


class ActionWithdrawMobile(Action):
    """把我的手机号删了 / 撤回手机号授权: the registered number is deleted at once and the
    withdrawal recorded; a resident with no number is told so."""

    def name(self) -> str:
        return "action_withdraw_mobile"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        withdrawn = records.withdraw_mobile(tracker)
        dispatcher.utter_message(
            response="utter_mobile_withdrawn" if withdrawn else "utter_mobile_none_to_withdraw"
        )
        if tracker.active_loop_name == FORM and tracker.get_slot("mobile_consent") is not False:
            # Mid-我的社区: the mobile question is answered no (a number held for it dropped).
            return [SlotSet("mobile_consent", False), SlotSet("resident_mobile", None)]
        return []
