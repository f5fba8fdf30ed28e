"""Login throttling in the shared database, on SQLite and PostgreSQL: failures counted
atomically per (username, client IP) and per client IP; unknown usernames answer like
known ones; a lock set from one address does not lock the officer out elsewhere."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from casework import accounts, db
from casework.accounts import LoginRefusal, LoginRefused
from casework.clock import utcnow
from casework.models import LoginAttempt, User

PASSWORD = "correct-horse"
ATTACKER = "10.0.0.66"
OFFICE = "10.1.2.3"


def add_user(name: str = "zhang", role: str = "officer") -> None:
    with db.session_scope() as session:
        accounts.create_user(session=session, username=name, password=PASSWORD, role=role)


def attempt(name: str, password: str, ip: str) -> LoginRefusal | None:
    """One login in its own transaction, committed whatever the outcome (as the route does)."""
    with db.session_scope() as session:
        try:
            accounts.authenticate(session=session, username=name, password=password, client_ip=ip)
        except LoginRefused as refused:
            session.commit()
            return refused.reason
        return None


def test_five_failures_lock_the_pair_not_the_account(database_url):
    add_user()
    for _ in range(accounts.MAX_FAILED_LOGINS):
        assert attempt("zhang", "wrong-password", ATTACKER) is LoginRefusal.WRONG
    assert attempt("zhang", PASSWORD, ATTACKER) is LoginRefusal.LOCKED
    assert attempt("zhang", PASSWORD, OFFICE) is None  # the officer still signs in
    with db.session_scope() as session:
        user = session.execute(select(User).where(User.username == "zhang")).scalar_one()
        assert user.locked_until is None  # the account itself is never the lock


def test_four_failures_then_the_right_password_resets_the_pair(database_url):
    add_user()
    for _ in range(accounts.MAX_FAILED_LOGINS - 1):
        attempt("zhang", "wrong-password", OFFICE)
    assert attempt("zhang", PASSWORD, OFFICE) is None
    for _ in range(accounts.MAX_FAILED_LOGINS - 1):
        attempt("zhang", "wrong-password", OFFICE)
    assert attempt("zhang", PASSWORD, OFFICE) is None
    with db.session_scope() as session:
        assert session.get(LoginAttempt, f"user:zhang|{OFFICE}") is None


def test_unknown_usernames_answer_like_known_ones_and_lock_the_same_way(database_url):
    add_user()
    for _ in range(accounts.MAX_FAILED_LOGINS):
        assert attempt("nobody", "wrong-password", ATTACKER) is LoginRefusal.WRONG
        assert attempt("zhang", "wrong-password", ATTACKER) is LoginRefusal.WRONG
    assert attempt("nobody", PASSWORD, ATTACKER) is LoginRefusal.LOCKED
    assert attempt("zhang", PASSWORD, ATTACKER) is LoginRefusal.LOCKED
    assert str(LoginRefused(LoginRefusal.WRONG)) == "用户名或密码错误"


def test_unknown_and_disabled_usernames_cost_one_scrypt_like_known_ones(database_url, monkeypatch):
    add_user()
    with db.session_scope() as session:
        accounts.create_user(session=session, username="gone", password=PASSWORD, role="officer")
        session.execute(update(User).where(User.username == "gone").values(active=False))
    checked: list[str] = []
    real = accounts.verify_password

    def counting(password: str, stored: str) -> bool:
        checked.append(stored)
        return real(password, stored)

    monkeypatch.setattr(accounts, "verify_password", counting)
    assert attempt("nobody", PASSWORD, OFFICE) is LoginRefusal.WRONG
    assert attempt("gone", PASSWORD, OFFICE) is LoginRefusal.WRONG  # right password, disabled
    assert attempt("zhang", "wrong-password", OFFICE) is LoginRefusal.WRONG
    assert len(checked) == 3
    assert checked[0] == accounts._DUMMY_HASH
    assert all(stored.startswith("scrypt$16384$") for stored in checked)


def test_one_address_trying_many_usernames_is_rate_limited(database_url):
    add_user()
    for n in range(accounts.MAX_FAILED_LOGINS_PER_IP):
        assert attempt(f"guess{n % 7}", "wrong-password", ATTACKER) is not None
    # even a right password of a real account is refused from that address now
    assert attempt("zhang", PASSWORD, ATTACKER) is LoginRefusal.RATE_LIMITED
    assert attempt("zhang", PASSWORD, OFFICE) is None


def test_failures_outside_the_window_start_a_new_count(database_url):
    add_user()
    for _ in range(accounts.MAX_FAILED_LOGINS - 1):
        attempt("zhang", "wrong-password", OFFICE)
    with db.session_scope() as session:  # those failures were sixteen minutes ago
        session.execute(
            update(LoginAttempt).values(
                window_started_at=utcnow() - accounts.FAILURE_WINDOW - timedelta(minutes=1)
            )
        )
    attempt("zhang", "wrong-password", OFFICE)
    assert attempt("zhang", PASSWORD, OFFICE) is None
    with db.session_scope() as session:
        assert session.get(LoginAttempt, f"ip:{OFFICE}").failures == 1


def test_a_lock_ends_after_the_lockout(database_url):
    add_user()
    for _ in range(accounts.MAX_FAILED_LOGINS):
        attempt("zhang", "wrong-password", OFFICE)
    assert attempt("zhang", PASSWORD, OFFICE) is LoginRefusal.LOCKED
    past = utcnow() - timedelta(seconds=1)
    with db.session_scope() as session:
        session.execute(
            update(LoginAttempt).values(
                locked_until=past, window_started_at=past - accounts.LOCKOUT
            )
        )
    assert attempt("zhang", PASSWORD, OFFICE) is None


def test_thirty_wrong_passwords_at_once_lock_the_pair(database_url):
    """Thirty threads, each with its own session and transaction, at the same moment."""
    add_user()
    start = threading.Barrier(30)
    outcomes: list[LoginRefusal | None | BaseException] = []

    def wrong() -> None:
        start.wait()
        try:
            outcomes.append(attempt("zhang", "wrong-password", ATTACKER))
        except BaseException as error:  # noqa: BLE001 — reported below
            outcomes.append(error)

    threads = [threading.Thread(target=wrong) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == 30
    assert all(isinstance(o, LoginRefusal) for o in outcomes), outcomes
    with db.session_scope() as session:
        pair = session.get(LoginAttempt, f"user:zhang|{ATTACKER}")
        address = session.get(LoginAttempt, f"ip:{ATTACKER}")
        # Every wrong answer was counted (no lost update); the ones that came after the
        # lock was committed were refused without counting.
        wrong_answers = outcomes.count(LoginRefusal.WRONG)
        assert pair.failures == address.failures == wrong_answers >= accounts.MAX_FAILED_LOGINS
        assert pair.locked_until is not None
        assert session.get(User, 1).failed_logins == wrong_answers
    assert attempt("zhang", PASSWORD, ATTACKER) in (LoginRefusal.LOCKED, LoginRefusal.RATE_LIMITED)
    assert attempt("zhang", PASSWORD, OFFICE) is None


def test_reset_password_clears_the_lockouts_of_that_user_only(database_url):
    add_user("a")
    add_user("a|b")
    for _ in range(accounts.MAX_FAILED_LOGINS):
        attempt("a", "wrong-password", ATTACKER)
        attempt("a|b", "wrong-password", OFFICE)
    with db.session_scope() as session:
        [a] = [u for u in accounts.list_users(session=session) if u.username == "a"]
        assert (a.failed_logins, a.locked_pairs) == (5, 1)
        accounts.reset_password(session=session, username="a", password="another-horse")
    assert attempt("a", "another-horse", ATTACKER) is None
    assert attempt("a|b", PASSWORD, OFFICE) is LoginRefusal.LOCKED


@pytest.mark.parametrize("name", ["", "x" * 65])
def test_usernames_have_1_to_64_characters(database_url, name):
    with pytest.raises(accounts.AccountError), db.session_scope() as session:
        accounts.create_user(session=session, username=name, password=PASSWORD, role="officer")


def test_counts_nobody_needs_any_more_are_forgotten(database_url):
    attempt("guess-a", "wrong-password", ATTACKER)
    long_ago = utcnow() - accounts.FAILURE_WINDOW - accounts.LOCKOUT - timedelta(minutes=1)
    with db.session_scope() as session:
        session.execute(update(LoginAttempt).values(window_started_at=long_ago))
    attempt("guess-b", "wrong-password", ATTACKER)
    with db.session_scope() as session:
        keys = set(session.execute(select(LoginAttempt.key)).scalars())
        assert keys == {f"user:guess-b|{ATTACKER}", f"ip:{ATTACKER}"}
        assert session.get(LoginAttempt, f"ip:{ATTACKER}").failures == 1
