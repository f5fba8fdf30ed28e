"""Console sessions: how an officer's browser stays signed in (issue 12).

DingTalk's in-app browser forgets `sessionStorage`, so a bearer token kept there meant a
login for every case link. A browser now signs in once (`open_session`) and holds a
random token in an HttpOnly, SameSite=Strict cookie that outlives a closed in-app
browser; page scripts never see it. The table `console_sessions` stores only its
SHA-256, so reading the table hands out no live session.

A session ends at the first of:
- **idle expiry** — no request for `SESSION_IDLE_MINUTES` (`last_seen_at`, written at
  most once a minute per session by one conditional UPDATE, never once per request);
- **absolute expiry** — `SESSION_MAX_HOURS` after signing in, however busy;
- **logout** (`revoke`), **logout everywhere** (`revoke_everywhere`: every session of the
  user, and every bearer token issued before now through `users.tokens_valid_after`),
  or the account being disabled.

Cookie-authenticated requests that change something carry the session's CSRF token in
`X-CSRF-Token`; it is an HMAC of the cookie's token, so it needs no storage, changes
with every session and tells nothing about the cookie (`csrf_matches`, constant time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from casework.clock import aware, utcnow
from casework.models import ConsoleSession, User
from casework.schemas import MePublic

COOKIE = "jmt_session"
# Over HTTPS the cookie carries the __Host- prefix: browsers then accept it only with
# Secure, Path=/ and no Domain, so a neighbouring subdomain cannot plant or shadow it.
SECURE_COOKIE = "__Host-jmt_session"
CSRF_HEADER = "X-CSRF-Token"
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is at most this stale
MAX_TOKEN_LENGTH = 100
_USER_AGENT_LENGTH = 255
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_KEEP_ENDED = timedelta(days=1)  # ended sessions stay this long for the officer's list


@dataclass(frozen=True)
class Policy:
    """How long a session lives: SESSION_IDLE_MINUTES and SESSION_MAX_HOURS."""

    idle: timedelta
    lifetime: timedelta

    @classmethod
    def of(cls, *, idle_minutes: int, max_hours: int) -> Policy:
        return cls(idle=timedelta(minutes=idle_minutes), lifetime=timedelta(hours=max_hours))


class SessionInfo(BaseModel):
    """What the console learns at login and from GET /api/auth/session: never the token."""

    csrf_token: str
    user: MePublic
    created_at: datetime
    expires_at: datetime  # absolute: sign in again after this, however busy
    idle_expires_at: datetime  # if no request comes before
    idle_minutes: int


class DevicePublic(BaseModel):
    """One of the officer's own sessions, to recognise a device they no longer hold."""

    handle: str  # the first characters of the stored hash: names the row, opens nothing
    current: bool
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    client_ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class ActiveSession:
    """A live session, resolved from its cookie for this request."""

    id: str
    user: User
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    idle_expires_at: datetime


@dataclass(frozen=True)
class OpenedSession:
    token: str  # for the cookie only; the database never sees it
    active: ActiveSession


