"""FastAPI dependencies: settings, database session, the signed-in user — and the one
translation of domain errors into HTTP answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from casework import accounts, console, db, handling
from casework.cases import CaseError
from casework.models import User
from casework.settings import Settings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token")


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


def current_user(
    token: Annotated[str, Depends(oauth2_scheme)], session: SessionDep, settings: SettingsDep
) -> User:
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "登录已失效，请重新登录",
        headers={"WWW-Authenticate": "Bearer"},
    )
    secret = accounts.signing_secret(session=session, configured=settings.secret_key)
    try:
        claims = accounts.read_token(token, secret=secret)
    except accounts.AuthError as error:
        raise unauthorized from error
    user = console.signed_in_user(session=session, user_id=claims.user_id)
    if user is None:
        raise unauthorized
    return user


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
