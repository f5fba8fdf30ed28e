"""Console accounts: password hashing (scrypt), login throttling, and signed access tokens.

Tokens are JWTs (HS256) signed with SECRET_KEY; without one (development), a random
secret is generated once and kept in the database so every gateway worker shares it.
API clients use them as bearer tokens; the console's browsers use cookie sessions
(`casework/sessions.py`). Disabling an account, resetting its password or logging it out
everywhere ends both: every session, and every token issued before that moment.

Login throttling lives in the shared database (`login_attempts`), so every gateway
worker sees the same counts. Failures are counted per (username, client IP) — five within
fifteen minutes lock that pair — and per client IP across all usernames — twenty lock
the address. Counting per pair (not per account) means someone who only knows an
officer's username can lock them out from their own address, never from the officer's.
Every count is one conditional UPDATE (`failures = failures + 1`), never read-modify-write,
so thirty wrong passwords sent at once are thirty failures.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from pydantic import BaseModel
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from casework import sessions
from casework.clock import utcnow
from casework.models import LoginAttempt, SharedValue, User

ROLES = ("officer", "commander", "trainer", "admin")
DESKS = ("治安", "法制", "交警", "出入境", "反诈")
MAX_FAILED_LOGINS = 5  # per (username, client IP) within FAILURE_WINDOW
MAX_FAILED_LOGINS_PER_IP = 20  # per client IP, all usernames, within FAILURE_WINDOW
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
TOKEN_LIFETIME = timedelta(hours=8)  # one shift
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Unknown usernames are checked against this hash (of a random, forgotten password), so
# they cost one scrypt like a known username and answer just as slowly.
_DUMMY_HASH = "scrypt$16384$btFrYC966r8LruHUTEVd3A==$3LwhU8k5cTntXROmQsf0hhobHJfwIeskTe+K3ZQPnGY="
_MAX_KEY_USERNAME = 128  # login_attempts.key is 200 characters

WRONG_CREDENTIALS = "用户名或密码错误"
PAIR_LOCKED = "登录失败次数过多，账号已暂时锁定，请稍后再试"
ADDRESS_LIMITED = "登录尝试过于频繁，请稍后再试"


class AccountError(ValueError):
    """Invalid account data (unknown role, weak password, duplicate name ...)."""


class AuthError(Exception):
    """Login or token refused; the message is safe to show."""


class LoginRefusal(enum.Enum):
    WRONG = "wrong"  # wrong password, unknown or disabled account (one answer for all)
    LOCKED = "locked"  # this username from this address failed too often
    RATE_LIMITED = "rate_limited"  # this address failed too often, whatever the username


class LoginRefused(AuthError):
    """A refused login: `reason` says which answer to give (401 or 429)."""

    def __init__(self, reason: LoginRefusal) -> None:
        text = {
            LoginRefusal.WRONG: WRONG_CREDENTIALS,
            LoginRefusal.LOCKED: PAIR_LOCKED,
            LoginRefusal.RATE_LIMITED: ADDRESS_LIMITED,
        }[reason]
        super().__init__(text)
        self.reason = reason


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    encode = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            dklen=32,
            n=int(n),
            r=_SCRYPT["r"],
            p=_SCRYPT["p"],
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)


def _check_password_policy(password: str) -> None:
    if len(password) < 8:
        raise AccountError("the password must have at least 8 characters")


def create_user(
    *,
    session: Session,
    username: str,
    password: str,
    role: str,
    community: str | None = None,
    desk: str | None = None,
    mobile: str | None = None,
    dingtalk_id: str | None = None,
) -> User:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if desk is not None and desk not in DESKS:
        raise AccountError(f"unknown desk {desk!r}; expected one of {', '.join(DESKS)}")
    if not username or len(username) > 64:
        raise AccountError("the username must have 1 to 64 characters")
    if mobile is not None and len(mobile) > 20:
        raise AccountError("the mobile number must have at most 20 characters")
    _check_password_policy(password)
    if session.execute(select(User).where(User.username == username)).scalar_one_or_none():
        raise AccountError(f"user {username!r} already exists")
    if dingtalk_id is not None:
        dingtalk_id = _checked_dingtalk_id(session, dingtalk_id, username=username)
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        community=community,
        desk=desk,
        mobile=mobile,
        dingtalk_id=dingtalk_id,
        active=True,
        failed_logins=0,
    )
    session.add(user)
    session.flush()
    return user


def _checked_dingtalk_id(session: Session, dingtalk_id: str, *, username: str) -> str:
    """A DingTalk user id (staffId) as DingTalk shows it: 1–64 visible characters, bound
    to no other account (the partial unique index of revision 0010 is the last word)."""
    dingtalk_id = dingtalk_id.strip()
    if not 1 <= len(dingtalk_id) <= 64 or not dingtalk_id.isprintable() or " " in dingtalk_id:
        raise AccountError("the DingTalk id must have 1 to 64 visible characters, no spaces")
    holder = session.execute(
        select(User.username).where(User.dingtalk_id == dingtalk_id, User.username != username)
    ).scalar_one_or_none()
    if holder is not None:
        raise AccountError(f"DingTalk id {dingtalk_id!r} is already bound to {holder!r}")
    return dingtalk_id


# ------------------------------------------------------------------ login throttling


def _pair_key(username: str, client_ip: str) -> str:
    return f"user:{username[:_MAX_KEY_USERNAME]}|{client_ip}"


def _address_key(client_ip: str) -> str:
    return f"ip:{client_ip}"


def _refusal_in_force(
    *, session: Session, pair: str, address: str, now: datetime
) -> LoginRefusal | None:
    locked = set(
        session.execute(
            select(LoginAttempt.key).where(
                LoginAttempt.key.in_([pair, address]), LoginAttempt.locked_until > now
            )
        ).scalars()
    )
    if address in locked:
        return LoginRefusal.RATE_LIMITED
    if pair in locked:
        return LoginRefusal.LOCKED
    return None


def _count_failure(*, session: Session, key: str, limit: int, now: datetime) -> None:
    """One more failure for `key`; lock it once `limit` failures fall in one window.

    Insert-if-missing is guarded by the primary key (a concurrent insert loses and goes
    on); the count and the lock are conditional UPDATEs the database applies one after
    the other, so concurrent failures are all counted."""
    for _ in range(3):  # a row pruned between insert and update is inserted again
        try:
            with session.begin_nested():
                session.add(LoginAttempt(key=key, failures=0, window_started_at=now))
        except IntegrityError:
            pass  # someone counted this key before: the row is there
        session.execute(  # a window that ran out (and is not locked) starts again
            update(LoginAttempt)
            .where(
                LoginAttempt.key == key,
                LoginAttempt.window_started_at <= now - FAILURE_WINDOW,
                or_(LoginAttempt.locked_until.is_(None), LoginAttempt.locked_until <= now),
            )
            .values(failures=0, window_started_at=now, locked_until=None)
            .execution_options(synchronize_session=False)
        )
        counted = session.execute(
            update(LoginAttempt)
            .where(LoginAttempt.key == key)
            .values(failures=LoginAttempt.failures + 1)
            .execution_options(synchronize_session=False)
        )
        if counted.rowcount == 1:
            break
    session.execute(
        update(LoginAttempt)
        .where(
            LoginAttempt.key == key,
            LoginAttempt.failures >= limit,
            or_(LoginAttempt.locked_until.is_(None), LoginAttempt.locked_until <= now),
        )
        .values(locked_until=now + LOCKOUT)
        .execution_options(synchronize_session=False)
    )


def _prune(*, session: Session, now: datetime) -> None:
    """Forget counts nobody needs any more, so guessed usernames do not pile up.

    Runs last and skips rows another login holds (SKIP LOCKED on PostgreSQL; SQLite
    writes one at a time anyway): pruning never waits, so it cannot deadlock."""
    stale = now - FAILURE_WINDOW - LOCKOUT
    condition = (
        LoginAttempt.window_started_at < stale,
        or_(LoginAttempt.locked_until.is_(None), LoginAttempt.locked_until < stale),
    )
    keys = list(
        session.execute(
            select(LoginAttempt.key).where(*condition).limit(500).with_for_update(skip_locked=True)
        ).scalars()
    )
    if keys:
        session.execute(
            delete(LoginAttempt)
            .where(LoginAttempt.key.in_(keys), *condition)
            .execution_options(synchronize_session=False)
        )


def authenticate(*, session: Session, username: str, password: str, client_ip: str) -> User:
    """The user, or LoginRefused. The caller commits in both cases (failures count).

    Unknown and disabled usernames do the same work as known ones (one scrypt, the same
    statements) and get the same answer, so neither the text nor the time tells whether
    an account exists."""
    now = utcnow()
    pair, address = _pair_key(username, client_ip), _address_key(client_ip)
    refusal = _refusal_in_force(session=session, pair=pair, address=address, now=now)
    if refusal is not None:
        raise LoginRefused(refusal)
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    password_ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    if user is not None and user.active and password_ok:
        session.execute(
            delete(LoginAttempt)
            .where(LoginAttempt.key == pair)
            .execution_options(synchronize_session=False)
        )
        user.failed_logins, user.locked_until = 0, None
        return user
    # Consistent order (pair, then address) so concurrent logins cannot deadlock.
    _count_failure(session=session, key=pair, limit=MAX_FAILED_LOGINS, now=now)
    _count_failure(session=session, key=address, limit=MAX_FAILED_LOGINS_PER_IP, now=now)
    session.execute(  # the admin-visible count only; never the lock (matches 0 rows if unknown)
        update(User)
        .where(User.username == username)
        .values(failed_logins=User.failed_logins + 1)
        .execution_options(synchronize_session=False)
    )
    _prune(session=session, now=now)
    raise LoginRefused(LoginRefusal.WRONG)


def clear_lockouts(*, session: Session, username: str) -> int:
    """Forget every failed-login count of `username` (from any address). Returns how many."""
    prefix = f"user:{username[:_MAX_KEY_USERNAME]}|"
    keys = [
        key
        for key in session.execute(
            select(LoginAttempt.key).where(LoginAttempt.key.startswith(prefix, autoescape=True))
        ).scalars()
        # an address never contains "|": this skips user "a|b" when clearing user "a"
        if "|" not in key[len(prefix) :]
    ]
    if keys:
        session.execute(
            delete(LoginAttempt)
            .where(LoginAttempt.key.in_(keys))
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(User)
        .where(User.username == username)
        .values(failed_logins=0, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return len(keys)


# ------------------------------------------------------------------ operators' account tools


class UserPublic(BaseModel):
    """An account as operators see it: never the password hash."""

    id: int
    username: str
    role: str
    community: str | None
    desk: str | None
    mobile: str | None
    dingtalk_id: str | None
    active: bool
    failed_logins: int
    locked_pairs: int  # (username, address) pairs locked right now


def list_users(*, session: Session) -> list[UserPublic]:
    now = utcnow()
    locked_keys = list(
        session.execute(
            select(LoginAttempt.key).where(
                LoginAttempt.key.startswith("user:"), LoginAttempt.locked_until > now
            )
        ).scalars()
    )
    locked: dict[str, int] = {}
    for key in locked_keys:
        name = key[len("user:") :].rsplit("|", 1)[0]
        locked[name] = locked.get(name, 0) + 1
    return [
        UserPublic(
            id=user.id,
            username=user.username,
            role=user.role,
            community=user.community,
            desk=user.desk,
            mobile=user.mobile,
            dingtalk_id=user.dingtalk_id,
            active=user.active,
            failed_logins=user.failed_logins,
            locked_pairs=locked.get(user.username[:_MAX_KEY_USERNAME], 0),
        )
        for user in session.execute(select(User).order_by(User.id)).scalars()
    ]


def _existing(session: Session, username: str) -> User:
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise AccountError(f"no user {username!r}")
    return user


def disable_user(*, session: Session, username: str) -> UserPublic:
    """Refuse every future login and every token already issued (deps check `active`);
    its sessions and tokens end for good, so enabling it again later revives none."""
    user = _existing(session, username)
    user.active = False
    sessions.revoke_everywhere(session=session, user=user)
    session.flush()
    [public] = [u for u in list_users(session=session) if u.username == username]
    return public


def reset_password(*, session: Session, username: str, password: str) -> UserPublic:
    """A new password; the account's lockouts are cleared so it can sign in at once."""
    _check_password_policy(password)
    user = _existing(session, username)
    user.password_hash = hash_password(password)
    # A reset follows a forgotten or a leaked password: whoever held the old one is out.
    sessions.revoke_everywhere(session=session, user=user)
    session.flush()
    clear_lockouts(session=session, username=username)
    [public] = [u for u in list_users(session=session) if u.username == username]
    return public


