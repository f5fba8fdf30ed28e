"""紧急止付 (emergency stop-payment) on fraud cases: when money has already left, the officer
asks the bank to stop it, then records how much was frozen and recovered.

Minutes matter, so each request shows the time from the resident's first message of this
report to the request: the first inbound message of the resident's conversation in the
day before the case was opened (and after their previous case closed), else the case's
opening (a case from a dissuasion lead has no message). Accounts are kept as digits and
only ever shown masked; amounts are kept in 分 and shown in 元. Once the case is closed
and past the retention period the account is cleared (`casework.retention`); the amounts
stay.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework import audit, handling
from casework.cases import CaseError
from casework.clock import aware, utcnow
from casework.dissuasion import person_ref, to_fen, to_yuan
from casework.dissuasion_schemas import CaseStopPayments, StopPaymentPublic
from casework.handling import NotFound
from casework.models import Case, Conversation, Message, StopPayment, User

FRAUD = "fraud_suspicion"
REPORT_WINDOW = timedelta(hours=24)  # how far before the case its first message may be
_ACCOUNT = re.compile(r"[0-9A-Za-z]{6,40}")


PURGED_ACCOUNT = "已清除"  # shown once retention cleared the account (casework.retention)


def mask_account(account: str) -> str:
    if not account:
        return PURGED_ACCOUNT
    return f"{account[:4]}{'*' * max(len(account) - 8, 4)}{account[-4:]}"


def _fraud_case(session: Session, user: User, case_id: int) -> Case:
    case = handling.get_case(session=session, user=user, case_id=case_id)
    if case is None:
        raise NotFound("案件不存在")
    if case.category != FRAUD:
        raise CaseError("紧急止付只用于涉诈案件")
    return case


def first_message_at(session: Session, case: Case) -> datetime | None:
    """The resident's first message of this report (see the module docstring)."""
    opened = aware(case.created_at)
    since = opened - REPORT_WINDOW
    previous_close = session.execute(
        select(func.max(Case.closed_at)).where(
            Case.sender_id == case.sender_id, Case.id != case.id, Case.closed_at <= opened
        )
    ).scalar_one_or_none()
    if previous_close is not None:
        since = max(since, aware(previous_close))
    first = session.execute(
        select(func.min(Message.created_at))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.openid == case.sender_id,
            Message.direction == "in",
            Message.created_at >= since,
            Message.created_at <= opened,
        )
    ).scalar_one_or_none()
    return aware(first) if first is not None else None


def _public(session: Session, item: StopPayment, first: datetime | None) -> StopPaymentPublic:
    requested = aware(item.requested_at)
    return StopPaymentPublic(
        id=item.id,
        case_id=item.case_id,
        bank=item.bank,
        account_masked=mask_account(item.account),
        amount=to_yuan(item.amount_fen) or Decimal(0),
        requested_at=requested,
        requested_by=person_ref(session, item.requested_by_id),
        frozen=to_yuan(item.frozen_fen),
        recovered=to_yuan(item.recovered_fen),
        result_at=aware(item.result_at),
        result_by=person_ref(session, item.result_by_id),
        seconds_from_first_message=int((requested - first).total_seconds()) if first else None,
    )


def of_case(*, session: Session, user: User, case_id: int) -> CaseStopPayments:
    case = _fraud_case(session, user, case_id)
    first = first_message_at(session, case)
    items = list(
        session.execute(
            select(StopPayment)
            .where(StopPayment.case_id == case.id)
            .order_by(StopPayment.requested_at, StopPayment.id)
        ).scalars()
    )
    public = [_public(session, item, first) for item in items]
    return CaseStopPayments(
        case_id=case.id,
        first_message_at=first,
        seconds_to_first_request=public[0].seconds_from_first_message if public else None,
        amount=sum((p.amount for p in public), Decimal("0.00")),
        frozen=sum((p.frozen or Decimal(0) for p in public), Decimal("0.00")),
        recovered=sum((p.recovered or Decimal(0) for p in public), Decimal("0.00")),
        items=public,
    )


def request(
    *,
    session: Session,
    user: User,
    case_id: int,
    bank: str,
    account: str,
    amount: Decimal,
    requested_at: datetime | None = None,
) -> StopPaymentPublic:
    """Record a stop-payment request sent to a bank (default time: now)."""
    case = _fraud_case(session, user, case_id)
    digits = re.sub(r"[\s\-]", "", account)
    if not _ACCOUNT.fullmatch(digits):
        raise CaseError("账户格式不正确：6–40 位数字或字母")
    if amount <= 0:
        raise CaseError("止付金额须大于 0")
    when = (requested_at or utcnow()).astimezone(timezone.utc)  # SQLite keeps no zone
    if when > utcnow() + timedelta(minutes=5):
        raise CaseError("止付时间不能晚于现在")
    item = StopPayment(
        case_id=case.id,
        bank=bank.strip(),
        account=digits,
        amount_fen=to_fen(amount),
        requested_at=when,
        requested_by_id=user.id,
    )
    session.add(item)
    session.flush()
    audit.record(session, user, "stop_payment_request", "case", case.id, stop_payment_id=item.id)
    return _public(session, item, first_message_at(session, case))


def record_result(
    *,
    session: Session,
    user: User,
    case_id: int,
    stop_payment_id: int,
    frozen: Decimal | None,
    recovered: Decimal | None,
) -> StopPaymentPublic:
    """What the bank achieved: the amount frozen and, later, recovered (元)."""
    case = _fraud_case(session, user, case_id)
    item = session.execute(
        select(StopPayment).where(StopPayment.id == stop_payment_id, StopPayment.case_id == case.id)
    ).scalar_one_or_none()
    if item is None:
        raise NotFound("止付记录不存在")
    if frozen is None and recovered is None:
        raise CaseError("请填写冻结金额或返还金额")
    frozen_fen = to_fen(frozen) if frozen is not None else item.frozen_fen
    recovered_fen = to_fen(recovered) if recovered is not None else item.recovered_fen
    if frozen_fen is not None and frozen_fen > item.amount_fen:
        raise CaseError("冻结金额不能超过止付金额")
    if recovered_fen is not None and recovered_fen > (frozen_fen or 0):
        raise CaseError("返还金额不能超过冻结金额")
    item.frozen_fen, item.recovered_fen = frozen_fen, recovered_fen
    item.result_at, item.result_by_id = utcnow(), user.id
    session.flush()
    audit.record(session, user, "stop_payment_result", "case", case.id, stop_payment_id=item.id)
    return _public(session, item, first_message_at(session, case))
