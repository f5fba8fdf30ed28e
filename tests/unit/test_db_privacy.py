"""SQL errors never print residents' words: every engine hides bound parameters."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from casework import db
from casework.conversations import conversation_for
from casework.models import Message

SECRET_WORDS = "暗号-楼上王阿姨说卡号6222020200112233445"


def test_an_integrity_error_does_not_carry_the_values(database_url):
    with db.session_scope() as session:
        conversation_id = conversation_for(session=session, openid="o-hidden").id
        session.add(
            Message(
                conversation_id=conversation_id,
                direction="in",
                msg_type="text",
                dedupe_key="dup-4711",
                content=SECRET_WORDS,
            )
        )
    with pytest.raises(IntegrityError) as caught, db.session_scope() as session:
        session.add(
            Message(
                conversation_id=conversation_id,
                direction="in",
                msg_type="text",
                dedupe_key="dup-4711",
                content=SECRET_WORDS,
            )
        )
        session.flush()
    text = str(caught.value)
    assert "hide_parameters" in text  # SQLAlchemy says it left them out
    assert SECRET_WORDS not in text and "6222020200112233445" not in text
    # PostgreSQL's own DETAIL still names the duplicated key (here a WeChat MsgId), which
    # hide_parameters cannot remove; the other values, the resident's words, are gone.


def test_every_engine_hides_parameters(database_url):
    assert db.get_engine(database_url).hide_parameters is True
