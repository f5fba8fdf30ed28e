"""FastAPI dependencies: settings, database session, the signed-in user — and the one
translation of domain errors into HTTP answers.

A request is signed in by a bearer token (API clients; `Authorization: Bearer`) or by the
console's session cookie (`casework/sessions.py`). A cookie travels by itself, so a
cookie-authenticated request that changes something must also prove it comes from the
console's own page: the session's CSRF token in `X-CSRF-Token`, and an `Origin`, when
the browser sends one, that is the console's. A bearer header cannot be sent by another
site's page, so bearer requests need neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from casework import accounts, db, handling, sessions
from casework.cases import CaseError
from casework.models import User
from casework.settings import Settings

# auto_error=False: without the header the session cookie is tried instead.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIGNED_OUT = "登录已失效，请重新登录"
CSRF_REFUSED = "安全校验失败，请刷新页面后重试（CSRF token missing or invalid）"
ORIGIN_REFUSED = "请求来源与工作台不一致，已拒绝（cross-origin request refused）"
# Marks a refused CSRF token (not a refused origin), so the console fetches the current
# session's token once and retries: another tab may have signed in again meanwhile.
CSRF_REFUSED_HEADER = "X-CSRF-Refused"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    with db.session_scope(settings.database_url) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the session commits when the route returns, before the response is
# sent (FastAPI's default runs a yield dependency's exit after sending), so a client that
# acts on an answer at once — on any worker — finds what that answer reported.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def session_policy(settings: Settings) -> sessions.Policy:
    return sessions.Policy.of(
        idle_minutes=settings.session_idle_minutes, max_hours=settings.session_max_hours
    )


def session_cookie(request: Request) -> str | None:
    """The console session's token, from whichever of its two cookie names is present."""
    return request.cookies.get(sessions.SECURE_COOKIE) or request.cookies.get(sessions.COOKIE)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(request: Request, settings: Settings) -> None:
    """403 when the browser says the request comes from another site. Browsers send
    `Origin` with every cross-site POST; an absent header is left to the CSRF token.

    The console's own origin is `CONSOLE_URL`'s, or any scheme on the host the request
    was sent to: behind a TLS proxy the gateway sees http where the browser saw https."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    given = origin.strip().lower()
    own_host = request.headers.get("host", "").strip().lower()
    parts = urlsplit(given)
    same_host = bool(own_host) and parts.scheme in ("http", "https") and parts.netloc == own_host
    if not same_host and given != _origin(settings.console_url):  # "null" included
        raise HTTPException(status.HTTP_403_FORBIDDEN, ORIGIN_REFUSED)


def check_csrf(request: Request, active: sessions.ActiveSession) -> None:
    if not sessions.csrf_matches(active, request.headers.get(sessions.CSRF_HEADER)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, CSRF_REFUSED, headers={CSRF_REFUSED_HEADER: "1"}
        )


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, SIGNED_OUT, headers={"WWW-Authenticate": "Bearer"}
    )


@dataclass(frozen=True)
class Auth:
    """Who is signed in, and how: `console_session` is None for a bearer token."""

    user: User
    console_session: sessions.ActiveSession | None


def authenticate(
    request: Request,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    session: SessionDep,
    settings: SettingsDep,
) -> Auth:
    if token:  # an explicit bearer header wins over any cookie
        secret = accounts.signing_secret(session=session, configured=settings.secret_key)
        try:
            claims = accounts.read_token(token, secret=secret)
        except accounts.AuthError as error:
            raise _unauthorized() from error
        user = accounts.bearer_user(session=session, claims=claims)
        if user is None:
            raise _unauthorized()
        return Auth(user=user, console_session=None)
    active = sessions.resolve(
        session=session, token=session_cookie(request), policy=session_policy(settings)
    )
    if active is None:
        raise _unauthorized()
    if request.method in UNSAFE_METHODS:
        check_origin(request, settings)
        check_csrf(request, active)
    return Auth(user=active.user, console_session=active)


AuthDep = Annotated[Auth, Depends(authenticate)]


def current_user(auth: AuthDep) -> User:
    return auth.user


CurrentUser = Annotated[User, Depends(current_user)]


def officer(user: CurrentUser) -> User:
    """Officers, commanders and admins read conversations; trainers do not."""
    if user.role not in handling.READER_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "无权查看群众会话")
    return user


OfficerUser = Annotated[User, Depends(officer)]


def client_ip(request: Request) -> str | None:
    """For the audit trail: who read what, from where."""
    return request.client.host if request.client else None


@contextmanager
def domain_errors() -> Iterator[None]:
    """The domain's errors as HTTP answers: out of scope is 404 exactly like missing, a
    role that may not use the route 403, someone else holding the case 409, invalid input
    422."""
    try:
        yield
    except handling.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    except handling.NotAllowed as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from error
    except handling.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
    except CaseError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from error