def hash_token(token: str) -> str:
    """The row id of the session a cookie's token opens."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(token: str) -> str:
    digest = hmac.new(token.encode(), b"jmt-console-csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(active: ActiveSession, given: str | None) -> bool:
    """The header's token is this session's (compared in constant time)."""
    if not given or len(given) > MAX_TOKEN_LENGTH:
        return False
    return hmac.compare_digest(active.csrf_token.encode(), given.encode())


def issued_microseconds(moment: datetime) -> int:
    """A bearer token's precise issue time (claim `iat_us`): logout everywhere must refuse
    a token issued a moment before it and accept one issued a moment after, which the
    whole seconds of `iat` cannot tell apart."""
    return (aware(moment) - _EPOCH) // timedelta(microseconds=1)


def bearer_still_valid(user: User, *, issued_us: int) -> bool:
    """False for a token issued before the user last logged out everywhere."""
    line = aware(user.tokens_valid_after)
    return line is None or issued_us > issued_microseconds(line)


def _now(now: datetime | None) -> datetime:
    return now if now is not None else utcnow()


def info(active: ActiveSession, *, policy: Policy) -> SessionInfo:
    # Imported here: casework.console → handling → accounts → sessions would be a circle.
    from casework import console

    return SessionInfo(
        csrf_token=active.csrf_token,
        user=console.me(user=active.user),
        created_at=active.created_at,
        expires_at=active.expires_at,
        idle_expires_at=active.idle_expires_at,
        idle_minutes=int(policy.idle.total_seconds() // 60),
    )


def open_session(
    *,
    session: Session,
    user: User,
    policy: Policy,
    client_ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> OpenedSession:
    """A new session for `user`, who just proved their password."""
    now = _now(now)
    _prune(session=session, now=now)
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(
        id=hash_token(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + policy.lifetime,
        client_ip=client_ip[:64] if client_ip else None,
        user_agent=user_agent[:_USER_AGENT_LENGTH] if user_agent else None,
    )
    session.add(row)
    session.flush()
    active = ActiveSession(
        id=row.id,
        user=user,
        csrf_token=csrf_token_for(token),
        created_at=now,
        expires_at=row.expires_at,
        idle_expires_at=min(now + policy.idle, row.expires_at),
    )
    return OpenedSession(token=token, active=active)


def _ended(row: ConsoleSession, user: User, policy: Policy, now: datetime) -> bool:
    if row.revoked_at is not None or not user.active:
        return True
    if now >= aware(row.expires_at) or now - aware(row.last_seen_at) >= policy.idle:
        return True
    line = aware(user.tokens_valid_after)  # opened while a logout everywhere ran
    return line is not None and aware(row.created_at) <= line


def resolve(
    *,
    session: Session,
    token: str | None,
    policy: Policy,
    now: datetime | None = None,
    touch: bool = True,
) -> ActiveSession | None:
    """The live session the cookie's token names, or None (unknown, revoked, idle too
    long, past its lifetime, or its user disabled). A request is activity: `last_seen_at`
    moves on when it is a minute old — one conditional UPDATE that skips a row another
    request of the same browser is touching, so requests never queue behind each other."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    now = _now(now)
    found = session.execute(
        select(ConsoleSession, User)
        .join(User, User.id == ConsoleSession.user_id)
        .where(ConsoleSession.id == hash_token(token))
    ).first()
    if found is None:
        return None
    row, user = found
    if _ended(row, user, policy, now):
        return None
    last_seen = aware(row.last_seen_at)
    if touch and now - last_seen >= TOUCH_EVERY:
        stale = now - TOUCH_EVERY
        untouched = (
            select(ConsoleSession.id)
            .where(
                ConsoleSession.id == row.id,
                ConsoleSession.last_seen_at <= stale,
                ConsoleSession.revoked_at.is_(None),
            )
            .with_for_update(skip_locked=True)
        )
        session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.id.in_(untouched))
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
        last_seen = now
    expires_at = aware(row.expires_at)
    return ActiveSession(
        id=row.id,
        user=user,
        csrf_token=csrf_token_for(token),
        created_at=aware(row.created_at),
        expires_at=expires_at,
        idle_expires_at=min(last_seen + policy.idle, expires_at),
    )


def still_live(
    *, session: Session, session_id: str, policy: Policy, now: datetime | None = None
) -> bool:
    """For the live stream, once a poll: the session it was opened with has not ended.
    Watching the stream is not activity — an open queue page does not keep a session
    alive for ever."""
    found = session.execute(
        select(ConsoleSession, User)
        .join(User, User.id == ConsoleSession.user_id)
        .where(ConsoleSession.id == session_id)
    ).first()
    return found is not None and not _ended(found[0], found[1], policy, _now(now))


def revoke(*, session: Session, session_id: str, now: datetime | None = None) -> bool:
    """End one session (logout). True when it was live until now."""
    ended = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=_now(now))
        .execution_options(synchronize_session=False)
    )
    return ended.rowcount == 1


def revoke_everywhere(*, session: Session, user: User, now: datetime | None = None) -> int:
    """Logout everywhere: every session of `user` ends, and every bearer token issued
    until now is refused from now on. Returns how many sessions were live."""
    now = _now(now)
    user.tokens_valid_after = now
    session.flush()
    ended = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user.id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(ended.rowcount)


def devices(
    *,
    session: Session,
    user: User,
    policy: Policy,
    current: str | None,
    now: datetime | None = None,
) -> list[DevicePublic]:
    """The user's live sessions, newest first (what logout everywhere would end)."""
    now = _now(now)
    rows = session.execute(
        select(ConsoleSession)
        .where(ConsoleSession.user_id == user.id, ConsoleSession.revoked_at.is_(None))
        .order_by(ConsoleSession.created_at.desc(), ConsoleSession.id)
    ).scalars()
    return [
        DevicePublic(
            handle=row.id[:12],
            current=row.id == current,
            created_at=aware(row.created_at),
            last_seen_at=aware(row.last_seen_at),
            expires_at=aware(row.expires_at),
            client_ip=row.client_ip,
            user_agent=row.user_agent,
        )
        for row in rows
        if not _ended(row, user, policy, now)
    ]


def _prune(*, session: Session, now: datetime) -> None:
    """Forget sessions that ended more than a day ago (at most 500 per login). Skips rows
    another transaction holds, so two logins never wait on each other here."""
    gone = now - _KEEP_ENDED
    condition = or_(ConsoleSession.expires_at < gone, ConsoleSession.revoked_at < gone)
    ids = list(
        session.execute(
            select(ConsoleSession.id).where(condition).limit(500).with_for_update(skip_locked=True)
        ).scalars()
    )
    if ids:
        session.execute(
            delete(ConsoleSession)
            .where(ConsoleSession.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
