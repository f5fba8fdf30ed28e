"""Console sessions in the domain layer and at the operator's shell, on SQLite and
PostgreSQL: revision 0011, bearer tokens against logout everywhere to the microsecond,
password resets and `jmt user logout`, pruning of ended sessions."""

from __future__ import annotations

import io
import sys
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import func, select

from casework import accounts, db, sessions
from casework.clock import utcnow
from casework.models import AuditEntry, ConsoleSession, User
from jmt import cli
from tests.unit.test_migration_0006 import _alembic

PASSWORD = "correct-horse"
SECRET = "jmt-unit-test-secret-0123456789abcdef"
POLICY = sessions.Policy.of(idle_minutes=120, max_hours=12)


def add_user(name: str) -> None:
    with db.session_scope() as session:
        accounts.create_user(session=session, username=name, password=PASSWORD, role="officer")


def user(session, name: str) -> User:
    return session.execute(select(User).where(User.username == name)).scalar_one()


def open_for(name: str, **kwargs) -> str:
    with db.session_scope() as session:
        opened = sessions.open_session(
            session=session,
            user=user(session, name),
            policy=POLICY,
            client_ip="10.0.0.1",
            user_agent="DingTalk/7.0",
            **kwargs,
        )
        return opened.token


def live(token: str) -> bool:
    with db.session_scope() as session:
        return sessions.resolve(session=session, token=token, policy=POLICY) is not None


def token_user(token: str) -> User | None:
    with db.session_scope() as session:
        claims = accounts.read_token(token, secret=SECRET)
        return accounts.bearer_user(session=session, claims=claims)


def issue(name: str) -> str:
    with db.session_scope() as session:
        return accounts.issue_token(user=user(session, name), secret=SECRET)


def test_0011_goes_down_and_up_again(database_url):
    _alembic(database_url, command.downgrade, "0010")
    inspector = sa.inspect(db.get_engine(database_url))
    assert "console_sessions" not in inspector.get_table_names()
    assert "tokens_valid_after" not in {c["name"] for c in inspector.get_columns("users")}
    _alembic(database_url, command.upgrade, "head")
    inspector = sa.inspect(db.get_engine(database_url))
    columns = {c["name"] for c in inspector.get_columns("console_sessions")}
    assert columns == {
        "id",
        "user_id",
        "created_at",
        "last_seen_at",
        "expires_at",
        "revoked_at",
        "client_ip",
        "user_agent",
    }
    assert "tokens_valid_after" in {c["name"] for c in inspector.get_columns("users")}


def test_a_token_issued_a_moment_after_logout_everywhere_counts_one_before_does_not(
    database_url,
):
    add_user("zhang")
    before = issue("zhang")
    with db.session_scope() as session:
        sessions.revoke_everywhere(session=session, user=user(session, "zhang"))
    after = issue("zhang")  # most likely within the same second as the logout
    assert token_user(before) is None
    assert token_user(after) is not None


def test_a_token_without_a_precise_issue_time_counts_from_its_whole_second(database_url):
    add_user("zhang")
    with db.session_scope() as session:
        zhang = user(session, "zhang")
        issued = utcnow().replace(microsecond=0)
        zhang.tokens_valid_after = issued + timedelta(milliseconds=500)
        legacy = {
            "sub": str(zhang.id),
            "name": "zhang",
            "role": "officer",
            "iat": int(issued.timestamp()),
            "exp": int((issued + timedelta(hours=1)).timestamp()),
        }
    token = jwt.encode(legacy, SECRET, algorithm="HS256")
    assert accounts.read_token(token, secret=SECRET).issued_us % 10**6 == 0
    assert token_user(token) is None  # issued in that second: never spared


@pytest.mark.parametrize("claims", [{"iat_us": "soon"}, {"iat_us": None}])
def test_a_signed_token_with_a_malformed_issue_time_is_refused_not_a_crash(database_url, claims):
    payload = {"sub": "1", "name": "zhang", "role": "officer", "iat": 1, "exp": 4102444800}
    token = jwt.encode(payload | claims, SECRET, algorithm="HS256")
    with pytest.raises(accounts.AuthError):
        accounts.read_token(token, secret=SECRET)


def test_a_password_reset_signs_the_account_out_everywhere(database_url):
    add_user("zhang")
    cookie, token = open_for("zhang"), issue("zhang")
    with db.session_scope() as session:
        accounts.reset_password(session=session, username="zhang", password="another-horse")
    assert not live(cookie) and token_user(token) is None


def test_an_unknown_or_overlong_cookie_opens_nothing(database_url):
    add_user("zhang")
    open_for("zhang")
    assert not live("")
    assert not live("made-up")
    assert not live("x" * 5000)


def test_a_session_opened_while_logout_everywhere_ran_is_ended_too(database_url):
    """The login committed after the logout's UPDATE: created_at says it is older."""
    add_user("zhang")
    start = utcnow()
    token = open_for("zhang", now=start)
    with db.session_scope() as session:
        zhang = user(session, "zhang")
        zhang.tokens_valid_after = start + timedelta(milliseconds=1)
    assert not live(token)


def test_sessions_that_ended_a_day_ago_are_pruned_at_the_next_login(database_url):
    add_user("zhang")
    long_ago = utcnow() - timedelta(days=3)
    old = open_for("zhang", now=long_ago)
    ended = open_for("zhang")
    with db.session_scope() as session:
        sessions.revoke(session=session, session_id=sessions.hash_token(ended))
    open_for("zhang")
    with db.session_scope() as session:
        ids = set(session.execute(select(ConsoleSession.id)).scalars())
    assert sessions.hash_token(old) not in ids  # past its lifetime for more than a day
    assert sessions.hash_token(ended) in ids  # revoked just now: kept for a day
    assert len(ids) == 2


def run(monkeypatch, capsys, argv: list[str]) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_jmt_user_logout_ends_every_session_and_token_of_that_user(
    database_url, monkeypatch, capsys
):
    add_user("zhang")
    add_user("li")
    phone, laptop, token = open_for("zhang"), open_for("zhang"), issue("zhang")
    other = open_for("li")
    code, out, _ = run(monkeypatch, capsys, ["user", "logout", "zhang"])
    assert code == 0
    assert "2 console session(s) ended" in out
    assert not live(phone) and not live(laptop) and token_user(token) is None
    assert live(other)
    assert live(open_for("zhang"))  # signing in again works
    with db.session_scope() as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "logout_everywhere")
        ).scalar_one()
        assert entry.detail == {"via": "cli", "sessions_ended": 2}
    code, _, err = run(monkeypatch, capsys, ["user", "logout", "nobody"])
    assert code == 2 and "no user 'nobody'" in err


def test_jmt_user_disable_ends_the_sessions(database_url, monkeypatch, capsys):
    add_user("zhang")
    cookie = open_for("zhang")
    assert run(monkeypatch, capsys, ["user", "disable", "zhang"])[0] == 0
    assert not live(cookie)
    with db.session_scope() as session:
        revoked = session.execute(
            select(func.count())
            .select_from(ConsoleSession)
            .where(ConsoleSession.revoked_at.is_not(None))
        ).scalar()
    assert revoked == 1
