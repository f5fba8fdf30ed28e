"""A resident's registered mobile (with consent, its time recorded) and community; the
strict mainland phone rule shared with dissuasion leads."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from casework import db, intake, residents
from casework.cases import CaseError
from casework.models import Resident, WarningConsent


@pytest.mark.parametrize(
    "given, digits",
    [
        ("13800001234", "13800001234"),
        ("138-0000-1234", "13800001234"),
        ("+86 138 0000 1234", "13800001234"),
        ("0086-13800001234", "13800001234"),
        ("0574-86271234", "057486271234"),
        ("(010) 62345678", "01062345678"),
    ],
)
def test_mainland_numbers_are_kept_as_digits(given, digits):
    assert residents.normalise_phone(given) == digits


@pytest.mark.parametrize(
    "given", ["", "12345", "12800001234", "1380000123", "138000012345", "0574-0627123", "abc"]
)
def test_anything_else_is_refused(given):
    with pytest.raises(residents.PhoneError):
        residents.normalise_phone(given)


def test_a_landline_is_not_a_registered_mobile():
    with pytest.raises(residents.PhoneError):
        residents.normalise_phone("0574-86271234", mobile_only=True)


def test_masks_keep_only_the_ends():
    assert residents.mask_phone("13800001234") == "138****1234"
    assert residents.mask_phone("057486271234") == "0574****34"


def test_set_profile_records_consent_and_its_time(database_url):
    when = datetime(2026, 12, 5, 6, 0, tzinfo=timezone.utc)
    with db.session_scope(database_url) as session:
        with pytest.raises(CaseError, match="同意"):
            residents.set_profile(session=session, openid="o-1", mobile="13800001234")
        profile = residents.set_profile(
            session=session,
            openid="o-1",
            mobile="138 0000 1234",
            consent=True,
            community="万景社区",
            now=when,
        )
    assert profile.mobile_masked == "138****1234"
    assert profile.mobile_consent_at == when
    assert (profile.community, profile.street) == ("万景社区", "骆驼街道")
    with db.session_scope(database_url) as session:
        found = residents.resident_by_mobile(session=session, mobile="13800001234")
        assert found is not None and found.openid == "o-1"
        # community alone leaves the mobile as it is; an unknown community is refused
        residents.set_profile(session=session, openid="o-1", community="盛兴社区")
        assert residents.resident_by_mobile(session=session, mobile="13800001234") is not None
        with pytest.raises(CaseError, match="未知社区"):
            residents.set_profile(session=session, openid="o-1", community="火星社区")


def test_withdrawing_the_mobile_clears_number_and_consent(database_url):
    with db.session_scope(database_url) as session:
        residents.set_profile(session=session, openid="o-2", mobile="13900001234", consent=True)
        profile = residents.set_profile(session=session, openid="o-2", mobile=None)
        assert (profile.mobile_masked, profile.mobile_consent_at) == (None, None)
        assert residents.resident_by_mobile(session=session, mobile="13900001234") is None
        resident = session.query(Resident).filter_by(openid="o-2").one()
        assert resident.mobile is None


def _consents(session, openid: str) -> list[tuple[str, str]]:
    resident = session.query(Resident).filter_by(openid=openid).one()
    rows = (
        session.query(WarningConsent)
        .filter_by(resident_id=resident.id)
        .order_by(WarningConsent.id)
        .all()
    )
    return [(row.action, row.text) for row in rows]


def test_giving_the_mobile_is_recorded_as_a_consent_without_the_number(database_url):
    when = datetime(2026, 12, 5, 6, 0, tzinfo=timezone.utc)
    with db.session_scope(database_url) as session:
        residents.set_profile(
            session=session, openid="o-3", mobile="13700001234", consent=True, now=when
        )
        assert _consents(session, "o-3") == [("mobile_consent", residents.CONSENT_MOBILE)]
        row = session.query(WarningConsent).one()
        assert row.at.replace(tzinfo=timezone.utc) == when
        assert "13700001234" not in row.text


def test_withdraw_mobile_deletes_the_number_and_records_what_and_when(database_url):
    given = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)
    later = datetime(2026, 12, 5, 8, 30, tzinfo=timezone.utc)
    with db.session_scope(database_url) as session:
        residents.set_profile(
            session=session, openid="o-4", mobile="13600001234", consent=True, now=given
        )
        done = residents.withdraw_mobile(session=session, openid="o-4", now=later)
        assert (done.withdrawn, done.withdrawn_at) == (True, later)
    with db.session_scope(database_url) as session:
        resident = session.query(Resident).filter_by(openid="o-4").one()
        # deleted, not hidden: the column holds nothing, so no lead can match by it
        assert (resident.mobile, resident.mobile_consent_at) == (None, None)
        assert residents.resident_by_mobile(session=session, mobile="13600001234") is None
        assert _consents(session, "o-4") == [
            ("mobile_consent", residents.CONSENT_MOBILE),
            ("mobile_withdrawn", residents.CONSENT_MOBILE_WITHDRAWN),
        ]
        withdrawal = session.query(WarningConsent).filter_by(action="mobile_withdrawn").one()
        assert withdrawal.at.replace(tzinfo=timezone.utc) == later
        assert withdrawal.source == "wechat"


def test_withdraw_mobile_without_a_number_changes_and_records_nothing(database_url):
    with db.session_scope(database_url) as session:
        residents.set_profile(session=session, openid="o-5", community="万景社区")
        done = residents.withdraw_mobile(session=session, openid="o-5")
        assert (done.withdrawn, done.withdrawn_at) == (False, None)
        assert _consents(session, "o-5") == []
        assert residents.profile(session=session, openid="o-5").community == "万景社区"


def test_withdraw_mobile_twice_records_one_withdrawal(database_url):
    with db.session_scope(database_url) as session:
        residents.set_profile(session=session, openid="o-6", mobile="13500001234", consent=True)
        assert residents.withdraw_mobile(session=session, openid="o-6").withdrawn is True
        assert residents.withdraw_mobile(session=session, openid="o-6").withdrawn is False
        actions = [action for action, _ in _consents(session, "o-6")]
        assert actions == ["mobile_consent", "mobile_withdrawn"]


def test_unfollowing_the_account_deletes_the_mobile_and_records_why(database_url):
    """DESIGN rule 7 (nothing kept for ever): a resident who unfollows leaves no number."""
    with db.session_scope(database_url) as session:
        residents.set_profile(session=session, openid="o-9", mobile="13500001234", consent=True)
    with db.session_scope(database_url) as session:
        intake.store_inbound(
            session=session,
            signed=None,
            openid="o-9",
            dedupe_key="event:o-9:unsubscribe:1",
            msg_type="event",
            content="",
            media={},
            event="unsubscribe",
        )
    with db.session_scope(database_url) as session:
        resident = session.query(Resident).filter_by(openid="o-9").one()
        assert (resident.mobile, resident.mobile_consent_at, resident.subscribed) == (
            None,
            None,
            False,
        )
        assert residents.resident_by_mobile(session=session, mobile="13500001234") is None
        withdrawal = session.query(WarningConsent).filter_by(action="mobile_withdrawn").one()
        assert withdrawal.source == "unfollow"
