"""Precision dissuasion rules (casework.dissuasion): leads become one task each, matched
to the registered resident and community, assigned and due by risk; scoping; attempts;
the outcome rules (unreachable needs a visit; defrauded opens an urgent fraud case)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from casework import accounts, db, dissuasion, dissuasion_csv, residents
from casework.cases import CaseError
from casework.dissuasion_schemas import LeadIn
from casework.handling import Conflict, NotAllowed, NotFound
from casework.models import Case, DissuasionNotice, DissuasionTask

WARNED = "2026-12-05T10:00:00+08:00"
A, B = "万景社区", "清水湖社区"


def lead(external_id: str, **changes) -> LeadIn:
    values = {
        "external_id": external_id,
        "phone": "13800001234",
        "risk_type": "刷单返利",
        "risk_level": "high",
        "warned_at": WARNED,
        "source": "96110",
        **changes,
    }
    return LeadIn.parse_obj(values)


@pytest.fixture
def people(database_url):
    with db.session_scope(database_url) as session:
        made = {
            "officer_a": accounts.create_user(
                session=session,
                username="officer_a",
                password="correct-horse",
                role="officer",
                community=A,
                mobile="13911112222",
            ),
            "officer_b": accounts.create_user(
                session=session,
                username="officer_b",
                password="correct-horse",
                role="officer",
                community=B,
            ),
            "desk": accounts.create_user(
                session=session,
                username="desk",
                password="correct-horse",
                role="officer",
                desk="反诈",
            ),
            "commander": accounts.create_user(
                session=session,
                username="commander",
                password="correct-horse",
                role="commander",
            ),
            "trainer": accounts.create_user(
                session=session, username="trainer", password="correct-horse", role="trainer"
            ),
        }
        return {name: user.id for name, user in made.items()}


def user(session, people, name):
    from casework.models import User

    return session.get(User, people[name])


@pytest.mark.parametrize(
    "raw, kept",
    [
        ("刷单返利", ("刷单返利", None)),
        ("网络刷单返利类", ("刷单返利", "网络刷单返利类")),
        ("冒充客服", ("冒充客服", None)),
        ("网络游戏产品虚假交易", ("其他", "网络游戏产品虚假交易")),
        ("其他", ("其他", None)),
    ],
)
def test_risk_types_come_from_the_vocabulary_and_others_are_kept(raw, kept):
    assert dissuasion.classify_risk_type(raw) == kept


@pytest.mark.parametrize(
    "changes, complaint",
    [
        ({"phone": "12345"}, "phone"),
        ({"risk_level": "urgent"}, "risk_level"),
        ({"warned_at": "2026-12-05T10:00:00"}, "time zone"),
        ({"source": ""}, "source"),
    ],
)
def test_a_malformed_lead_is_refused_with_the_reason(changes, complaint):
    with pytest.raises(ValueError, match=complaint):
        lead("x", **changes)


def test_a_lead_for_a_registered_resident_goes_to_their_community_officer(people):
    with db.session_scope() as session:
        residents.set_profile(
            session=session, openid="o-res", mobile="13800001234", consent=True, community=A
        )
        now = datetime(2026, 12, 5, 2, 0, tzinfo=timezone.utc)
        accepted = dissuasion.ingest_leads(session=session, leads=[lead("L1")], actor=None, now=now)
        task = session.get(DissuasionTask, accepted.task_ids[0])
        assert (task.community, task.street, task.assignee_id) == (
            A,
            "骆驼街道",
            people["officer_a"],
        )
        assert task.resident_id is not None and task.desk is None
        assert task.deadline_at.replace(tzinfo=timezone.utc) == now + timedelta(minutes=30)
        notices = session.execute(select(DissuasionNotice.kind)).scalars().all()
        assert notices == ["announce"]


def test_the_address_wins_and_deadlines_follow_the_risk_level(people):
    with db.session_scope() as session:
        residents.set_profile(
            session=session, openid="o-r", mobile="13800001234", consent=True, community=A
        )
        now = datetime(2026, 12, 5, 2, 0, tzinfo=timezone.utc)
        ids = dissuasion.ingest_leads(
            session=session,
            leads=[
                lead("M", risk_level="medium", address="镇海区庄市街道清水湖社区 5 幢"),
                lead("L", risk_level="low", phone="13700001234"),  # nobody, no address
            ],
            actor=None,
            now=now,
        ).task_ids
        medium, low = (session.get(DissuasionTask, i) for i in ids)
        assert (medium.community, medium.assignee_id) == (B, people["officer_b"])
        assert medium.deadline_at.replace(tzinfo=timezone.utc) == now + timedelta(hours=2)
        assert (low.community, low.assignee_id, low.desk) == (None, people["desk"], "反诈")
        assert low.resident_id is None
        assert low.deadline_at.replace(tzinfo=timezone.utc) == now + timedelta(hours=24)


def test_the_same_external_id_again_is_the_same_task(people):
    with db.session_scope() as session:
        first = dissuasion.ingest_leads(session=session, leads=[lead("E1")], actor=None)
        again = dissuasion.ingest_leads(
            session=session, leads=[lead("E1"), lead("E1"), lead("E1", source="other")], actor=None
        )
        assert again.task_ids[:2] == first.task_ids * 2
        assert again.task_ids[2] != first.task_ids[0]  # unique per source
        assert (again.created, again.duplicates) == (1, 2)


def test_scoping_of_the_task_list(people):
    with db.session_scope() as session:
        ids = dissuasion.ingest_leads(
            session=session,
            leads=[lead("SA", address="万景社区"), lead("SB", address="清水湖社区")],
            actor=None,
        ).task_ids
        seen = {
            name: {
                t.id
                for t in dissuasion.list_tasks(session=session, user=user(session, people, name))
            }
            for name in ("officer_a", "officer_b", "desk", "commander")
        }
        assert seen == {
            "officer_a": {ids[0]},
            "officer_b": {ids[1]},
            "desk": set(ids),
            "commander": set(ids),
        }
        with pytest.raises(NotFound):
            dissuasion.task_detail(
                session=session, user=user(session, people, "officer_b"), task_id=ids[0]
            )
        with pytest.raises(NotAllowed):
            dissuasion.list_tasks(session=session, user=user(session, people, "trainer"))
        detail = dissuasion.task_detail(
            session=session, user=user(session, people, "officer_a"), task_id=ids[0]
        )
        assert detail.phone == "13800001234" and detail.phone_masked == "138****1234"


def test_a_page_of_the_task_list_counts_only_what_the_user_may_see(people):
    """task_page: the total is scoped like the list, the page is a slice of the list's
    order, and a page size or offset out of range is refused."""
    with db.session_scope() as session:
        ids = dissuasion.ingest_leads(
            session=session,
            leads=[lead(f"PG{n}", address="万景社区") for n in range(4)]
            + [lead("PGB", address="清水湖社区")],
            actor=None,
        ).task_ids
        officer_a = user(session, people, "officer_a")
        page = dissuasion.task_page(session=session, user=officer_a, limit=3, offset=2)
        assert page.total == 4
        assert [t.id for t in page.items] == ids[2:4]  # one deadline: ties go by id
        everything = dissuasion.task_page(session=session, user=user(session, people, "desk"))
        assert (everything.total, len(everything.items)) == (5, 5)
        for limit, offset in ((0, 0), (1, -1)):
            with pytest.raises(CaseError):
                dissuasion.task_page(session=session, user=officer_a, limit=limit, offset=offset)


def test_unreachable_needs_a_visit(people):
    with db.session_scope() as session:
        [task_id] = dissuasion.ingest_leads(
            session=session,
            leads=[lead("U")],
            actor=None,
        ).task_ids
        officer = user(session, people, "desk")
        dissuasion.record_attempt(
            session=session,
            user=officer,
            task_id=task_id,
            channel="phone",
            reached=False,
            note="无人接听",
        )
        with pytest.raises(Conflict, match="上门"):
            dissuasion.set_outcome(
                session=session, user=officer, task_id=task_id, outcome="unreachable"
            )
        with pytest.raises(CaseError, match="channel"):
            dissuasion.record_attempt(
                session=session, user=officer, task_id=task_id, channel="fax", reached=False
            )
        dissuasion.record_attempt(
            session=session,
            user=officer,
            task_id=task_id,
            channel="visit",
            reached=False,
            note="家中无人",
        )
        closed = dissuasion.set_outcome(
            session=session, user=officer, task_id=task_id, outcome="unreachable"
        )
        assert (closed.status, closed.outcome, closed.closed_by.name) == (
            "closed",
            "unreachable",
            "desk",
        )
        with pytest.raises(Conflict):  # once
            dissuasion.set_outcome(
                session=session, user=officer, task_id=task_id, outcome="dissuaded"
            )
        with pytest.raises(Conflict):
            dissuasion.record_attempt(
                session=session, user=officer, task_id=task_id, channel="phone", reached=True
            )


def test_dissuaded_keeps_the_amount_protected(people):
    with db.session_scope() as session:
        [task_id] = dissuasion.ingest_leads(session=session, leads=[lead("D")], actor=None).task_ids
        desk = user(session, people, "desk")
        with pytest.raises(CaseError, match="amount_protected"):
            dissuasion.set_outcome(
                session=session,
                user=desk,
                task_id=task_id,
                outcome="defrauded",
                amount_protected=Decimal("5"),
            )
        done = dissuasion.set_outcome(
            session=session,
            user=desk,
            task_id=task_id,
            outcome="dissuaded",
            amount_protected=Decimal("38000.5"),
        )
        assert done.amount_protected == Decimal("38000.50")
        assert session.get(DissuasionTask, task_id).amount_protected_fen == 3800050


def test_defrauded_opens_an_urgent_fraud_case_linked_to_the_task(people):
    with db.session_scope() as session:
        residents.set_profile(
            session=session, openid="o-victim", mobile="13800001234", consent=True
        )
        [task_id] = dissuasion.ingest_leads(
            session=session, leads=[lead("F", address="万景社区 3 幢")], actor=None
        ).task_ids
        done = dissuasion.set_outcome(
            session=session,
            user=user(session, people, "officer_a"),
            task_id=task_id,
            outcome="defrauded",
        )
        case = session.get(Case, done.case_id)
        assert (case.sender_id, case.category, case.priority, case.reason, case.desk) == (
            "o-victim",
            "fraud_suspicion",
            "urgent",
            "dissuasion_defrauded",
            "反诈",
        )
        assert case.details["money_lost"] is True
        assert case.details["dissuasion_task_id"] == task_id
        assert case.details["lead_external_id"] == "F" and case.details["community"] == A
        assert "13800001234" not in case.summary


def test_a_csv_in_gbk_keeps_good_rows_and_reports_bad_ones_by_line(people):
    text = (
        "预警编号,手机号,姓名,地址,风险类型,风险等级,预警时间,来源\n"
        "C1,13800001234,张三,骆驼街道万景社区,刷单返利,高,2026-12-05 10:00,96110\n"
        "C2,1380000,李四,,贷款,低,2026-12-05 10:00,96110\n"
        "\n"
        "C3,0574-86271234,,,游戏交易,中风险,2026-12-05T10:00:00+08:00,96110\n"
        "C4,13900001234,,,冒充客服,极高,2026-12-05 10:00,96110\n"
    )
    with db.session_scope() as session:
        result = dissuasion_csv.upload(
            session=session, user=user(session, people, "desk"), data=text.encode("gbk")
        )
        assert (result.rows, result.created, len(result.task_ids)) == (4, 2, 2)
        assert [(e.line, e.error.split(":")[0]) for e in result.errors] == [
            (3, "phone"),
            (6, "risk_level"),
        ]
        again = dissuasion_csv.upload(
            session=session, user=user(session, people, "commander"), data=text.encode("utf-8")
        )
        assert (again.created, again.duplicates, again.task_ids) == (0, 2, result.task_ids)
        with pytest.raises(NotAllowed):
            dissuasion_csv.upload(
                session=session, user=user(session, people, "officer_a"), data=text.encode()
            )
        with pytest.raises(CaseError, match="缺少列"):
            dissuasion_csv.parse(b"phone,name\n13800001234,x\n")


def test_the_vocabulary_serves_the_dissuasion_codes_and_deadlines():
    from casework import vocabulary

    vocab = vocabulary.vocabulary()
    assert [t.value for t in vocab.risk_types] == list(vocabulary.RISK_TYPES)
    assert {t.value: t.deadline_seconds for t in vocab.risk_levels} == {
        "high": 1800,
        "medium": 7200,
        "low": 86400,
    }
    assert [t.value for t in vocab.dissuasion_outcomes] == list(dissuasion.OUTCOMES)
    assert [t.value for t in vocab.contact_channels] == list(dissuasion.CHANNELS)
    assert set(dissuasion.WARNINGS) == set(vocabulary.RISK_TYPES)


def test_a_defrauded_person_who_is_not_a_wechat_resident_is_worked_by_phone(people):
    """The lead matched no resident: the case can be claimed and closed, but a WeChat
    reply is refused with the reason, and closing queues no rating question."""
    from casework import console, handling
    from casework.models import OutboxItem, Resident

    with db.session_scope() as session:
        [task_id] = dissuasion.ingest_leads(
            session=session, leads=[lead("OFF", phone="13700009999")], actor=None
        ).task_ids
        desk = user(session, people, "desk")
        dissuasion.set_outcome(session=session, user=desk, task_id=task_id, outcome="defrauded")
        case_id = session.get(DissuasionTask, task_id).case_id
        assert not session.get(Case, case_id).sender_id.startswith("o")
        with pytest.raises(Conflict, match="不是微信用户"):
            handling.reply(session=session, user=desk, case_id=case_id, text="您好")
        handling.claim(session=session, user=desk, case_id=case_id)
        detail = console.case_detail(session=session, user=desk, case_id=case_id)
        assert detail.transcript == [] and detail.details["victim_phone"] == "13700009999"
        handling.close(session=session, user=desk, case_id=case_id, resolution="已电话联系止付")
        assert session.get(Case, case_id).status == "closed"
        assert session.execute(select(OutboxItem)).scalars().all() == []
        placeholders = session.execute(
            select(Resident).where(Resident.openid.like("dissuasion:%"))
        ).scalars()
        assert list(placeholders) == []  # no fake resident a broadcast could target
