"""我的社区 and 退订 (issue 11): the exact events each action returns, what it says, and what
the residents' and subscriptions' services then hold."""

from __future__ import annotations

import asyncio

import pytest
import yaml
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from actions import parsing, records
from actions.community import (
    FORM_SLOTS,
    ActionAskHomeCommunity,
    ActionAskMobileConsent,
    ActionCancelCommunity,
    ActionStartCommunity,
    ActionSubmitCommunity,
    ActionSubscribeWarnings,
    ActionUnsubscribeWarnings,
    ActionWithdrawMobile,
    ValidateCommunityForm,
)
from actions.intake import ActionSubmitDog, ActionSubmitNoise
from casework import db, residents, subscriptions
from casework.vocabulary import WARNING_TOPIC_LABELS
from jmt import paths
from tests.unit.trackers import domain, tracker

FORM = "community_form"
RESET = [SlotSet(slot, None) for slot in (*FORM_SLOTS, "requested_slot")]


def run(action, t):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, domain()))
    return events, dispatcher.messages


def said(messages) -> list[str]:
    return [m["response"] for m in messages]


EARLIER = {  # the answers given before each question
    "home_community": {},
    "warning_topics": {"home_community": "跳过"},
    "mobile_consent": {"home_community": "跳过", "warning_topics": "跳过"},
    "resident_mobile": {"home_community": "跳过", "warning_topics": "跳过"},
}


def answer(text: str, requested: str, *, intent: str = "inform", **slots):
    """The resident's `text` in answer to the question for `requested`."""
    given = {**EARLIER[requested], "requested_slot": requested, **slots}
    return tracker(text, intent=intent, active_loop=FORM, slots=given)


def profile(openid: str = "resident-1") -> residents.ResidentProfilePublic:
    with db.session_scope() as session:
        return residents.profile(session=session, openid=openid)


def wanted(openid: str = "resident-1") -> subscriptions.WarningPreferencesPublic:
    with db.session_scope() as session:
        return subscriptions.preferences(session=session, openid=openid)


# ------------------------------------------------------------------ street and community


def test_the_opening_message_that_names_the_community_saves_it(sqlite_url):
    t = tracker("我住在骆驼街道万景社区", intent="set_community", active_loop=FORM)
    events, messages = run(ValidateCommunityForm(), t)
    assert events == [
        SlotSet("home_community", "骆驼街道万景社区"),
        SlotSet("home_street", "骆驼街道"),
        SlotSet("requested_slot", "warning_topics"),
    ]
    assert messages[0]["response"] == "utter_community_saved"
    assert messages[0]["community"] == "骆驼街道万景社区"
    assert (profile().street, profile().community) == ("骆驼街道", "万景社区")


def test_the_menu_text_names_no_place_so_the_question_is_asked(sqlite_url):
    t = tracker("设置我的社区", intent="set_community", active_loop=FORM)
    events, messages = run(ValidateCommunityForm(), t)
    assert events == [SlotSet("requested_slot", "home_community")]
    assert messages == []


def test_a_street_alone_is_half_an_answer_then_its_community_by_short_name(sqlite_url):
    events, messages = run(ValidateCommunityForm(), answer("骆驼", "home_community"))
    assert events == [
        SlotSet("home_community", None),
        SlotSet("home_street", "骆驼街道"),
        SlotSet("requested_slot", "home_community"),
    ]
    assert messages == []  # not a failed try: no apology
    t = answer("盛兴", "home_community", home_street="骆驼街道")
    events, messages = run(ValidateCommunityForm(), t)
    assert SlotSet("home_community", "骆驼街道盛兴社区") in events
    assert said(messages) == ["utter_community_saved"]
    assert profile().community == "盛兴社区"


def test_the_question_names_the_streets_communities_once_the_street_is_known(sqlite_url):
    t = answer("", "home_community", home_street="澥浦镇")
    _, messages = run(ActionAskHomeCommunity(), t)
    assert messages[0]["response"] == "utter_ask_home_community_in_street"
    assert messages[0]["communities"] == "汶溪村、十七房村、岚山村、澥浦社区"


def test_an_unknown_place_is_asked_again_twice_then_skipped_politely(sqlite_url):
    events, messages = run(ValidateCommunityForm(), answer("火星小区", "home_community"))
    assert events == [
        SlotSet("home_community", None),
        SlotSet("preference_retries", {"home_community": 1}),
        SlotSet("requested_slot", "home_community"),
    ]
    assert messages == []
    _, messages = run(
        ActionAskHomeCommunity(),
        answer("", "home_community", preference_retries={"home_community": 1}),
    )
    assert said(messages) == ["utter_ask_home_community_again"]
    t = answer("火星小区", "home_community", preference_retries={"home_community": 2})
    events, messages = run(ValidateCommunityForm(), t)
    assert SlotSet("home_community", "跳过") in events
    assert events[-1] == SlotSet("requested_slot", "warning_topics")
    assert said(messages) == ["utter_community_not_found"]
    assert profile().community is None


