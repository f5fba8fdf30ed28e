"""The officers' queue as SQL: filters, search, a stable order, pages, and unread counts.

Everything happens in the database, scoped exactly as every other read of cases
(`handling.scope_filter`): a filter or a search only ever narrows what the user may see,
so an officer never finds another community's case by searching for its words.

- Filters: `status` (active | open | claimed | closed), `mine` (claimed by me, or routed to
  me and not yet claimed by anyone), `unclaimed` (status open: 待认领), `urgent`,
  `category`, `community`, and `q` — a substring of the case summary or of anything the
  resident wrote (their inbound messages).
- Order: most urgent first; then the cases still waiting for a first reply, least time
  left first (within a priority the oldest waiting); then the rest; the id breaks ties, so
  pages never overlap or skip a case.
- Unread: per officer, `case_reads` holds the last message id they were shown (opening
  the case or replying upserts it). A case's unread count is the resident's inbound
  messages after the highest marker the officer holds on any case of that resident — the
  case view shows the whole conversation — and, for a closed case, sent before it closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from casework import handling
from casework.cases import CATEGORIES, PRIORITIES, CaseError
from casework.clock import utcnow
from casework.models import Case, CaseRead, Conversation, Message, User
from casework.upsert import insert_for

STATUSES = ("active", "open", "claimed", "closed")
MAX_LIMIT = 200  # the shared pagination convention: limit 1–200, default 50
DEFAULT_LIMIT = 50
MAX_QUERY_LENGTH = 100
MAX_COMMUNITY_LENGTH = 64
LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class CaseFilters:
    """What the queue asks for; `check()` refuses anything malformed with a clear message."""

    status: str = "active"
    mine: bool = False
    unclaimed: bool = False
    urgent: bool = False
    category: str | None = None
    community: str | None = None
    q: str | None = None

    def check(self) -> CaseFilters:
        """A cleaned copy (blank text filters dropped), or CaseError (422)."""
        if self.status not in STATUSES:
            raise CaseError(f"未知的状态筛选 {self.status!r}，可选：{'、'.join(STATUSES)}")
        category = (self.category or "").strip() or None
        if category is not None and category not in CATEGORIES:
            raise CaseError(f"未知的案件类别 {category!r}")
        community = (self.community or "").strip() or None
        if community is not None and len(community) > MAX_COMMUNITY_LENGTH:
            raise CaseError(f"社区名称过长（最多 {MAX_COMMUNITY_LENGTH} 个字）")
        q = " ".join((self.q or "").split()) or None
        if q is not None and len(q) > MAX_QUERY_LENGTH:
            raise CaseError(f"搜索内容过长（最多 {MAX_QUERY_LENGTH} 个字）")
        return CaseFilters(
            status=self.status,
            mine=self.mine,
            unclaimed=self.unclaimed,
            urgent=self.urgent,
            category=category,
            community=community,
            q=q,
        )


def check_page(limit: int, offset: int) -> None:
    """The shared convention's bounds (the routes check them too, as 422s)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise CaseError(f"limit 须在 1–{MAX_LIMIT} 之间")
    if offset < 0:
        raise CaseError("offset 不能为负数")


def like_pattern(text: str) -> str:
    """`%text%` with LIKE's own wildcards in `text` taken literally."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(user: User, filters: CaseFilters) -> list[Any]:
    conditions: list[Any] = []
    if filters.status == "active":
        conditions.append(Case.status != "closed")
    else:
        conditions.append(Case.status == filters.status)
    if not handling.sees_everything(user):
        conditions.append(handling.scope_filter(user))
    if filters.mine:
        conditions.append(
            or_(
                Case.claimed_by_id == user.id,
                and_(Case.claimed_by_id.is_(None), Case.assigned_to_id == user.id),
            )
        )
    if filters.unclaimed:
        conditions.append(Case.status == "open")
    if filters.urgent:
        conditions.append(Case.priority == "urgent")
    if filters.category:
        conditions.append(Case.category == filters.category)
    if filters.community:
        conditions.append(Case.community == filters.community)
    if filters.q:
        pattern = like_pattern(filters.q)
        resident_said = (
            select(Message.id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                Conversation.openid == Case.sender_id,
                Message.direction == "in",
                Message.content.ilike(pattern, escape=LIKE_ESCAPE),
            )
        )
        conditions.append(
            or_(Case.summary.ilike(pattern, escape=LIKE_ESCAPE), resident_said.exists())
        )
    return conditions


def _order() -> list[Any]:
    rank = case({p: i for i, p in enumerate(PRIORITIES)}, value=Case.priority, else_=99)
    waiting = and_(Case.first_reply_at.is_(None), Case.status != "closed", Case.due_at.is_not(None))
    return [rank, case((waiting, 0), else_=1), case((waiting, Case.due_at), else_=None), Case.id]


def find(
    *,
    session: Session,
    user: User,
    filters: CaseFilters,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> tuple[list[Case], int]:
    """One page of the user's queue and how many cases match in all."""
    handling.check_reader(user)
    check_page(limit, offset)
    filters = filters.check()
    conditions = _conditions(user, filters)
    # The total rides along with the page (one pass over the matches, not two)...
    rows = session.execute(
        select(Case, func.count(Case.id).over())
        .where(*conditions)
        .order_by(*_order())
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        return [case for case, _ in rows], int(rows[0][1])
    # ...unless the page is past the end: then it is counted on its own.
    total = (
        0
        if offset == 0
        else session.execute(select(func.count(Case.id)).where(*conditions)).scalar_one()
    )
    return [], int(total)


def unread_counts(*, session: Session, user: User, case_ids: list[int]) -> dict[int, int]:
    """Inbound resident messages the user has not been shown, per case (absent: none)."""
    if not case_ids:
        return {}
    other = aliased(Case)
    marker = (
        select(func.coalesce(func.max(CaseRead.last_read_message_id), 0))
        .join(other, other.id == CaseRead.case_id)
        .where(CaseRead.user_id == user.id, other.sender_id == Case.sender_id)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Case.id, func.count(Message.id))
        .join(Conversation, Conversation.openid == Case.sender_id)
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            Case.id.in_(case_ids),
            Message.direction == "in",
            Message.msg_type != "event",  # a menu tap or a (un)subscribe is not words
            Message.id > marker,
            or_(Case.closed_at.is_(None), Message.created_at <= Case.closed_at),
        )
        .group_by(Case.id)
    ).all()
    return {int(case_id): int(count) for case_id, count in rows}


def mark_read(*, session: Session, user: User, case_id: int, conversation_id: int) -> None:
    """The user has been shown the conversation up to its latest message. The marker only
    moves forward, so two tabs reading at once cannot set it back."""
    latest = session.execute(
        select(func.max(Message.id)).where(Message.conversation_id == conversation_id)
    ).scalar()
    if latest is None:
        return
    table = CaseRead.__table__
    statement = insert_for(session, table).values(
        case_id=case_id, user_id=user.id, last_read_message_id=int(latest), read_at=utcnow()
    )
    newer = statement.excluded.last_read_message_id
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.case_id, table.c.user_id],
        set_={
            "last_read_message_id": case(
                (table.c.last_read_message_id > newer, table.c.last_read_message_id),
                else_=newer,
            ),
            "read_at": statement.excluded.read_at,
        },
    )
    session.execute(statement)
