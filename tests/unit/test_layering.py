"""Two of DESIGN.md's rules, read from the source (issue 8):

- `casework` is the only code that reads or writes the database: no SQLAlchemy statement
  (`select`, `insert`, `update`, `delete`, `text`) and no ORM query is built in the web
  app, the actions, the integrations or the command line;
- one timezone helper: the current time comes from `casework.clock` (aware, UTC), never
  from `datetime.now()` / `datetime.utcnow()` written anywhere else.

Benchmarks and tests count rows to measure and check; they are not held to the first rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from jmt import paths

APPLICATION = ("gateway", "actions", "integrations", "jmt")
STATEMENTS = {"select", "insert", "update", "delete", "text"}


def _sources(*packages: str) -> list[Path]:
    return sorted(
        path
        for package in packages
        for path in (paths.REPO_ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    )


def _sqlalchemy_statements(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [f"imports {a.name}" for a in node.names if a.name in STATEMENTS]
        if (  # session.query(Model): the ORM's legacy query
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "query"
        ):
            found.append(".query()")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in STATEMENTS
            and isinstance(node.value, ast.Name)
            and node.value.id in ("sa", "sqlalchemy")
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", _sources(*APPLICATION), ids=lambda p: str(p.name))
def test_no_sql_outside_casework(path):
    statements = _sqlalchemy_statements(ast.parse(path.read_text("utf-8")))
    relative = path.relative_to(paths.REPO_ROOT)
    assert not statements, f"{relative} builds SQL ({statements}): call a casework service"


def _now_calls(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("now", "utcnow", "today")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("datetime", "date")
        ):
            lines.append(node.lineno)
    return lines


def test_the_current_time_comes_from_casework_clock():
    clock = paths.REPO_ROOT / "casework" / "clock.py"
    offenders = {
        str(path.relative_to(paths.REPO_ROOT)): lines
        for path in _sources("casework", *APPLICATION)
        if path != clock and (lines := _now_calls(ast.parse(path.read_text("utf-8"))))
    }
    assert not offenders, f"use casework.clock (utcnow, beijing_now): {offenders}"


def test_the_checks_see_what_they_look_for():
    """The two detectors are not blind: they find what they are meant to find."""
    sql = ast.parse(
        "from sqlalchemy import select\nimport sqlalchemy as sa\nsa.text('x')\ns.query(A)\n"
    )
    assert sorted(_sqlalchemy_statements(sql)) == [".query()", "imports select", "sa.text"]
    assert _now_calls(ast.parse("from datetime import datetime\nx = datetime.now()\n")) == [2]