@pytest.mark.parametrize(
    ("text", "intent"), [("跳过", "deny"), ("不用了", "cancel"), ("不方便说", "inform")]
)
def test_skipping_the_community_keeps_what_is_registered(sqlite_url, text, intent):
    events, messages = run(ValidateCommunityForm(), answer(text, "home_community", intent=intent))
    assert events == [
        SlotSet("home_community", "跳过"),
        SlotSet("requested_slot", "warning_topics"),
    ]
    assert messages == []


@pytest.mark.parametrize(
    "intent",
    [
        "cancel",
        "request_human",
        "emergency",
        "unsubscribe_warnings",
        "subscribe_warnings",
        "withdraw_mobile",
    ],
)
def test_no_answer_is_taken_from_a_message_its_own_rule_handles(sqlite_url, intent):
    events, _ = run(
        ValidateCommunityForm(), answer("算了我住万景社区", "home_community", intent=intent)
    )
    # Nothing extracted: Rasa rejects the form for this turn and the intent's rule runs.
    assert events == [SlotSet("requested_slot", "home_community")]


@pytest.mark.parametrize(
    ("text", "requested", "fits"),
    [
        ("蛟川街道俞范社区", "home_community", True),
        ("除了交通都要", "warning_topics", True),
        ("派出所几点上班", "home_community", False),
        ("派出所几点上班", "warning_topics", False),
    ],
)
def test_a_message_read_as_an_faq_answers_the_question_when_it_fits_it(
    sqlite_url, text, requested, fits
):
    events, _ = run(ValidateCommunityForm(), answer(text, requested, intent="faq"))
    if fits:
        assert events[0]["name"] == requested and events[0]["value"] is not None
    else:  # a real FAQ question: its rule answers it, then the question comes again
        assert events == [SlotSet("requested_slot", requested)]


def test_a_shared_wechat_location_answers_where_the_resident_lives(sqlite_url):
    t = tracker(
        "",
        active_loop=FORM,
        metadata={"location": {"lat": 29.95, "lng": 121.71, "label": "镇海区蛟川街道俞范社区"}},
        slots={"requested_slot": "home_community"},
    )
    events, _ = run(ValidateCommunityForm(), t)
    assert SlotSet("home_community", "蛟川街道俞范社区") in events
    assert profile().community == "俞范社区"


# ------------------------------------------------------------------ topics


@pytest.mark.parametrize(
    ("text", "intent", "topics"),
    [
        ("1 3", "inform", ["fraud", "traffic"]),
        ("只要电诈预警", "inform", ["fraud"]),
        ("除了交通都要", "inform", ["fraud", "weather", "health", "community"]),
        ("好的", "affirm", ["fraud", "weather", "traffic", "health", "community"]),
    ],
)
def test_chosen_topics_are_saved_as_a_consent(sqlite_url, text, intent, topics):
    events, _ = run(ValidateCommunityForm(), answer(text, "warning_topics", intent=intent))
    assert events == [
        SlotSet("warning_topics", topics),
        SlotSet("requested_slot", "mobile_consent"),
    ]
    preferences = wanted()
    assert (preferences.topics, preferences.chosen, preferences.opted_out) == (topics, True, False)
    assert preferences.consent_text and preferences.consent_at


def test_no_topic_at_all_is_an_opt_out_and_says_how_to_come_back(sqlite_url):
    events, messages = run(ValidateCommunityForm(), answer("都不要", "warning_topics"))
    assert SlotSet("warning_topics", "不要") in events
    assert said(messages) == ["utter_topics_none"]
    assert wanted().opted_out is True


def test_skipping_topics_keeps_the_default_of_every_topic(sqlite_url):
    events, _ = run(ValidateCommunityForm(), answer("跳过", "warning_topics", intent="deny"))
    assert SlotSet("warning_topics", "跳过") in events
    assert wanted().chosen is False and wanted().topics == list(WARNING_TOPIC_LABELS)


