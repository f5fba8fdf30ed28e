"""`jmt` — operators' and trainers' command line.

jmt db migrate            bring the database schema up to date
jmt cases [--status S]    list hand-offs recorded by the assistant
jmt tickets               list diversion tickets for the governance platform
jmt user add NAME --role R [--community C] [--desk D] [--dingtalk-id ID] [--mobile M]
                          create a console account (password from a prompt or stdin)
jmt user list | disable NAME | reset NAME   accounts, lock one out, set a new password
jmt user set-dingtalk NAME ID | --unbind    bind the officer's DingTalk user id (staffId)
jmt user logout NAME      end every console session and bearer token of NAME (lost phone)
jmt demo-data             demo jurisdictions and accounts (development only)
jmt train | evaluate      same as `make train` / `make evaluate`
jmt nlu inbox | export      the trainers' inbox (masked), export to nlu_data/
jmt nlu evaluate --compare  candidate vs live model on the held-out set: the quality gate
jmt model promote | rollback | list   load a gated model into running Rasa, undo, list
jmt purge [--older-than 180d]  anonymise residents' words and finished matters past retention
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import unicodedata
from pathlib import Path

from casework import accounts, audit, db, overview
from jmt import model as models


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")


def list_cases(status: str | None) -> None:
    db.migrate()
    with db.session_scope() as session:
        for case in overview.all_cases(session=session, status=status):
            _print(
                f"#{case.id} [{case.priority}] {case.category} {case.status} "
                f"desk={case.desk or '社区民警'} {case.created_at:%Y-%m-%d %H:%M} {case.summary}"
            )
            _print("    " + json.dumps(case.details, ensure_ascii=False))


class PasswordError(Exception):
    """No usable password was given; the message says why."""


def read_password() -> str:
    """The new password, twice: from a prompt on a terminal, else two lines of stdin.

    Never from the command line, where it would stay in the shell history and be
    visible to every user of the machine in the process list."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        second = getpass.getpass("password again: ")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
        second = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise PasswordError("no password given (a prompt, or the password twice on stdin)")
    if first != second:
        raise PasswordError("the two passwords differ")
    return first


def _fail(command: str, error: Exception) -> None:
    sys.stderr.write(f"jmt user {command}: {error}\n")
    sys.exit(2)


def add_user(args: argparse.Namespace) -> None:
    db.migrate()
    try:
        password = read_password()
        with db.session_scope() as session:
            user = accounts.create_user(
                session=session,
                username=args.name,
                password=password,
                role=args.role,
                community=args.community,
                desk=args.desk,
                mobile=args.mobile,
                dingtalk_id=args.dingtalk_id,
            )
            audit.record(session, None, "user_add", "user", user.id, via="cli", role=user.role)
            _print(f"created {user.role} {user.username} (id {user.id})")
    except (accounts.AccountError, PasswordError) as error:
        _fail("add", error)


