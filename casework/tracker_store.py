"""Reads of Rasa's SQL tracker store (its `events` table), for what the gateway needs
without asking a Rasa replica: every replica writes the same store, and a read here costs
Rasa nothing, where GET /conversations/{id}/tracker makes a replica load and replay the
whole conversation (issue 10: the parse-recording call was part of the gateway's
overhead)."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import column, select, table
from sqlalchemy.exc import SQLAlchemyError

from casework import db

logger = logging.getLogger(__name__)

_EVENTS = table("events", column("id"), column("sender_id"), column("type_name"), column("data"))


def latest_user_parse(*, tracker_url: str, sender_id: str) -> dict[str, Any] | None:
    """The NLU parse (intent, intent_ranking, entities) of the sender's latest message as
    Rasa stored it, or None when the store has none or cannot be read (the caller then
    asks Rasa). Rasa saves the tracker before its REST channel answers, so the message
    just answered is there."""
    engine = db.foreign_engine(tracker_url)
    try:
        with engine.connect() as connection:
            data = connection.execute(
                select(_EVENTS.c.data)
                .where(_EVENTS.c.sender_id == sender_id, _EVENTS.c.type_name == "user")
                .order_by(_EVENTS.c.id.desc())
                .limit(1)
            ).scalar()
    except SQLAlchemyError as error:  # not there yet (no table), or unreachable
        logger.debug("could not read Rasa's tracker store: %s", type(error).__name__)
        return None
    if data is None:
        return None
    try:
        parse = json.loads(data).get("parse_data")
    except (ValueError, AttributeError):
        return None
    return parse if isinstance(parse, dict) else None
