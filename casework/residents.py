"""What a resident tells us about themselves: the mobile number they registered (with
consent, for targeted warnings and for matching dissuasion leads) and their community.

Residents set these in the bot (the 我的社区 intake, `actions/community.py`; an intake's
address fills a missing community); this module is the one writer. Phone numbers are kept
as digits only (`normalise_phone`), so a lead's "138-0000-1234" and a resident's
"+86 13800001234" meet.

Giving the mobile and withdrawing it (`withdraw_mobile`, "把我的手机号删了" in the bot)
are consents like the warning topics': each is recorded in `warning_consents` with the
wording and the time (`mobile_consent` / `mobile_withdrawn`). A withdrawal deletes the
number — the column is cleared, not flagged — so no later lead can match the resident by
it; the consent rows never hold the number.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.cases import CaseError
from casework.clock import aware, utcnow
from casework.conversations import conversation_for
from casework.gazetteer import STREETS, match_place
from casework.models import Resident, WarningConsent

# Mainland numbers, strictly: a mobile is 11 digits 1[3-9]xxxxxxxxx; a landline is the
# area code (0 + 2 or 3 digits) and a local number of 7 or 8 digits not starting with 0/1.
# python-stdnum has no rule for Chinese phone numbers, hence these.
MOBILE = re.compile(r"1[3-9]\d{9}")
LANDLINE = re.compile(r"0(?:10|2\d|[3-9]\d{2})[2-9]\d{6,7}")
_SEPARATORS = re.compile(r"[\s\-()（）]")
_COUNTRY_CODE = re.compile(r"^(?:\+86|0086|86)(?=1[3-9]\d{9}$)")
COMMUNITIES = {community: street for street, names in STREETS.items() for community in names}
# The wording recorded with each change (`warning_consents.text`), as the bot puts it.
CONSENT_MOBILE = "同意将本人手机号用于镇海警民通的反诈预警和劝阻联系。可随时撤回。"
CONSENT_MOBILE_WITHDRAWN = "撤回手机号授权：删除登记的手机号，不再用于反诈预警和劝阻联系。"


class PhoneError(CaseError):
    """Not a mainland mobile or landline number."""


def normalise_phone(value: str, *, mobile_only: bool = False) -> str:
    """The number as digits (country code and separators dropped), or PhoneError."""
    digits = _COUNTRY_CODE.sub("", _SEPARATORS.sub("", value or ""))
    if MOBILE.fullmatch(digits):
        return digits
    if not mobile_only and LANDLINE.fullmatch(digits):
        return digits
    kind = "手机号" if mobile_only else "手机号或固定电话"
    raise PhoneError(f"号码格式不正确，应为中国大陆{kind}")


def mask_phone(digits: str) -> str:
    """138****1234 for a mobile, 0574****34 for a landline: enough to tell two apart."""
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}****{digits[-4:]}"
    return f"{digits[:4]}****{digits[-2:]}" if len(digits) > 6 else "****"


def street_of(community: str | None) -> str | None:
    return COMMUNITIES.get(community) if community else None


class ResidentProfilePublic(BaseModel):
    openid: str
    mobile_masked: str | None
    mobile_consent_at: datetime | None
    community: str | None
    street: str | None


def profile_public(resident: Resident) -> ResidentProfilePublic:
    return ResidentProfilePublic(
        openid=resident.openid,
        mobile_masked=mask_phone(resident.mobile) if resident.mobile else None,
        mobile_consent_at=aware(resident.mobile_consent_at),
        community=resident.community,
        street=street_of(resident.community),
    )


def profile(*, session: Session, openid: str) -> ResidentProfilePublic:
    """What the resident has registered (nothing yet: all None)."""
    resident_id = conversation_for(session=session, openid=openid).resident_id
    resident = session.get(Resident, resident_id)
    assert resident is not None
    return profile_public(resident)


_UNCHANGED = object()


def set_profile(
    *,
    session: Session,
    openid: str,
    mobile: str | None | object = _UNCHANGED,
    consent: bool = False,
    community: str | None | object = _UNCHANGED,
    now: datetime | None = None,
) -> ResidentProfilePublic:
    """Record the resident's mobile and/or community (each only when given).

    A mobile is kept only with the resident's consent, and that consent is recorded
    (`warning_consents`, with its time); giving `None` (or "") withdraws it as
    `withdraw_mobile` does: number and consent time are cleared, the withdrawal recorded.
    The community must be one of the district's (`casework.gazetteer`); None clears it.
    """
    resident_id = conversation_for(session=session, openid=openid).resident_id
    resident = session.get(Resident, resident_id)
    assert resident is not None
    if mobile is not _UNCHANGED:
        if not mobile:
            _withdraw(session, resident, source="wechat", now=now or utcnow())
        else:
            if not consent:
                raise CaseError("登记手机号须经本人同意（consent）")
            resident.mobile = normalise_phone(str(mobile), mobile_only=True)
            resident.mobile_consent_at = now or utcnow()
            _record_consent(
                session,
                resident,
                "mobile_consent",
                CONSENT_MOBILE,
                "wechat",
                resident.mobile_consent_at,
            )
    if community is not _UNCHANGED:
        if community and community not in COMMUNITIES:
            raise CaseError(f"未知社区：{community}")
        resident.community = community or None
    session.flush()
    return profile_public(resident)


class MobileWithdrawalPublic(BaseModel):
    """What `withdraw_mobile` did: `withdrawn` is False when no number was registered."""

    openid: str
    withdrawn: bool
    withdrawn_at: datetime | None


def _record_consent(
    session: Session, resident: Resident, action: str, text: str, source: str, at: datetime
) -> None:
    session.add(
        WarningConsent(resident_id=resident.id, action=action, text=text, source=source, at=at)
    )


def _withdraw(session: Session, resident: Resident, *, source: str, now: datetime) -> bool:
    """Delete the number and its consent time; record the withdrawal. False (nothing
    recorded) when there was no number to withdraw."""
    if resident.mobile is None and resident.mobile_consent_at is None:
        return False
    resident.mobile = resident.mobile_consent_at = None
    _record_consent(session, resident, "mobile_withdrawn", CONSENT_MOBILE_WITHDRAWN, source, now)
    return True


def withdraw_mobile(
    *, session: Session, openid: str, source: str = "wechat", now: datetime | None = None
) -> MobileWithdrawalPublic:
    """The resident withdraws their mobile (撤回手机号授权): the number is deleted at once,
    so no warning or dissuasion lead reaches them by it, and the withdrawal is recorded
    (what, when). Idempotent: with no number registered nothing changes."""
    now = now or utcnow()
    resident_id = conversation_for(session=session, openid=openid).resident_id
    resident = session.get(Resident, resident_id)
    assert resident is not None
    withdrawn = _withdraw(session, resident, source=source, now=now)
    session.flush()
    return MobileWithdrawalPublic(
        openid=openid, withdrawn=withdrawn, withdrawn_at=now if withdrawn else None
    )


def resident_by_mobile(*, session: Session, mobile: str) -> Resident | None:
    """The resident who registered this mobile with consent (the most recently seen one if
    several did: a number passed on to a family member)."""
    return (
        session.execute(
            select(Resident)
            .where(Resident.mobile == mobile, Resident.mobile_consent_at.is_not(None))
            .order_by(Resident.last_seen_at.desc(), Resident.id.desc())
            .limit(1)
        )
        .scalars()
        .first()
    )


def adopt_community(*, session: Session, resident_id: int, text: str | None) -> str | None:
    """A community the resident named without being asked (a shared location's label, an
    intake's address) becomes theirs — only while they have none: what a resident chose
    through 我的社区 is never overwritten by where they happened to be. Returns the
    community adopted, if any."""
    place = match_place(text or "")
    if place is None or place.community is None:
        return None
    resident = session.get(Resident, resident_id)
    if resident is None or resident.community is not None:
        return None
    resident.community = place.community
    return place.community