def list_users() -> None:
    db.migrate()
    with db.session_scope() as session:
        users = accounts.list_users(session=session)
    header = (
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
    )
    rows = [
        (
            str(u.id),
            u.username,
            u.role,
            u.community or "-",
            u.desk or "-",
            u.mobile or "-",
            u.dingtalk_id or "-",
            "yes" if u.active else "no",
            str(u.failed_logins),
            str(u.locked_pairs),
        )
        for u in users
    ]
    widths = [max(_width(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (
            cell + " " * (width - _width(cell)) for cell, width in zip(row, widths, strict=True)
        )
        _print("  ".join(cells).rstrip())


def _width(text: str) -> int:
    """Columns on a terminal: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def disable_user(args: argparse.Namespace) -> None:
    db.migrate()
    try:
        with db.session_scope() as session:
            user = accounts.disable_user(session=session, username=args.name)
            audit.record(session, None, "user_disable", "user", user.id, via="cli")
    except accounts.AccountError as error:
        _fail("disable", error)
    _print(f"disabled {args.name}: no new logins, and its sessions and tokens no longer work")


def reset_user(args: argparse.Namespace) -> None:
    db.migrate()
    try:
        password = read_password()
        with db.session_scope() as session:
            user = accounts.reset_password(session=session, username=args.name, password=password)
            audit.record(session, None, "user_reset", "user", user.id, via="cli")
    except (accounts.AccountError, PasswordError) as error:
        _fail("reset", error)
    _print(
        f"new password set for {args.name}; its login lockouts are cleared and it is "
        "signed out everywhere"
    )


def logout_user(args: argparse.Namespace) -> None:
    db.migrate()
    try:
        with db.session_scope() as session:
            ended = accounts.logout_everywhere(session=session, username=args.name)
            [user] = [u for u in accounts.list_users(session=session) if u.username == args.name]
            audit.record(
                session, None, "logout_everywhere", "user", user.id, via="cli", sessions_ended=ended
            )
    except accounts.AccountError as error:
        _fail("logout", error)
    _print(
        f"{args.name} is signed out everywhere: {ended} console session(s) ended, "
        "and every bearer token issued until now is refused"
    )


def set_dingtalk(args: argparse.Namespace) -> None:
    if (args.dingtalk_id is None) == (not args.unbind):
        _fail("set-dingtalk", ValueError("give either a DingTalk id or --unbind"))
    db.migrate()
    try:
        with db.session_scope() as session:
            user = accounts.set_dingtalk_id(
                session=session, username=args.name, dingtalk_id=args.dingtalk_id
            )
            audit.record(
                session, None, "user_dingtalk", "user", user.id, via="cli", bound=not args.unbind
            )
    except accounts.AccountError as error:
        _fail("set-dingtalk", error)
    if args.unbind:
        _print(f"{args.name} is no longer bound to a DingTalk account")
    else:
        _print(f"{args.name} now answers residents from DingTalk as {user.dingtalk_id}")


def user_command(args: argparse.Namespace) -> None:
    if args.user_command == "add":
        add_user(args)
    elif args.user_command == "list":
        list_users()
    elif args.user_command == "disable":
        disable_user(args)
    elif args.user_command == "reset":
        reset_user(args)
    elif args.user_command == "set-dingtalk":
        set_dingtalk(args)
    elif args.user_command == "logout":
        logout_user(args)


def load_demo() -> None:
    from casework import demo
    from casework.settings import get_settings

    if not get_settings().development:
        sys.stderr.write("jmt demo-data: refused outside JMT_ENV=development\n")
        sys.exit(2)
    db.migrate()
    with db.session_scope() as session:
        created = demo.load(session=session)
    _print(
        f"demo accounts: {len(created)} created, password {demo.DEMO_PASSWORD!r} "
        "(commander, fanzha, fazhi, officer01 ... — see casework/demo.py)"
    )


def list_tickets() -> None:
    db.migrate()
    with db.session_scope() as session:
        for ticket in overview.all_tickets(session=session):
            _print(
                f"#{ticket.id} {ticket.kind} {ticket.status} {ticket.location or ''} "
                f"{ticket.summary}"
            )


def nlu_inbox(limit: int, reason: str | None) -> None:
    from casework import nlu_inbox as inbox

    db.migrate()
    with db.session_scope() as session:
        filters = inbox.Filters(reason=reason)
        items, total = inbox.inbox(session=session, user=None, filters=filters, limit=limit)
        for item in items:
            top2 = " / ".join(f"{r['name']} {r['confidence'] or 0:.2f}" for r in item.ranking[:2])
            _print(f"#{item.id} [{','.join(item.reasons)}] {top2}  {item.text}")
            for entity in item.entities:
                _print(f"    {entity['entity']}={entity['value']}")
        _print(f"{len(items)} of {total} waiting")


def nlu_export() -> None:
    from casework import nlu_export as exporter

    db.migrate()
    with db.session_scope() as session:
        result = exporter.export(session=session, user=None)
    for line in result.lines():
        _print(line)
    if result.conflicts or result.heldout:
        sys.exit(1)


def purge(older_than: str | None) -> None:
    """`jmt purge [--older-than 180d]`: anonymise what retention allows no longer to keep
    (casework/retention.py) and print the counts."""
    from casework import retention
    from casework.settings import get_settings

    try:
        age = retention.parse_age(older_than or f"{get_settings().retention_days}d")
    except ValueError as error:
        sys.exit(f"jmt purge: {error}")
    db.migrate()
    with db.session_scope() as session:
        report = retention.purge(
            session=session, older_than=age, tracker_url=get_settings().rasa_tracker_url
        )
    for line in report.lines():
        _print(line)


def weekly_report(week: str | None, form: str, output: str | None) -> None:
    from casework import hot_topics
    from jmt import report

    with db.session_scope() as session:
        try:
            found = hot_topics.compute(session=session, week=week)
        except ValueError as error:
            sys.stderr.write(f"jmt report weekly: {error}\n")
            sys.exit(2)
    if form == "html":
        text = report.html_page(found)
    elif form == "json":
        text = found.json(ensure_ascii=False, indent=2) + "\n"
    else:
        text = report.markdown(found)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        _print(f"{found.week}: {found.messages} messages, {len(found.risers)} risers → {output}")
    else:
        sys.stdout.write(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jmt", description="警民通 command line")
    commands = parser.add_subparsers(dest="command", required=True)
    database = commands.add_parser("db", help="database schema")
    database.add_argument("action", choices=["migrate"])
    cases = commands.add_parser("cases", help="list hand-offs")
    cases.add_argument("--status", choices=["open", "claimed", "closed"])
    commands.add_parser("tickets", help="list diversion tickets")
    user = commands.add_parser("user", help="console accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser(
        "add", help="create an account (password from a prompt, or twice on stdin)"
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=accounts.ROLES)
    add.add_argument("--community")
    add.add_argument("--desk", choices=accounts.DESKS)
    add.add_argument("--dingtalk-id", help="the officer's DingTalk user id (staffId)")
    add.add_argument("--mobile", help="for DingTalk @-mentions of urgent cases")
    user_commands.add_parser("list", help="every account (never the password hashes)")
    disable = user_commands.add_parser("disable", help="refuse the account's logins and tokens")
    disable.add_argument("name")
    reset = user_commands.add_parser(
        "reset", help="set a new password (read like add) and clear the lockouts"
    )
    reset.add_argument("name")
    bind = user_commands.add_parser(
        "set-dingtalk", help="bind (or --unbind) the officer's DingTalk user id (staffId)"
    )
    bind.add_argument("name")
    bind.add_argument("dingtalk_id", nargs="?", metavar="ID")
    bind.add_argument("--unbind", action="store_true", help="remove the binding")
    logout = user_commands.add_parser(
        "logout", help="end every console session and bearer token of the account"
    )
    logout.add_argument("name")
    commands.add_parser("demo-data", help="load demo jurisdictions and accounts")
    commands.add_parser("train", help="train a model unless one matches the data")
    commands.add_parser("evaluate", help="evaluate the model on the held-out set")
    nlu = commands.add_parser("nlu", help="trainers' NLU tools")
    nlu_commands = nlu.add_subparsers(dest="nlu_command", required=True)
    models.add_nlu_evaluate_parser(nlu_commands)
    inbox = nlu_commands.add_parser("inbox", help="messages waiting for a trainer (masked)")
    inbox.add_argument("--limit", type=int, default=50)
    inbox.add_argument(
        "--reason", choices=["low_confidence", "fallback", "ambiguous", "corrected", "sample"]
    )
    nlu_commands.add_parser("export", help="write annotated inbox examples into nlu_data/")
    models.add_model_parser(commands)
    commands.add_parser(
        "purge", help="anonymise residents' words and finished matters past retention"
    ).add_argument("--older-than", help="e.g. 180d or 12h (default: RETENTION_DAYS)")
    report = commands.add_parser("report", help="reports for the bureau")
    report_commands = report.add_subparsers(dest="report_command", required=True)
    weekly = report_commands.add_parser(
        "weekly", help="the week's hot topics (热点) per street and community, with risers"
    )
    weekly.add_argument("--week", help="ISO week, e.g. 2026-W48 (default: the last full week)")
    weekly.add_argument("--format", choices=["markdown", "html", "json"], default="markdown")
    weekly.add_argument("--output", help="write to this file instead of the terminal")
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("train", "evaluate"):  # only those pass options on
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)

    if args.command == "db":
        db.migrate()
        _print("database schema is up to date")
    elif args.command == "cases":
        list_cases(args.status)
    elif args.command == "tickets":
        list_tickets()
    elif args.command == "user":
        user_command(args)
    elif args.command == "demo-data":
        load_demo()
    elif args.command == "purge":
        purge(args.older_than)
    elif args.command == "report":
        weekly_report(args.week, args.format, args.output)
    elif args.command == "train":
        from jmt.train import main as train_main

        sys.argv = ["jmt train", *rest]
        train_main()
    elif args.command == "evaluate":
        from jmt.evaluate import main as evaluate_main

        sys.argv = ["jmt evaluate", *rest]
        evaluate_main()
    elif args.command == "nlu" and args.nlu_command == "inbox":
        nlu_inbox(args.limit, args.reason)
    elif args.command == "nlu" and args.nlu_command == "export":
        nlu_export()
    elif args.command == "nlu" and args.nlu_command == "evaluate":
        sys.exit(models.nlu_evaluate(args))
    elif args.command == "model":
        sys.exit(models.model_command(args))


if __name__ == "__main__":
    main()
