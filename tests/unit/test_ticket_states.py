"""The ticket status state machine, over its whole table, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from casework import db, tickets
from casework.cases import CaseError, open_ticket
from casework.models import OutboxItem, Ticket

# What each platform status does from each state: moves it, repeats it, or is refused.
FORWARD = {
    "pending": {"accepted", "in_progress", "resolved", "rejected"},
    "sent": {"accepted", "in_progress", "resolved", "rejected"},
    "accepted": {"in_progress", "resolved", "rejected"},
    "in_progress": {"resolved", "rejected"},
    "resolved": set(),
    "rejected": set(),
    "failed": set(),
    "linked": set(),
}


def test_the_table_is_the_one_in_casework():
    assert set(tickets.TICKET_STATES) == set(FORWARD)
    for state, allowed in FORWARD.items():
        platform_moves = {s for s in tickets.STATUSES if tickets.can_move(state, s)}
        assert platform_moves == allowed, state
    assert set(tickets.FINAL_STATES) == {"resolved", "rejected", "failed", "linked"}
    assert not any(tickets.can_move(state, state) for state in tickets.TICKET_STATES)
    assert set(tickets.STATE_LABELS) == set(tickets.TICKET_STATES)


def _ticket_in(state: str, openid: str) -> int:
    with db.session_scope() as session:
        ticket = open_ticket(
            session=session, sender_id=openid, kind="noise", summary="楼上装修", community=None
        )
        ticket.status = state
        return int(ticket.id)


def _told(openid: str) -> int:
    with db.session_scope() as session:
        return session.execute(
            select(func.count()).select_from(OutboxItem).where(OutboxItem.openid == openid)
        ).scalar_one()


@pytest.mark.parametrize("state", list(FORWARD))
def test_every_platform_status_from(state, database_url):
    for status in tickets.STATUSES:
        openid = f"o-{state}-{status}"
        ticket_id = _ticket_in(state, openid)
        with db.session_scope() as session:
            if status in FORWARD[state]:
                change = tickets.apply_status(
                    session=session, ticket_id=ticket_id, status=status, note="备注"
                )
                assert change.changed is True
            elif status == state:
                change = tickets.apply_status(session=session, ticket_id=ticket_id, status=status)
                assert change.changed is False
            else:
                with pytest.raises(tickets.TicketStatusConflict, match=f"cannot become '{status}'"):
                    tickets.apply_status(session=session, ticket_id=ticket_id, status=status)
        with db.session_scope() as session:
            now = session.get(Ticket, ticket_id)
            assert now is not None
            assert now.status == (status if status in FORWARD[state] else state)
        # The resident hears only of a real change, once.
        assert _told(openid) == (1 if status in FORWARD[state] else 0), (state, status)


def test_the_same_status_twice_tells_the_resident_once(database_url):
    ticket_id = _ticket_in("sent", "o-twice")
    for _ in range(3):
        with db.session_scope() as session:
            tickets.apply_status(session=session, ticket_id=ticket_id, status="in_progress")
    assert _told("o-twice") == 1


def test_unknown_statuses_and_tickets(database_url):
    ticket_id = _ticket_in("sent", "o-unknown")
    with db.session_scope() as session:
        for status in ("done", "pending", "sent", "linked", "failed", ""):
            with pytest.raises(CaseError, match="unknown ticket status"):
                tickets.apply_status(session=session, ticket_id=ticket_id, status=status)
        with pytest.raises(LookupError):
            tickets.apply_status(session=session, ticket_id=ticket_id + 100, status="accepted")


def test_mark_sent_never_undoes_a_callback_that_came_first(database_url):
    raced = _ticket_in("pending", "o-race")
    with db.session_scope() as session:
        tickets.apply_status(session=session, ticket_id=raced, status="accepted")
    with db.session_scope() as session:
        assert tickets.mark_sent(session=session, ticket_id=raced) is False
    plain = _ticket_in("pending", "o-plain")
    with db.session_scope() as session:
        assert tickets.mark_sent(session=session, ticket_id=plain) is True
    with db.session_scope() as session:
        assert session.get(Ticket, raced).status == "accepted"
        assert session.get(Ticket, raced).sent_at is not None
        assert session.get(Ticket, plain).status == "sent"
