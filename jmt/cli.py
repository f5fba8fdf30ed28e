"""`jmt` — operators' and trainers' command line.

jmt db migrate            bring the database schema up to date
jmt cases [--status S]    list hand-offs recorded by the assistant
jmt tickets               list diversion tickets for the governance platform
jmt train | evaluate      same as `make train` / `make evaluate`
jmt nlu inbox | export      the trainers' inbox (masked), export to nlu_data/
jmt nlu evaluate --compare  candidate vs live model on the held-out set: the quality gate
jmt model promote | rollback | list   load a gated model into running Rasa, undo, list
jmt purge [--older-than 180d]  anonymise residents' words and finished matters past retention
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from sqlalchemy import select

from casework import accounts, db
from casework.models import Case, Ticket
from jmt import model as models


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")


def list_cases(status: str | None) -> None:
    db.migrate()
    with db.session_scope() as session:
        query = select(Case).order_by(Case.id)
        if status:
            query = query.where(Case.status == status)
        for case in session.execute(query).scalars():
            _print(
                f"#{case.id} [{case.priority}] {case.category} {case.status} "
                f"desk={case.desk or '社区民警'} {case.created_at:%Y-%m-%d %H:%M} {case.summary}"
            )
            _print("    " + json.dumps(case.details, ensure_ascii=False))


def add_user(args: argparse.Namespace) -> None:
    db.migrate()
    try:
        with db.session_scope() as session:
            user = accounts.create_user(
                session=session,
                username=args.name,
                password=args.password,
                role=args.role,
                community=args.community,
                desk=args.desk,
            )
            _print(f"created {user.role} {user.username} (id {user.id})")
    except accounts.AccountError as error:
        sys.stderr.write(f"jmt user add: {error}\n")
        sys.exit(2)


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
        for ticket in session.execute(select(Ticket).order_by(Ticket.id)).scalars():
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
        report = retention.purge(session=session, older_than=age)
    for line in report.lines():
        _print(line)


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
    add = user_commands.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--password", required=True)
    add.add_argument("--role", required=True, choices=accounts.ROLES)
    add.add_argument("--community")
    add.add_argument("--desk", choices=accounts.DESKS)
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
    args, rest = parser.parse_known_args(argv)
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
        add_user(args)
    elif args.command == "demo-data":
        load_demo()
    elif args.command == "purge":
        purge(args.older_than)
    elif args.command == "train":
        from jmt.train import main as train_main

        sys.argv = ["jmt train", *rest]
        train_main()
    elif args.command == "evaluate":
        from jmt.evaluate import main as evaluate_main

        sys.argv = ["jmt evaluate", *rest]
        evaluate_main()
    elif rest and (args.command == "model" or getattr(args, "nlu_command", "") == "evaluate"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
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
