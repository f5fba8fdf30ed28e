"""The two-stage fallback asks in Chinese what the resident seems to want (never Rasa's
English "Did you mean 'report_fraud'?" with buttons WeChat cannot show)."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.fallback import AFFIRMABLE_INTENTS, ActionDefaultAskAffirmation, intent_to_affirm
from tests.unit.trackers import domain, tracker


def ask(parse: dict) -> list[str]:
    t = tracker("有人给我打电话说是公安局的", intent=parse["intent"]["name"])
    t.latest_message.update(parse)
    dispatcher = CollectingDispatcher()
    assert asyncio.run(ActionDefaultAskAffirmation().run(dispatcher, t, domain())) == []
    return [m["response"] for m in dispatcher.messages]


@pytest.mark.parametrize(
    "parse, expected",
    [
        ({"intent": {"name": "report_fraud"}}, "utter_ask_affirmation_report_fraud"),
        (  # the fallback itself: ask about the runner-up, as Rasa's own action does
            {
                "intent": {"name": "nlu_fallback"},
                "intent_ranking": [{"name": "nlu_fallback"}, {"name": "emergency"}],
            },
            "utter_ask_affirmation_emergency",
        ),
        ({"intent": {"name": "faq"}}, "utter_ask_affirmation_faq"),
        ({"intent": {"name": "inform"}}, "utter_ask_affirmation"),  # no specific question
        ({"intent": {"name": "nlu_fallback"}, "intent_ranking": []}, "utter_ask_affirmation"),
    ],
)
def test_the_question_names_what_the_resident_seems_to_want(parse, expected):
    assert ask(parse) == [expected]


def test_every_question_is_chinese_and_in_the_domain():
    responses = domain()["responses"]
    names = ["utter_ask_affirmation"] + [
        f"utter_ask_affirmation_{intent}" for intent in AFFIRMABLE_INTENTS
    ]
    assert set(names) == {name for name in responses if name.startswith("utter_ask_affirm")}
    for name in names:
        text = responses[name][0]["text"]
        assert "Did you mean" not in text and any("\u4e00" <= c <= "\u9fff" for c in text)


def test_intent_to_affirm_never_asks_about_the_fallback_itself():
    assert intent_to_affirm({"intent": {"name": "nlu_fallback"}}) is None
    assert intent_to_affirm({}) is None
