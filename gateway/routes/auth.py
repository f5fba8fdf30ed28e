"""POST /api/auth/token — OAuth2 password form → bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from casework import accounts, audit
from gateway.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


def client_ip(request: Request) -> str:
    """The peer address (uvicorn puts the proxy's X-Forwarded-For here when trusted)."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/token",
    response_model=Token,
    responses={
        401: {"description": "用户名或密码错误，或已暂时锁定"},
        429: {"description": "尝试过于频繁"},
    },
)
def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> Token:
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
    audit.record(session, user, "login", "user", user.id, client_ip=ip)
    secret = accounts.signing_secret(session=session, configured=settings.secret_key)
    return Token(access_token=accounts.issue_token(user=user, secret=secret))
