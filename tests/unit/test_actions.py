"""Every custom action: the exact events it returns, what it says, and what it records."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk.events import ActiveLoop, ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.forms import (
    ValidateDogForm,
    ValidateEmergencyForm,
    ValidateFraudForm,
    ValidateLegalForm,
    ValidateNoiseForm,
)
from actions.intake import (
    ActionCancelIntake,
    ActionDefaultFallback,
    ActionEmergencyAlert,
    ActionHandoff,
    ActionSubmitDog,
    ActionSubmitEmergency,
    ActionSubmitFraud,
    ActionSubmitLegal,
    ActionSubmitNoise,
)
from casework import db
from casework.models import Case, Ticket
from tests.unit.trackers import domain, tracker, user

INTAKE_SLOTS = [
    "amount",
    "bitten",
    "dissuaded",
    "dog_incident",
    "event_time",
    "fraud_type",
    "injury",
    "legal_topic",
    "location",
    "money_lost",
    "noise_ongoing",
    "noise_source",
    "payment_method",
    "platform",
    "scammer_contact",
    "wants_officer",
]
RESET = [SlotSet(slot, None) for slot in [*INTAKE_SLOTS, "case_category", "requested_slot"]]


def run(action, t):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, domain()))
    return events, [m["response"] for m in dispatcher.messages]


def all_cases() -> list[Case]:
    with db.session_scope() as session:
        return list(session.execute(select(Case).order_by(Case.id)).scalars())


def all_tickets() -> list[Ticket]:
    with db.session_scope() as session:
        return list(session.execute(select(Ticket).order_by(Ticket.id)).scalars())


# ------------------------------------------------------------------ fraud form


def test_fraud_money_gone_in_first_message_advises_stop_payment_and_opens_urgent_case(
    sqlite_url,
):
    t = tracker(
        "我昨天被刷单骗了两万，银行卡转的",
        intent="report_fraud",
        active_loop="fraud_form",
        slots={"amount": "两万", "event_time": "昨天", "fraud_type": "刷单返利"},
    )
    t.events.append({"event": "slot", "name": "amount", "value": "两万"})
    events, said = run(ValidateFraudForm(), t)
    assert events == [
        SlotSet("amount", 20000.0),
        SlotSet("money_lost", True),
        SlotSet("payment_method", "银行卡转账"),
        SlotSet("case_id", 1),
        SlotSet("case_category", "fraud_suspicion"),
        SlotSet("requested_slot", "scammer_contact"),
    ]
    assert said == ["utter_stop_payment_now"]
    [case] = all_cases()
    assert (case.category, case.priority, case.desk, case.reason) == (
        "fraud_suspicion",
        "urgent",
        "反诈",
        "money_lost",
    )


def test_fraud_not_paid_asks_for_the_contact_next(sqlite_url):
    t = tracker(
        "对方让我先交解冻金才放款，我还没转", intent="report_fraud", active_loop="fraud_form"
    )
    events, said = run(ValidateFraudForm(), t)
    assert events == [
        SlotSet("money_lost", False),
        SlotSet("fraud_type", "虚假网络贷款"),
        SlotSet("case_category", "fraud_suspicion"),
        SlotSet("requested_slot", "scammer_contact"),
    ]
    assert said == []
    assert all_cases() == []  # nothing urgent: no case until the intake ends


def test_fraud_not_paid_with_contact_dissuades_then_offers_an_officer(sqlite_url):
    t = tracker(
        "他的号码是13912345678",
        active_loop="fraud_form",
        slots={
            "money_lost": False,
            "fraud_type": "冒充公检法",
            "requested_slot": "scammer_contact",
        },
    )
    events, said = run(ValidateFraudForm(), t)
    assert events == [
        SlotSet("scammer_contact", "13912345678"),
        SlotSet("requested_slot", "wants_officer"),
        SlotSet("dissuaded", True),
    ]
    assert said == ["utter_dissuade_fake_police"]


def test_fraud_amount_in_words_is_kept_when_it_is_not_a_number(sqlite_url):
    t = tracker(
        "记不清了好几笔",
        active_loop="fraud_form",
        slots={"money_lost": True, "amount": "记不清了好几笔", "requested_slot": "amount"},
    )
    t.events.append({"event": "slot", "name": "amount", "value": "记不清了好几笔"})
    events, _ = run(ValidateFraudForm(), t)
    assert SlotSet("amount", "记不清了好几笔") in events
    assert events[-1] == SlotSet("requested_slot", "event_time")


# ------------------------------------------------------------------ other forms


def test_dog_bite_in_the_message_gives_rabies_advice_at_once(sqlite_url):
    t = tracker("小区里的狗把我儿子咬了，流血了", intent="complain_dog", active_loop="dog_form")
    events, said = run(ValidateDogForm(), t)
    assert events == [
        SlotSet("bitten", True),
        SlotSet("case_category", "dog_complaint"),
    ]
    assert said == ["utter_rabies_advice"]


def test_legal_topic_from_free_text_gives_topic_guidance_and_12348(sqlite_url):
    t = tracker("老板拖欠我三个月工资", intent="legal_help", active_loop="legal_form")
    events, said = run(ValidateLegalForm(), t)
    assert events == [
        SlotSet("legal_topic", "劳动欠薪"),
        SlotSet("case_category", "legal_help"),
    ]
    assert said == ["utter_legal_guidance_labor", "utter_legal_12348"]


@pytest.mark.parametrize("form", [ValidateNoiseForm, ValidateDogForm, ValidateEmergencyForm])
def test_a_shared_wechat_location_answers_where(sqlite_url, form):
    location = {"lat": 29.95, "lng": 121.71, "label": "宁波市镇海区骆驼街道金华小区"}
    t = tracker(
        "",
        active_loop=form().form_name(),
        metadata={"location": location},
        slots={"requested_slot": "location"},
    )
    events, _ = run(form(), t)
    assert events[0] == SlotSet("location", "宁波市镇海区骆驼街道金华小区(29.95,121.71)")


def test_noise_source_marks_the_category(sqlite_url):
    t = tracker(
        "楼上装修",
        active_loop="noise_form",
        slots={"noise_source": "楼上装修", "requested_slot": "noise_source"},
    )
    t.events.append({"event": "slot", "name": "noise_source", "value": "楼上装修"})
    events, _ = run(ValidateNoiseForm(), t)
    assert events == [
        SlotSet("noise_source", "楼上装修"),
        SlotSet("case_category", "noise_complaint"),
    ]


# ------------------------------------------------------------------ submissions


def test_submit_fraud_money_gone_hands_off_urgently_with_everything_collected(sqlite_url):
    t = tracker(
        "13912345678",
        active_loop="fraud_form",
        history=[user("被刷单骗了两万", "report_fraud")],
        slots={
            "money_lost": True,
            "amount": 20000.0,
            "event_time": "昨天晚上八点",
            "payment_method": "银行卡转账",
            "scammer_contact": "13912345678",
            "fraud_type": "刷单返利",
            "platform": "抖音",
        },
    )
    events, said = run(ActionSubmitFraud(), t)
    assert events == [ActiveLoop(None), *RESET, SlotSet("case_id", 1), ConversationPaused()]
    assert said == ["utter_fraud_handed_over"]
    [case] = all_cases()
    assert (case.priority, case.desk, case.status) == ("urgent", "反诈", "open")
    assert case.details["amount_yuan"] == 20000.0
    assert case.details["scammer_phones"] == ["13912345678"]
    assert case.details["platform"] == "抖音"
    assert case.details["first_message"] == "被刷单骗了两万"
    assert case.summary.startswith("【涉诈】已转账｜20000元｜刷单返利｜银行卡转账")


def test_submit_fraud_not_paid_records_the_contact_without_pausing(sqlite_url):
    t = tracker(
        "不用了",
        intent="deny",
        history=[user("这个是不是骗子", "report_fraud")],
        slots={
            "money_lost": False,
            "fraud_type": "冒充公检法",
            "scammer_contact": "13912345678",
            "wants_officer": False,
        },
    )
    events, said = run(ActionSubmitFraud(), t)
    assert events == [*RESET, SlotSet("case_id", 1)]
    assert said == ["utter_fraud_recorded"]
    [case] = all_cases()
    assert (case.priority, case.reason) == ("low", "dissuaded")


def test_submit_noise_creates_a_ticket_and_tells_its_number(sqlite_url):
    t = tracker(
        "是的",
        history=[user("楼上天天装修吵死了", "complain_noise")],
        slots={
            "location": "骆驼街道万景社区3幢",
            "noise_source": "装修",
            "noise_ongoing": True,
            "event_time": "早上七点",
        },
    )
    events, said = run(ActionSubmitNoise(), t)
    assert events == [*RESET, SlotSet("ticket_id", 1)]
    assert said == ["utter_noise_ticket"]
    [ticket] = all_tickets()
    assert (ticket.kind, ticket.status) == ("noise", "pending")
    assert ticket.details["street"] == "骆驼街道"
    assert ticket.details["community"] == "万景社区"
    assert all_cases() == []


def test_submit_dog_bitten_hands_off_with_high_priority(sqlite_url):
    t = tracker(
        "是",
        intent="affirm",
        history=[user("狗咬人了", "complain_dog")],
        slots={"location": "蛟川街道俞范社区", "dog_incident": "狗咬人", "bitten": True},
    )
    events, said = run(ActionSubmitDog(), t)
    assert events == [ActiveLoop(None), *RESET, SlotSet("case_id", 1), ConversationPaused()]
    assert said == ["utter_dog_bite_handed_over"]
    [case] = all_cases()
    assert (case.category, case.priority, case.reason) == ("dog_complaint", "high", "dog_bite")


def test_submit_dog_not_bitten_is_diverted(sqlite_url):
    t = tracker(
        "没有",
        intent="deny",
        slots={"location": "庄市", "dog_incident": "狗一直叫", "bitten": False},
    )
    events, said = run(ActionSubmitDog(), t)
    assert events == [*RESET, SlotSet("ticket_id", 1)]
    assert said == ["utter_dog_ticket"]
    assert [t.kind for t in all_tickets()] == ["dog"]


@pytest.mark.parametrize("wants", [True, False])
def test_submit_legal_hands_off_only_when_asked(sqlite_url, wants):
    t = tracker("好", slots={"legal_topic": "劳动欠薪", "wants_officer": wants})
    events, said = run(ActionSubmitLegal(), t)
    if wants:
        assert events == [ActiveLoop(None), *RESET, SlotSet("case_id", 1), ConversationPaused()]
        assert said == ["utter_handoff"]
        assert [c.desk for c in all_cases()] == ["法制"]
    else:
        assert events == RESET
        assert said == ["utter_anything_else"]
        assert all_cases() == []


def test_emergency_alert_opens_an_urgent_case_before_any_question(sqlite_url):
    t = tracker("有人拿刀砍人快来", intent="emergency")
    events, said = run(ActionEmergencyAlert(), t)
    assert events == [SlotSet("case_id", 1), SlotSet("case_category", "emergency")]
    assert said == []
    [case] = all_cases()
    assert (case.category, case.priority, case.desk) == ("emergency", "urgent", None)


def test_submit_emergency_adds_the_location_to_the_same_case(sqlite_url):
    first = tracker("有人拿刀砍人快来", intent="emergency")
    run(ActionEmergencyAlert(), first)
    t = tracker(
        "招宝山街道车站路社区菜场门口",
        history=[user("有人拿刀砍人快来", "emergency")],
        slots={"location": "招宝山街道车站路社区菜场门口", "case_category": "emergency"},
    )
    events, said = run(ActionSubmitEmergency(), t)
    assert events == [ActiveLoop(None), *RESET, SlotSet("case_id", 1), ConversationPaused()]
    assert said == ["utter_emergency_handed_over"]
    [case] = all_cases()
    assert case.location == "招宝山街道车站路社区菜场门口"
    assert case.details["community"] == "车站路社区"


# ------------------------------------------------------------------ hand-off, fallback, cancel


def test_request_human_mid_fraud_with_money_gone_is_urgent(sqlite_url):
    t = tracker(
        "找民警",
        intent="request_human",
        active_loop="fraud_form",
        history=[user("被骗了", "report_fraud")],
        slots={"money_lost": True, "case_category": "fraud_suspicion"},
    )
    events, said = run(ActionHandoff(), t)
    assert events == [ActiveLoop(None), *RESET, SlotSet("case_id", 1), ConversationPaused()]
    assert said == ["utter_handoff_urgent"]
    assert [(c.category, c.priority, c.reason) for c in all_cases()] == [
        ("fraud_suspicion", "urgent", "resident_request")
    ]


def test_request_human_out_of_the_blue_is_a_normal_other_case(sqlite_url):
    events, said = run(ActionHandoff(), tracker("转人工", intent="request_human"))
    assert events[-1] == ConversationPaused()
    assert said == ["utter_handoff"]
    assert [(c.category, c.priority) for c in all_cases()] == [("other", "normal")]


def test_failed_fallback_hands_off_in_the_category_being_discussed(sqlite_url):
    t = tracker(
        "嗯嗯那个啥", intent="nlu_fallback", history=[user("我想问问离婚的事", "legal_help")]
    )
    events, said = run(ActionDefaultFallback(), t)
    assert events[-1] == ConversationPaused()
    assert said == ["utter_handoff_fallback"]
    assert [(c.category, c.reason) for c in all_cases()] == [("legal_help", "fallback")]


def test_cancel_stops_the_intake_and_records_nothing(sqlite_url):
    t = tracker("算了", intent="cancel", active_loop="noise_form", slots={"location": "骆驼"})
    events, said = run(ActionCancelIntake(), t)
    assert events == [ActiveLoop(None), *RESET]
    assert said == ["utter_cancelled"]
    assert all_cases() == [] and all_tickets() == []


def test_an_address_split_by_the_nlu_is_kept_whole(sqlite_url):
    t = tracker("庄市街道兴庄社区", active_loop="dog_form", slots={"requested_slot": "location"})
    t.latest_message["entities"] = [
        {"entity": "address", "value": "兴庄社区", "start": 4, "end": 8},
        {"entity": "address", "value": "庄市街道", "start": 0, "end": 4},
    ]
    events, _ = run(ValidateDogForm(), t)
    assert events[0] == SlotSet("location", "庄市街道兴庄社区")


def test_the_whole_answer_to_when_is_kept(sqlite_url):
    t = tracker(
        "昨天晚上八点",
        active_loop="fraud_form",
        slots={
            "money_lost": True,
            "amount": 20000.0,
            "event_time": "昨天晚上",
            "requested_slot": "event_time",
        },
    )
    t.events.append({"event": "slot", "name": "event_time", "value": "昨天晚上"})
    events, _ = run(ValidateFraudForm(), t)
    assert events == [
        SlotSet("event_time", "昨天晚上八点"),
        SlotSet("requested_slot", "payment_method"),
    ]


def test_a_hand_off_gives_the_conversation_to_officers_and_a_diversion_does_not(sqlite_url):
    from casework.models import Conversation

    run(ActionHandoff(), tracker("转人工", intent="request_human", sender_id="resident-h"))
    run(ActionSubmitNoise(), tracker("是", sender_id="resident-n", slots={"location": "骆驼"}))
    with db.session_scope() as session:
        owners = {c.openid: c.owner for c in session.execute(select(Conversation)).scalars()}
    assert owners == {"resident-h": "officer"}


def test_a_number_cut_into_pieces_by_the_nlu_is_read_whole_from_the_message(sqlite_url):
    t = tracker(
        "他打我电话的号码是13912345678",
        active_loop="fraud_form",
        slots={
            "money_lost": False,
            "fraud_type": "冒充公检法",
            "scammer_contact": "678",
            "requested_slot": "scammer_contact",
        },
    )
    t.events.append({"event": "slot", "name": "scammer_contact", "value": "678"})
    events, _ = run(ValidateFraudForm(), t)
    assert events[0] == SlotSet("scammer_contact", "13912345678")


def test_the_whole_typed_address_is_kept_when_the_nlu_tags_part_of_it(sqlite_url):
    t = tracker(
        "庄市街道兴庄社区",
        active_loop="dog_form",
        slots={"location": "庄市街道", "requested_slot": "location"},
    )
    t.events.append({"event": "slot", "name": "location", "value": "庄市街道"})
    events, _ = run(ValidateDogForm(), t)
    assert events == [SlotSet("location", "庄市街道兴庄社区")]


def test_still_noisy_answers_the_question_whatever_the_intent(sqlite_url):
    t = tracker(
        "是的还在吵",
        intent="complain_noise",
        active_loop="noise_form",
        slots={"location": "骆驼", "noise_source": "电钻", "requested_slot": "noise_ongoing"},
    )
    events, _ = run(ValidateNoiseForm(), t)
    assert events == [SlotSet("noise_ongoing", True)]


def test_a_number_given_after_the_contact_question_is_still_kept(sqlite_url):
    t = tracker(
        "他电话是02112345678",
        active_loop="fraud_form",
        slots={
            "money_lost": False,
            "fraud_type": "冒充公检法",
            "scammer_contact": "不清楚",
            "dissuaded": True,
            "requested_slot": "wants_officer",
        },
    )
    events, _ = run(ValidateFraudForm(), t)
    assert events == [
        SlotSet("scammer_contact", "02112345678"),
        SlotSet("requested_slot", "wants_officer"),
    ]


def test_a_second_noise_report_at_the_same_place_is_linked_to_the_open_ticket(sqlite_url):
    slots = {"location": "骆驼街道万景社区3幢", "noise_source": "装修", "noise_ongoing": True}
    first_events, first_said = run(ActionSubmitNoise(), tracker("是", sender_id="r1", slots=slots))
    second_events, second_said = run(
        ActionSubmitNoise(), tracker("是", sender_id="r2", slots=slots)
    )
    assert (first_said, second_said) == (["utter_noise_ticket"], ["utter_ticket_linked"])
    assert first_events[-1] == second_events[-1] == SlotSet("ticket_id", 1)
    assert [(t.id, t.status, t.linked_to_id) for t in all_tickets()] == [
        (1, "pending", None),
        (2, "linked", 1),
    ]


def test_an_amount_the_nlu_missed_is_read_from_the_text(sqlite_url):
    t = tracker(
        "我刚被刷单骗了五千块",
        intent="report_fraud",
        active_loop="fraud_form",
        slots={"fraud_type": "刷单返利"},
    )
    events, _ = run(ValidateFraudForm(), t)
    assert SlotSet("amount", 5000.0) in events
    assert events[-1] == SlotSet("requested_slot", "event_time")
