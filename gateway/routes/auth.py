"""POST /api/auth/token — OAuth2 password form → bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from casework import accounts
from casework.handling import audit
from gateway.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


@router.post("/token", response_model=Token)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> Token:
    try:
        user = accounts.authenticate(
            session=session, username=form.username, password=form.password
        )
    except accounts.AuthError as error:
        audit(session, None, "login_failed", "user", None, username=form.username[:64])
        session.commit()  # keep the failed-login count even though we refuse
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(error), headers={"WWW-Authenticate": "Bearer"}
        ) from error
    audit(session, user, "login", "user", user.id)
    secret = accounts.signing_secret(session=session, configured=settings.secret_key)
    return Token(access_token=accounts.issue_token(user=user, secret=secret))