def test_an_answer_naming_no_topic_is_asked_again_once_more_then_left_at_all(sqlite_url):
    events, messages = run(ValidateCommunityForm(), answer("随你们吧我也不懂", "warning_topics"))
    assert events[:2] == [
        SlotSet("warning_topics", None),
        SlotSet("preference_retries", {"warning_topics": 1}),
    ]
    assert said(messages) == ["utter_topics_not_understood"]
    t = answer("啊？", "warning_topics", preference_retries={"warning_topics": 2})
    events, messages = run(ValidateCommunityForm(), t)
    assert SlotSet("warning_topics", "跳过") in events
    assert wanted().chosen is False


# ------------------------------------------------------------------ mobile, only after a clear yes


def test_a_clear_yes_then_the_number_keeps_it_masked_with_the_consent_time(sqlite_url):
    events, _ = run(ValidateCommunityForm(), answer("同意", "mobile_consent", intent="affirm"))
    assert events == [SlotSet("mobile_consent", True)]  # Rasa then asks resident_mobile
    t = answer("13812345678", "resident_mobile", mobile_consent=True)
    events, messages = run(ValidateCommunityForm(), t)
    assert events == [SlotSet("resident_mobile", "138****5678")]  # never the number itself
    assert messages == [{**messages[0], "response": "utter_mobile_saved", "mobile": "138****5678"}]
    stored = profile()
    assert stored.mobile_masked == "138****5678" and stored.mobile_consent_at is not None


def test_a_number_sent_before_the_answer_is_held_and_dropped_on_a_no(sqlite_url):
    events, messages = run(ValidateCommunityForm(), answer("13812345678", "mobile_consent"))
    assert events == [
        SlotSet("mobile_consent", None),
        SlotSet("resident_mobile", "13812345678"),
        SlotSet("requested_slot", "mobile_consent"),
    ]
    assert messages == [] and profile().mobile_masked is None
    held = answer("", "mobile_consent", resident_mobile="13812345678")
    _, messages = run(ActionAskMobileConsent(), held)
    assert said(messages) == ["utter_ask_mobile_consent_held"]
    t = answer("不同意", "mobile_consent", intent="deny", resident_mobile="13812345678")
    events, messages = run(ValidateCommunityForm(), t)
    assert events == [
        SlotSet("mobile_consent", False),
        SlotSet("resident_mobile", None),
        SlotSet("requested_slot", None),
    ]
    assert said(messages) == ["utter_mobile_not_kept"]
    assert profile().mobile_masked is None


def test_a_held_number_is_kept_after_the_yes(sqlite_url):
    t = answer("可以", "mobile_consent", intent="affirm", resident_mobile="13812345678")
    events, messages = run(ValidateCommunityForm(), t)
    assert events == [SlotSet("mobile_consent", True), SlotSet("resident_mobile", "138****5678")]
    assert said(messages) == ["utter_mobile_saved"]
    assert profile().mobile_masked == "138****5678"


def test_yes_and_the_number_in_one_message(sqlite_url):
    events, _ = run(ValidateCommunityForm(), answer("同意 139-1234-5678", "mobile_consent"))
    assert events[-1] == SlotSet("resident_mobile", "139****5678")
    assert profile().mobile_masked == "139****5678"


@pytest.mark.parametrize(
    ("text", "intent"), [("跳过", "deny"), ("不用了", "cancel"), ("不要", "deny")]
)
def test_no_mobile_ends_the_form_without_asking_for_one(sqlite_url, text, intent):
    events, _ = run(ValidateCommunityForm(), answer(text, "mobile_consent", intent=intent))
    assert events == [
        SlotSet("mobile_consent", False),
        SlotSet("resident_mobile", None),
        SlotSet("requested_slot", None),
    ]
    assert profile().mobile_masked is None


def test_a_wrong_number_is_asked_again(sqlite_url):
    t = answer("1381234", "resident_mobile", mobile_consent=True)
    events, messages = run(ValidateCommunityForm(), t)
    assert events[:2] == [
        SlotSet("resident_mobile", None),
        SlotSet("preference_retries", {"resident_mobile": 1}),
    ]
    assert said(messages) == ["utter_mobile_invalid"]
    assert profile().mobile_masked is None


# ------------------------------------------------------------------ start, submit, cancel


def test_start_clears_an_unfinished_round_and_says_what_is_registered(sqlite_url):
    with db.session_scope() as session:
        residents.set_profile(session=session, openid="resident-1", community="兴庄社区")
    events, messages = run(ActionStartCommunity(), tracker("我的社区", intent="set_community"))
    assert events == RESET
    assert said(messages) == ["utter_community_intro", "utter_community_current"]
    assert messages[1]["community"] == "庄市街道兴庄社区"


