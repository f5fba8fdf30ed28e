"""Who handles a case: the community officer (社区民警) of where it happened, or the desk
its type needs (反诈, 法制, ...). Emergencies and anything unroutable also go to the
duty commander (情报指挥中心)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework.cases import RESPONSE_TARGETS
from casework.gazetteer import Place, match_place
from casework.models import Case, Conversation, User


@dataclass(frozen=True)
class Routing:
    assignee: User | None
    commander: User | None  # also told: emergencies and unroutable cases
    place: Place | None


def place_of(session: Session, case: Case) -> Place | None:
    """Where it happened: what the intake recorded, the location the resident typed or
    shared, or a place named in the first message."""
    details = case.details or {}
    if details.get("street") or details.get("community"):
        return Place(street=details.get("street"), community=details.get("community"))
    conversation = session.execute(
        select(Conversation).where(Conversation.openid == case.sender_id)
    ).scalar_one_or_none()
    for text in (
        case.location,
        conversation.location_label if conversation else None,
        details.get("first_message"),
    ):
        if text:
            place = match_place(str(text))
            if place is not None:
                return place
    return None


def _least_loaded(session: Session, officers: list[User]) -> User | None:
    if not officers:
        return None
    load = dict(
        session.execute(
            select(Case.assigned_to_id, func.count())
            .where(Case.status != "closed", Case.assigned_to_id.in_([o.id for o in officers]))
            .group_by(Case.assigned_to_id)
        ).all()
    )
    return min(officers, key=lambda officer: (load.get(officer.id, 0), officer.id))


def duty_commander(session: Session) -> User | None:
    commanders = list(
        session.execute(
            select(User).where(User.role == "commander", User.active.is_(True)).order_by(User.id)
        ).scalars()
    )
    on_duty = [c for c in commanders if c.on_duty]
    return (on_duty or commanders or [None])[0]


def route(*, session: Session, case: Case) -> Routing:
    place = place_of(session, case)
    officers = select(User).where(User.role == "officer", User.active.is_(True))
    assignee = None
    if case.desk:
        desk_officers = list(session.execute(officers.where(User.desk == case.desk)).scalars())
        assignee = _least_loaded(session, desk_officers)
    if assignee is None and place is not None and place.community:
        local = list(session.execute(officers.where(User.community == place.community)).scalars())
        assignee = _least_loaded(session, local)
    needs_commander = case.category == "emergency" or assignee is None
    return Routing(assignee, duty_commander(session) if needs_commander else None, place)


def apply(*, session: Session, case: Case) -> Routing:
    """Route the case and record where it went and when the first reply is due."""
    routing = route(session=session, case=case)
    if routing.place is not None:
        case.street, case.community = routing.place.street, routing.place.community
    assignee = routing.assignee or routing.commander
    case.assigned_to_id = assignee.id if assignee else None
    if case.due_at is None:
        case.due_at = case.created_at + RESPONSE_TARGETS[case.priority]
    return routing


# ------------------------------------------------------------------ who is told (issue 12)


def officers_for(*, session: Session, case: Case) -> list[User]:
    """The officers routing considers for the case — its desk's, else its community's —
    each told personally (`casework.case_notices`), whoever of them gets the case."""
    officers = select(User).where(User.role == "officer", User.active.is_(True))
    if case.desk:
        officers = officers.where(User.desk == case.desk)
    elif case.community:
        officers = officers.where(User.community == case.community)
    else:
        return []
    return list(session.execute(officers.order_by(User.id)).scalars())


def alert_commanders(session: Session) -> list[User]:
    """The commanders an urgent case rings: those on duty, else the duty commander."""
    commanders = list(
        session.execute(
            select(User)
            .where(User.role == "commander", User.active.is_(True), User.on_duty.is_(True))
            .order_by(User.id)
        ).scalars()
    )
    if commanders:
        return commanders
    fallback = duty_commander(session)
    return [fallback] if fallback else []
