"""Production posture checks that need the database: no demo account may serve production.

`Settings.check_for_production` refuses development settings before anything starts;
this module refuses what only the database knows — the demo accounts `jmt demo-data`
creates (known usernames, a password printed in the README) — once the schema exists.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework import demo
from casework.accounts import verify_password
from casework.models import User
from casework.settings import SettingsError, refusal

# Verifying a password costs one scrypt (~50 ms); a bureau has a few hundred accounts at
# most, so checking every active one at startup stays within seconds. Beyond this many,
# only the demo usernames are checked (the password check is a second line of defence).
PASSWORD_CHECK_LIMIT = 500


def demo_account_problems(*, session: Session) -> list[str]:
    """Every active demo account, and every active account with the demo password (a
    disabled account cannot log in, so disabling is enough)."""
    demo_names = {spec["username"] for spec in demo.demo_accounts()}
    demo_in_use = select(User.username).where(User.username.in_(demo_names), User.active.is_(True))
    found = sorted(session.execute(demo_in_use).scalars())
    problems = []
    if found:
        problems.append(
            f"demo accounts exist in the database ({', '.join(found)}): disable or delete "
            "them (jmt user disable NAME) — `jmt demo-data` is for development only"
        )
    active = session.execute(
        select(User.username, User.password_hash)
        .where(User.active.is_(True), User.username.not_in(demo_names))
        .order_by(User.id)
        .limit(PASSWORD_CHECK_LIMIT)
    ).all()
    weak = [name for name, stored in active if verify_password(demo.DEMO_PASSWORD, stored)]
    if weak:
        problems.append(
            f"accounts use the published demo password ({', '.join(weak)}): reset their "
            "passwords (jmt user reset NAME)"
        )
    return problems


def check_production_database(*, session: Session) -> None:
    """Refuse to serve production while demo accounts or the demo password exist."""
    problems = demo_account_problems(session=session)
    if problems:
        raise SettingsError(refusal("production", problems))