def test_submit_reads_back_what_is_stored(sqlite_url):
    with db.session_scope() as session:
        residents.set_profile(
            session=session,
            openid="resident-1",
            community="万景社区",
            mobile="13812345678",
            consent=True,
        )
        subscriptions.choose_topics(
            session=session, openid="resident-1", topics=["fraud", "weather"]
        )
    events, messages = run(ActionSubmitCommunity(), tracker("同意"))
    assert events == RESET
    [message] = messages
    assert message["response"] == "utter_community_done"
    assert (message["community"], message["topics"], message["mobile"]) == (
        "骆驼街道万景社区",
        "电诈预警、灾害天气",
        "138****5678",
    )


def test_submit_for_a_resident_who_set_nothing_says_so(sqlite_url):
    _, [message] = run(ActionSubmitCommunity(), tracker("跳过"))
    assert (message["community"], message["mobile"]) == ("未设置", "未登记")
    assert message["topics"].startswith("全部（电诈预警")


def test_cancel_keeps_what_was_saved(sqlite_url):
    events, messages = run(
        ActionCancelCommunity(), tracker("算了", intent="cancel", active_loop=FORM)
    )
    assert events == [ActiveLoop(None), *RESET]
    assert said(messages) == ["utter_community_cancelled"]


# ------------------------------------------------------------------ 退订 / 订阅提醒


def test_unsubscribe_opts_out_at_once_and_says_how_to_resume(database_url):
    events, messages = run(
        ActionUnsubscribeWarnings(), tracker("不要再给我发预警了", intent="unsubscribe_warnings")
    )
    assert events == []
    assert said(messages) == ["utter_unsubscribed"]
    assert wanted().opted_out is True
    assert "订阅提醒" in domain()["responses"]["utter_unsubscribed"][0]["text"]


def test_unsubscribe_during_my_community_skips_the_topics_question(sqlite_url):
    t = tracker(
        "别推送了",
        intent="unsubscribe_warnings",
        active_loop=FORM,
        slots={"requested_slot": "warning_topics"},
    )
    events, _ = run(ActionUnsubscribeWarnings(), t)
    assert events == [SlotSet("warning_topics", "已退订")]
    assert wanted().opted_out is True


def test_unsubscribe_during_another_intake_leaves_its_slots_alone(sqlite_url):
    t = tracker(
        "TD",
        intent="unsubscribe_warnings",
        active_loop="noise_form",
        slots={"requested_slot": "location"},
    )
    events, _ = run(ActionUnsubscribeWarnings(), t)
    assert events == []
    assert wanted().opted_out is True


def test_subscribe_after_unsubscribe_resumes_with_the_topics_chosen_before(database_url):
    with db.session_scope() as session:
        subscriptions.choose_topics(session=session, openid="resident-1", topics=["fraud"])
    run(ActionUnsubscribeWarnings(), tracker("退订", intent="unsubscribe_warnings"))
    events, messages = run(
        ActionSubscribeWarnings(), tracker("订阅提醒", intent="subscribe_warnings")
    )
    assert events == [] and said(messages) == ["utter_subscribed"]
    assert (wanted().opted_out, wanted().topics) == (False, ["fraud"])


# ------------------------------------------------------------------ 撤回手机号授权


def _registered(number: str = "13800001234") -> None:
    with db.session_scope() as session:
        residents.set_profile(session=session, openid="resident-1", mobile=number, consent=True)


def test_withdraw_mobile_deletes_the_number_and_confirms(database_url):
    _registered()
    events, messages = run(
        ActionWithdrawMobile(), tracker("把我的手机号删了", intent="withdraw_mobile")
    )
    assert events == []
    assert said(messages) == ["utter_mobile_withdrawn"]
    assert (profile().mobile_masked, profile().mobile_consent_at) == (None, None)
    with db.session_scope() as session:
        assert residents.resident_by_mobile(session=session, mobile="13800001234") is None
    # the warnings themselves are not touched: that is 退订's business
    assert wanted().opted_out is False


def test_withdraw_mobile_without_a_number_says_there_is_none(sqlite_url):
    events, messages = run(
        ActionWithdrawMobile(), tracker("别再用我电话了", intent="withdraw_mobile")
    )
    assert events == [] and said(messages) == ["utter_mobile_none_to_withdraw"]


@pytest.mark.parametrize("requested", ["mobile_consent", "resident_mobile"])
def test_withdraw_mobile_during_my_community_answers_the_mobile_question_no(sqlite_url, requested):
    slots = {"requested_slot": requested, "resident_mobile": "13800001234"}
    if requested == "resident_mobile":
        slots["mobile_consent"] = True
    t = tracker("手机号不留了", intent="withdraw_mobile", active_loop=FORM, slots=slots)
    events, _ = run(ActionWithdrawMobile(), t)
    assert events == [SlotSet("mobile_consent", False), SlotSet("resident_mobile", None)]


