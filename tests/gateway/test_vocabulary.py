"""The vocabulary is defined once (casework.vocabulary), served by GET /api/vocabulary, and
never re-typed in the console's HTML or JavaScript."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from casework import accounts, cases, db, nlu_inbox, tickets, vocabulary
from casework.settings import REPO_ROOT
from gateway.app import create_app
from gateway.console import routes as console
from tests.gateway.conftest import StandInRasa, gateway_settings


def values(terms) -> list[str]:
    return [term.value for term in terms]


def test_every_code_of_the_domain_has_a_label_in_its_order():
    vocab = vocabulary.vocabulary()
    assert values(vocab.categories) == list(cases.CATEGORIES)
    assert values(vocab.priorities) == list(cases.PRIORITIES)  # most urgent first
    assert values(vocab.desks) == list(accounts.DESKS)
    assert values(vocab.roles) == list(accounts.ROLES)
    assert values(vocab.ticket_kinds) == list(tickets.KIND_LABELS)
    assert values(vocab.nlu_reasons) == list(nlu_inbox.REASONS)
    assert values(vocab.entities) == list(nlu_inbox.ENTITY_NAMES)
    states = set(values(vocab.ticket_states))
    assert {"pending", "linked", *tickets.STATUSES, *cases.OPEN_TICKET_STATES} <= states
    assert {t.value for t in vocab.ticket_states if t.open} == set(cases.OPEN_TICKET_STATES)
    for field in vocab.__fields__:
        terms = getattr(vocab, field)
        if isinstance(terms, list):
            assert all(term.label for term in terms), field
            assert len(set(values(terms))) == len(terms), f"duplicate code in {field}"


def test_every_ticket_state_the_code_sets_has_a_label():
    # `ticket.status = "x"` and `ticket.status, ... = "x", ...` anywhere in the server code
    assignment = re.compile(r'ticket\.status(?:,[^=\n]+)?\s*=\s*"(\w+)"')
    set_in_code = {"pending"}  # the column's default, set by casework.cases.open_ticket
    for path in [*REPO_ROOT.glob("casework/*.py"), *REPO_ROOT.glob("gateway/*.py")]:
        set_in_code |= set(assignment.findall(path.read_text(encoding="utf-8")))
    assert {"sent", "linked", "failed"} <= set_in_code, "the scan no longer finds assignments"
    labelled = set(values(vocabulary.vocabulary().ticket_states))
    assert set_in_code <= labelled, f"unlabelled ticket states: {set_in_code - labelled}"


def test_delivery_and_notification_states_have_labels():
    vocab = vocabulary.vocabulary()
    assert {"queued", "sent", "failed"} <= set(values(vocab.message_statuses))
    assert set(values(vocab.notify_statuses)) == {"pending", "sent", "failed"}


def test_labels_and_targets_are_the_domains_own():
    vocab = vocabulary.vocabulary()
    fraud = next(c for c in vocab.categories if c.value == "fraud_suspicion")
    assert (fraud.label, fraud.desk) == ("涉诈", "反诈")
    urgent = vocab.priorities[0]
    assert (urgent.value, urgent.label, urgent.response_target_seconds) == ("urgent", "紧急", 300)
    assert vocab.ticket_target_seconds == 72 * 3600


def _reasons_opened_in(path: Path) -> set[str]:
    """Literal `reason="..."` keyword arguments in a Python source file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.keyword) and node.arg == "reason":
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                found.add(node.value.value)
    return found


def test_every_hand_off_reason_in_the_code_has_a_label():
    sources = [*REPO_ROOT.glob("actions/*.py"), *REPO_ROOT.glob("gateway/*.py")]
    sources += [*REPO_ROOT.glob("casework/*.py")]
    used: set[str] = set()
    for path in sources:
        used |= _reasons_opened_in(path)
    used |= {"ticket_rejected", "ticket_overdue"}  # passed positionally by casework.tickets
    assert used, "the scan found no reasons: the test would pass vacuously"
    assert used <= set(values(vocabulary.vocabulary().case_reasons))


# Labels whose only home is casework: none of them may appear in the console's files.
# A few are also ordinary page words (a column 时间, the queue's tab 已办结, 社区 and 民警 in
# headers), so they are not checked.
PAGE_WORDS = {"时间", "已办结", "社区", "民警"}
LABELS = [
    *cases.CATEGORY_LABELS.values(),
    *vocabulary.PRIORITY_LABELS.values(),
    *vocabulary.CASE_STATUS_LABELS.values(),
    *vocabulary.NOTIFY_STATUS_LABELS.values(),
    *vocabulary.MESSAGE_STATUS_LABELS.values(),
    *vocabulary.TICKET_STATE_LABELS.values(),
    *nlu_inbox.REASON_LABELS.values(),
    *vocabulary.CASE_REASON_LABELS.values(),
    *vocabulary.ROLE_LABELS.values(),
    *vocabulary.ENTITY_LABELS.values(),
    *vocabulary.DETAIL_LABELS.values(),
    *tickets.KIND_LABELS.values(),
    "噪音扰民",  # the console's former copy of the ticket kinds
    "犬只问题",
]


def _console_sources() -> dict[str, str]:
    files = {
        name: (console.STATIC_DIR / name).read_text("utf-8") for name in console.static_files()
    }
    files["routes.py"] = Path(console.__file__).read_text("utf-8")
    for template in console.TEMPLATE_DIR.glob("*.html"):  # the pages' markup
        files[template.name] = template.read_text("utf-8")
    return files


@pytest.mark.parametrize("label", sorted(set(LABELS) - PAGE_WORDS))
def test_the_console_does_not_copy_a_label(label):
    # As a whole string or element text: "紧急" or >紧急<, not inside a sentence.
    pattern = re.compile(rf"""["'>]{re.escape(label)}["'<]""")
    copies = [name for name, text in _console_sources().items() if pattern.search(text)]
    assert not copies, f"{label!r} is re-typed in {copies}; read it from /api/vocabulary"


def test_the_console_does_not_copy_a_code_list():
    for name, text in _console_sources().items():
        for codes in (cases.CATEGORIES, accounts.DESKS, cases.PRIORITIES, nlu_inbox.REASONS):
            listed = [code for code in codes if re.search(rf"""["']{code}["']""", text)]
            assert len(listed) < 3, f"{name} lists {listed}; read them from /api/vocabulary"


@pytest.fixture
def client(sqlite_url, monkeypatch):
    settings = gateway_settings(sqlite_url, monkeypatch)
    app = create_app(settings, start_outbox=False, rasa=StandInRasa(), probe_actions=False)
    with TestClient(app) as client:
        yield client


def test_every_signed_in_role_reads_the_vocabulary(client):
    with db.session_scope() as session:
        for role in accounts.ROLES:
            accounts.create_user(
                session=session, username=f"u-{role}", password="correct-horse", role=role
            )
    assert client.get("/api/vocabulary").status_code == 401
    for role in accounts.ROLES:
        login = {"username": f"u-{role}", "password": "correct-horse"}
        bearer = client.post("/api/auth/token", data=login).json()["access_token"]
        answer = client.get("/api/vocabulary", headers={"Authorization": f"Bearer {bearer}"})
        assert answer.status_code == 200, (role, answer.text)
        assert answer.json() == vocabulary.vocabulary().dict()
    schema = client.get("/openapi.json").json()
    assert "VocabularyPublic" in schema["components"]["schemas"]
