"""`jmt` commands on SQLite and PostgreSQL: accounts (passwords never on the command
line), and the operators' listings of cases and tickets."""

from __future__ import annotations

import io
import sys

import pytest
from sqlalchemy import select

from casework import accounts, db
from casework.cases import open_case, open_ticket
from casework.models import AuditEntry, User
from jmt import cli

PASSWORD = "correct-horse"


def run(monkeypatch, capsys, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """`jmt argv` with `stdin` piped in (not a terminal): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def user(name: str) -> User:
    with db.session_scope() as session:
        return session.execute(select(User).where(User.username == name)).scalar_one()


def can_login(name: str, password: str, ip: str = "10.0.0.1") -> bool:
    with db.session_scope() as session:
        try:
            accounts.authenticate(session=session, username=name, password=password, client_ip=ip)
        except accounts.LoginRefused:
            session.commit()
            return False
        return True


def test_user_add_reads_the_password_twice_from_stdin(database_url, monkeypatch, capsys):
    code, out, _ = run(
        monkeypatch,
        capsys,
        [
            "user",
            "add",
            "zhang",
            "--role",
            "officer",
            "--community",
            "万景社区",
            "--mobile",
            "13800000002",
        ],
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert code == 0, out
    assert "created officer zhang" in out
    zhang = user("zhang")
    assert (zhang.role, zhang.community, zhang.mobile) == ("officer", "万景社区", "13800000002")
    assert can_login("zhang", PASSWORD)
    with db.session_scope() as session:
        [entry] = session.execute(select(AuditEntry)).scalars()
        assert (entry.action, entry.target_id, entry.detail["via"]) == ("user_add", zhang.id, "cli")


def test_user_add_prompts_twice_on_a_terminal(database_url, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr(cli.getpass, "getpass", fake_getpass)
    monkeypatch.setattr(sys, "stdin", Terminal(""))
    cli.main(["user", "add", "li", "--role", "commander"])
    assert len(prompts) == 2
    assert can_login("li", PASSWORD)


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (f"{PASSWORD}\nsomething-else\n", "differ"),
        ("", "no password"),
        ("short\nshort\n", "at least 8"),
    ],
)
def test_user_add_refuses_bad_passwords(database_url, monkeypatch, capsys, stdin, message):
    code, _, err = run(monkeypatch, capsys, ["user", "add", "x", "--role", "officer"], stdin)
    assert code == 2
    assert message in err
    with db.session_scope() as session:
        assert session.execute(select(User)).first() is None


def test_user_add_has_no_password_option(database_url, monkeypatch, capsys):
    code, _, err = run(
        monkeypatch,
        capsys,
        ["user", "add", "x", "--role", "officer", "--password", PASSWORD],
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert code == 2
    assert "--password" in err


def test_user_add_stores_the_dingtalk_id_once_per_account(database_url, monkeypatch, capsys):
    twice = f"{PASSWORD}\n{PASSWORD}\n"
    add = ["user", "add", "wu", "--role", "officer", "--dingtalk-id", "manager4711"]
    code, _, err = run(monkeypatch, capsys, add, stdin=twice)
    assert (code, err) == (0, "")
    assert user("wu").dingtalk_id == "manager4711"
    again = ["user", "add", "li", "--role", "officer", "--dingtalk-id", "manager4711"]
    code, _, err = run(monkeypatch, capsys, again, stdin=twice)
    assert code == 2 and "already bound to 'wu'" in err
    code, _, _ = run(monkeypatch, capsys, ["user", "add", "li", "--role", "officer"], twice)
    assert code == 0 and user("li").dingtalk_id is None  # many accounts without one


def test_user_set_dingtalk_binds_rebinds_and_unbinds(database_url, monkeypatch, capsys):
    twice = f"{PASSWORD}\n{PASSWORD}\n"
    for name in ("zhang", "wang"):
        run(monkeypatch, capsys, ["user", "add", name, "--role", "officer"], twice)
    code, out, _ = run(monkeypatch, capsys, ["user", "set-dingtalk", "zhang", "dt-zhang"])
    assert code == 0 and "dt-zhang" in out
    assert user("zhang").dingtalk_id == "dt-zhang"
    code, _, err = run(monkeypatch, capsys, ["user", "set-dingtalk", "wang", "dt-zhang"])
    assert code == 2 and "already bound to 'zhang'" in err
    assert run(monkeypatch, capsys, ["user", "set-dingtalk", "zhang", "dt-zhang"])[0] == 0
    assert run(monkeypatch, capsys, ["user", "set-dingtalk", "zhang", "--unbind"])[0] == 0
    assert user("zhang").dingtalk_id is None
    assert run(monkeypatch, capsys, ["user", "set-dingtalk", "wang", "dt-zhang"])[0] == 0
    assert run(monkeypatch, capsys, ["user", "set-dingtalk", "nobody", "dt-x"])[0] == 2
    assert run(monkeypatch, capsys, ["user", "set-dingtalk", "wang"])[0] == 2  # no id
    assert run(monkeypatch, capsys, ["user", "set-dingtalk", "wang", "has space"])[0] == 2
    with db.session_scope() as session:
        actions = session.execute(
            select(AuditEntry.action).where(AuditEntry.action == "user_dingtalk")
        ).all()
    assert len(actions) == 4


def test_user_add_refuses_a_duplicate_and_an_unknown_role(database_url, monkeypatch, capsys):
    twice = f"{PASSWORD}\n{PASSWORD}\n"
    assert run(monkeypatch, capsys, ["user", "add", "a", "--role", "admin"], twice)[0] == 0
    code, _, err = run(monkeypatch, capsys, ["user", "add", "a", "--role", "admin"], twice)
    assert (code, "already exists" in err) == (2, True)
    assert run(monkeypatch, capsys, ["user", "add", "b", "--role", "boss"], twice)[0] == 2


def test_user_list_shows_a_table_without_hashes(database_url, monkeypatch, capsys):
    twice = f"{PASSWORD}\n{PASSWORD}\n"
    run(monkeypatch, capsys, ["user", "add", "zhang", "--role", "officer", "--desk", "反诈"], twice)
    run(monkeypatch, capsys, ["user", "add", "wang", "--role", "commander"], twice)
    for _ in range(accounts.MAX_FAILED_LOGINS):
        can_login("zhang", "wrong-password")
    code, out, _ = run(monkeypatch, capsys, ["user", "list"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "id",
        "username",
        "role",
        "community",
        "desk",
        "mobile",
        "dingtalk",
        "active",
        "failed",
        "locked",
    ]
    assert lines[1].split() == ["1", "zhang", "officer", "-", "反诈", "-", "-", "yes", "5", "1"]
    assert lines[2].split() == ["2", "wang", "commander", "-", "-", "-", "-", "yes", "0", "0"]
    assert "scrypt" not in out


def test_user_disable_refuses_the_next_login(database_url, monkeypatch, capsys):
    run(
        monkeypatch,
        capsys,
        ["user", "add", "zhang", "--role", "officer"],
        f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert run(monkeypatch, capsys, ["user", "disable", "zhang"])[0] == 0
    assert user("zhang").active is False
    assert not can_login("zhang", PASSWORD)
    assert run(monkeypatch, capsys, ["user", "disable", "nobody"])[0] == 2


def test_user_reset_sets_a_new_password_and_clears_the_lockouts(database_url, monkeypatch, capsys):
    run(
        monkeypatch,
        capsys,
        ["user", "add", "zhang", "--role", "officer"],
        f"{PASSWORD}\n{PASSWORD}\n",
    )
    for _ in range(accounts.MAX_FAILED_LOGINS):
        can_login("zhang", "wrong-password")
    assert not can_login("zhang", PASSWORD)  # locked from 10.0.0.1
    code, out, _ = run(
        monkeypatch, capsys, ["user", "reset", "zhang"], "another-horse\nanother-horse\n"
    )
    assert code == 0, out
    assert user("zhang").failed_logins == 0
    assert can_login("zhang", "another-horse")
    assert not can_login("zhang", PASSWORD, ip="10.0.0.2")
    assert run(monkeypatch, capsys, ["user", "reset", "zhang"], "a-horse1\nb-horse1\n")[0] == 2


def test_cases_and_tickets_are_listed(database_url, monkeypatch, capsys):
    with db.session_scope() as session:
        open_case(
            session=session,
            sender_id="o-1",
            category="fraud_suspicion",
            priority="urgent",
            reason="test",
            summary="刷单被骗两万",
            details={"amount_yuan": 20000},
            desk="反诈",
        )
        open_ticket(
            session=session, sender_id="o-2", kind="noise", summary="楼上装修", location="骆驼街道"
        )
    code, out, _ = run(monkeypatch, capsys, ["cases"])
    assert code == 0
    first, details = out.splitlines()
    assert first.startswith("#1 [urgent] fraud_suspicion open desk=反诈 ")
    assert first.endswith(" 刷单被骗两万")
    assert details.strip() == '{"amount_yuan": 20000}'
    assert run(monkeypatch, capsys, ["cases", "--status", "closed"])[1] == ""
    code, out, _ = run(monkeypatch, capsys, ["tickets"])
    assert out.strip() == "#1 noise pending 骆驼街道 楼上装修"