def test_withdraw_mobile_during_another_intake_leaves_its_slots_alone(sqlite_url):
    _registered()
    t = tracker(
        "撤回手机号授权",
        intent="withdraw_mobile",
        active_loop="fraud_form",
        slots={"requested_slot": "amount"},
    )
    events, messages = run(ActionWithdrawMobile(), t)
    assert events == [] and said(messages) == ["utter_mobile_withdrawn"]
    assert profile().mobile_masked is None


def test_the_withdrawal_replies_exist_and_point_to_my_community():
    responses = domain()["responses"]
    for name in ("utter_mobile_withdrawn", "utter_mobile_none_to_withdraw"):
        assert "我的社区" in responses[name][0]["text"]


# ------------------------------------------------------------------ from an intake's address


def test_a_diverted_intake_in_a_community_sets_a_missing_community(sqlite_url):
    t = tracker(
        "一直在吵",
        slots={
            "location": "骆驼街道万景社区3幢",
            "noise_source": "装修",
            "case_category": "noise_complaint",
        },
    )
    run(ActionSubmitNoise(), t)
    assert (profile().street, profile().community) == ("骆驼街道", "万景社区")


def test_a_case_does_not_change_a_community_the_resident_chose(sqlite_url):
    with db.session_scope() as session:
        residents.set_profile(session=session, openid="resident-1", community="兴庄社区")
    t = tracker(
        "被狗咬了",
        slots={"location": "蛟川街道俞范社区", "bitten": True, "case_category": "dog_complaint"},
    )
    run(ActionSubmitDog(), t)
    assert profile().community == "兴庄社区"


def test_an_intake_address_without_a_community_sets_nothing(sqlite_url):
    t = tracker(
        "吵",
        slots={
            "location": "庄市大道地铁站口",
            "noise_source": "施工",
            "case_category": "noise_complaint",
        },
    )
    run(ActionSubmitNoise(), t)
    assert profile().community is None


# ------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    ("text", "topics"),
    [
        ("全部", ["fraud", "weather", "traffic", "health", "community"]),
        ("1、3、5", ["fraud", "traffic", "community"]),
        ("一和三", ["fraud", "traffic"]),
        ("第二个", ["weather"]),
        ("电诈和天气", ["fraud", "weather"]),
        ("台风暴雨那种", ["weather"]),
        ("电诈和天气要，其他不要", ["fraud", "weather"]),
        ("交通不要 其他都要", ["fraud", "weather", "health", "community"]),
        ("公共卫生和社区通知", ["health", "community"]),
        ("都不要", []),
        ("不需要", []),
        ("我也不知道", None),
    ],
)
def test_warning_topics_from_text(text, topics):
    assert parsing.warning_topics_from_text(text) == topics


def test_topic_words_cover_the_vocabulary_in_its_order():
    assert list(parsing.WARNING_TOPIC_WORDS) == list(WARNING_TOPIC_LABELS)


@pytest.mark.parametrize(
    ("text", "consent"),
    [
        ("同意", True),
        ("可以的", True),
        ("嗯", True),
        ("不同意", False),
        ("不用了", False),
        ("跳过", False),
        ("我想想", None),
        ("13812345678", None),
    ],
)
def test_consent_from_text_is_only_a_clear_yes_or_no(text, consent):
    assert parsing.consent_from_text(text) is consent


@pytest.mark.parametrize(
    ("text", "street", "label"),
    [
        ("骆驼街道万景社区", None, "骆驼街道万景社区"),
        ("万景", None, "骆驼街道万景社区"),  # unique in the district
        ("十七房", "澥浦镇", "澥浦镇十七房村"),
        ("我在骆驼街道", None, "骆驼街道"),
        ("火星小区", None, None),
    ],
)
def test_home_place(text, street, label):
    place = records.home_place(text, street=street)
    assert (place.label if place else None) == label


def test_normalise_mobile_finds_a_mainland_mobile_only():
    assert records.normalise_mobile("我的手机 +86 138-1234-5678") == "13812345678"
    assert records.normalise_mobile("0574-86271234") is None
    assert records.normalise_mobile("不告诉你") is None


def test_every_action_of_the_subscription_domain_is_served_by_the_actions_package():
    declared = yaml.safe_load((paths.DOMAIN / "subscription.yml").read_text(encoding="utf-8"))
    executor = ActionExecutor()
    executor.register_package("actions")
    assert set(declared["actions"]) <= set(executor.actions)
