"""Console accounts: password hashing (scrypt), lockout, and signed access tokens.

Tokens are JWTs (HS256) signed with SECRET_KEY; without one (development), a random
secret is generated once and kept in the database so every gateway worker shares it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.models import SharedValue, User, utcnow

ROLES = ("officer", "commander", "trainer", "admin")
DESKS = ("治安", "法制", "交警", "出入境", "反诈")
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
TOKEN_LIFETIME = timedelta(hours=8)  # one shift
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class AccountError(ValueError):
    """Invalid account data (unknown role, weak password, duplicate name ...)."""


class AuthError(Exception):
    """Login or token refused; the message is safe to show."""


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


def create_user(
    *,
    session: Session,
    username: str,
    password: str,
    role: str,
    community: str | None = None,
    desk: str | None = None,
) -> User:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if desk is not None and desk not in DESKS:
        raise AccountError(f"unknown desk {desk!r}; expected one of {', '.join(DESKS)}")
    if len(password) < 8:
        raise AccountError("the password must have at least 8 characters")
    if session.execute(select(User).where(User.username == username)).scalar_one_or_none():
        raise AccountError(f"user {username!r} already exists")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        community=community,
        desk=desk,
        active=True,
        failed_logins=0,
    )
    session.add(user)
    session.flush()
    return user


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite returns naive UTC
        return value.replace(tzinfo=timezone.utc)
    return value


def authenticate(*, session: Session, username: str, password: str) -> User:
    """The user, or AuthError. Repeated failures lock the account for a while."""
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    now = utcnow()
    if user is None or not user.active:
        raise AuthError("用户名或密码错误")
    locked_until = _aware(user.locked_until)
    if locked_until is not None and locked_until > now:
        raise AuthError("登录失败次数过多，账号已暂时锁定，请稍后再试")
    if not verify_password(password, user.password_hash):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until, user.failed_logins = now + LOCKOUT, 0
        raise AuthError("用户名或密码错误")
    user.failed_logins, user.locked_until = 0, None
    return user


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


def issue_token(*, user: User, secret: str, lifetime: timedelta = TOKEN_LIFETIME) -> str:
    now = utcnow()
    claims = {
        "sub": str(user.id),
        "name": user.username,
        "role": user.role,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def read_token(token: str, *, secret: str) -> TokenClaims:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"])
        return TokenClaims(user_id=int(claims["sub"]), username=claims["name"], role=claims["role"])
    except (jwt.PyJWTError, KeyError, ValueError) as error:
        raise AuthError("登录已失效，请重新登录") from error