def logout_everywhere(*, session: Session, username: str) -> int:
    """End every console session of `username` and every bearer token issued until now
    (a lost phone). Returns how many sessions were live."""
    return sessions.revoke_everywhere(session=session, user=_existing(session, username))


def set_dingtalk_id(*, session: Session, username: str, dingtalk_id: str | None) -> UserPublic:
    """Bind the account to the officer's DingTalk user id (None unbinds it): their replies
    to the robot then act as this account (`casework/dingtalk_replies.py`)."""
    user = _existing(session, username)
    if dingtalk_id is not None:
        dingtalk_id = _checked_dingtalk_id(session, dingtalk_id, username=username)
    user.dingtalk_id = dingtalk_id
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as error:  # bound elsewhere at the same moment
        raise AccountError(f"DingTalk id {dingtalk_id!r} is already bound") from error
    [public] = [u for u in list_users(session=session) if u.username == username]
    return public


# ------------------------------------------------------------------ tokens


def signing_secret(*, session: Session, configured: str | None) -> str:
    if configured:
        return configured
    stored = session.get(SharedValue, "jwt_secret")
    if stored is None:
        stored = SharedValue(key="jwt_secret", value=secrets.token_urlsafe(48))
        session.add(stored)
        session.flush()
    return stored.value


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    username: str
    role: str
    issued_us: int  # when it was issued, in microseconds since the epoch


def issue_token(*, user: User, secret: str, lifetime: timedelta = TOKEN_LIFETIME) -> str:
    now = utcnow()
    claims = {
        "sub": str(user.id),
        "name": user.username,
        "role": user.role,
        "iat": int(now.timestamp()),
        "iat_us": sessions.issued_microseconds(now),  # logout everywhere compares this
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def read_token(token: str, *, secret: str) -> TokenClaims:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"])
        # Tokens from before `iat_us` existed count from their whole second, which can
        # only make them older: a logout everywhere never spares one.
        issued_us = int(claims["iat_us"] if "iat_us" in claims else int(claims["iat"]) * 10**6)
        return TokenClaims(
            user_id=int(claims["sub"]),
            username=claims["name"],
            role=claims["role"],
            issued_us=issued_us,
        )
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as error:
        raise AuthError("登录已失效，请重新登录") from error


def bearer_user(*, session: Session, claims: TokenClaims) -> User | None:
    """The account a valid token names, while it is active and the token was issued after
    the account last logged out everywhere (read_token's caller checks this)."""
    user = session.get(User, claims.user_id)
    if user is None or not user.active:
        return None
    return user if sessions.bearer_still_valid(user, issued_us=claims.issued_us) else None
