"""Signing in and out.

- `POST /api/auth/token` — OAuth2 password form → bearer token, for API clients (the
  contract; it sets no cookie, so a script's cookie jar never turns into a session).
- `POST /api/auth/session` — the same form → the console's cookie session (HttpOnly,
  SameSite=Strict, persistent, Secure over HTTPS) and its CSRF token. A route of its own
  rather than a cookie on `/token`: the browser never receives a JWT (nothing for a
  script to steal), and bearer clients keep exactly the answer they had.
- `GET /api/auth/session` — this browser's session (CSRF token, expiry times), from the
  cookie alone; `GET /api/auth/sessions` — the user's live sessions (devices).
- `POST /api/auth/logout` — ends this browser's session and clears the cookie;
  `POST /api/auth/logout-all` — ends every session of the user and every bearer token
  issued until now (a lost phone). Operators do it for someone else with
  `jmt user logout NAME`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel
from sqlalchemy.orm import Session

from casework import accounts, audit, sessions
from casework.models import User
from casework.settings import Settings
from gateway.deps import (
    AuthDep,
    CurrentUser,
    SessionDep,
    SettingsDep,
    check_csrf,
    check_origin,
    session_cookie,
    session_policy,
)

router = APIRouter(prefix="/api/auth", tags=["auth"])
LOGIN_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "用户名或密码错误，或已暂时锁定"},
    429: {"description": "尝试过于频繁"},
}
NO_STORE = {"Cache-Control": "no-store"}


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class LogoutAll(BaseModel):
    sessions_ended: int  # console sessions that were live; bearer tokens are not counted


def client_ip(request: Request) -> str:
    """The peer address (uvicorn puts the proxy's X-Forwarded-For here when trusted)."""
    return request.client.host if request.client else "unknown"


def _signed_in(
    request: Request, form: OAuth2PasswordRequestForm, session: Session, *, via: str
) -> User:
    """The user the form names, audited; a refusal is audited, committed and raised."""
    ip = client_ip(request)
    try:
        user = accounts.authenticate(
            session=session, username=form.username, password=form.password, client_ip=ip
        )
    except accounts.LoginRefused as refused:
        audit.record(
            session,
            None,
            "login_failed",
            "user",
            None,
            client_ip=ip,
            username=form.username[:64],
            reason=refused.reason.value,
        )
        session.commit()  # keep the failure counts even though we refuse
        limited = refused.reason is accounts.LoginRefusal.RATE_LIMITED
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS if limited else status.HTTP_401_UNAUTHORIZED,
            str(refused),
            headers=(
                {"Retry-After": str(int(accounts.LOCKOUT.total_seconds()))}
                if limited
                else {"WWW-Authenticate": "Bearer"}
            ),
        ) from refused
    audit.record(session, user, "login", "user", user.id, client_ip=ip, via=via)
    return user


@router.post("/token", response_model=Token, responses=LOGIN_REFUSALS)
def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> Token:
    user = _signed_in(request, form, session, via="token")
    secret = accounts.signing_secret(session=session, configured=settings.secret_key)
    return Token(access_token=accounts.issue_token(user=user, secret=secret))


def _secure(request: Request, settings: Settings) -> bool:
    """Secure (and the __Host- name) over HTTPS, and always outside development: production
    sits behind TLS even when the proxy talks plain HTTP to the gateway."""
    return request.url.scheme == "https" or not settings.development


def _set_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    secure = _secure(request, settings)
    response.set_cookie(
        sessions.SECURE_COOKIE if secure else sessions.COOKIE,
        token,
        # Persistent on purpose: DingTalk's in-app browser is closed between case links.
        max_age=settings.session_max_hours * 3600,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def _clear_cookie(response: Response) -> None:
    for name, secure in ((sessions.COOKIE, False), (sessions.SECURE_COOKIE, True)):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")


@router.post("/session", response_model=sessions.SessionInfo, responses=LOGIN_REFUSALS)
def open_session(
    request: Request,
    response: Response,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> sessions.SessionInfo:
    """The console's login: a session cookie and its CSRF token (keep it in memory and
    send it as `X-CSRF-Token` with every POST/PUT/PATCH/DELETE)."""
    check_origin(request, settings)  # no one signs a browser in from another site
    user = _signed_in(request, form, session, via="session")
    policy = session_policy(settings)
    opened = sessions.open_session(
        session=session,
        user=user,
        policy=policy,
        client_ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    _set_cookie(response, request, settings, opened.token)
    response.headers.update(NO_STORE)
    return sessions.info(opened.active, policy=policy)


@router.get(
    "/session",
    response_model=sessions.SessionInfo,
    responses={401: {"description": "没有有效的浏览器会话"}},
)
def current_session(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> sessions.SessionInfo:
    """This browser's session, from its cookie alone (a bearer header is not a session)."""
    policy = session_policy(settings)
    active = sessions.resolve(session=session, token=session_cookie(request), policy=policy)
    if active is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "登录已失效，请重新登录")
    response.headers.update(NO_STORE)
    return sessions.info(active, policy=policy)


@router.get("/sessions", response_model=list[sessions.DevicePublic])
def my_sessions(
    auth: AuthDep, session: SessionDep, settings: SettingsDep
) -> list[sessions.DevicePublic]:
    """The caller's own live sessions, newest first."""
    current = auth.console_session.id if auth.console_session else None
    return sessions.devices(
        session=session, user=auth.user, policy=session_policy(settings), current=current
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """End this browser's session (CSRF token required while it is live) and clear the
    cookie. Without a live session there is nothing to end: 204 all the same. A bearer
    token cannot be ended alone; logout-all ends them all."""
    active = sessions.resolve(
        session=session, token=session_cookie(request), policy=session_policy(settings)
    )
    if active is not None:
        check_origin(request, settings)
        check_csrf(request, active)
        sessions.revoke(session=session, session_id=active.id)
        audit.record(
            session, active.user, "logout", "user", active.user.id, client_ip=client_ip(request)
        )
    response = Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)
    _clear_cookie(response)
    return response


@router.post("/logout-all", response_model=LogoutAll)
def logout_everywhere(
    request: Request, response: Response, user: CurrentUser, session: SessionDep
) -> LogoutAll:
    """End every session of the caller (this one too) and every bearer token issued until
    now, on every device."""
    ended = sessions.revoke_everywhere(session=session, user=user)
    audit.record(
        session,
        user,
        "logout_everywhere",
        "user",
        user.id,
        client_ip=client_ip(request),
        sessions_ended=ended,
    )
    _clear_cookie(response)
    response.headers.update(NO_STORE)
    return LogoutAll(sessions_ended=ended)
