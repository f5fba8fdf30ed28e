"""The authorization matrix: every route of the app × every role → the expected answer.

The rows are explicit data (one per method and path template, taken from `app.routes`);
a route in the app without a row fails, and so does a row whose route is gone, so adding
a route means adding one line here. Roles: anonymous, an officer of community A (where
the records live), an officer of community B, the 反诈 desk officer, a commander, a
trainer and an admin. The scoping rules (docs/console-api.md): an officer sees the cases
of their community, their desk, or assigned to or claimed by them, the tickets of their
community or of those cases, and the conversations of residents with such a case or
ticket; out of scope by id is a 404 like a missing record; list routes leave it out.

The records, made through the domain layer: a noise case of community A with its
resident's conversation and a governance ticket, and a fraud case for the 反诈 desk with
no community. Mutating routes act on a fresh community-A case per check, so every cell is
meaningful whatever ran before it. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import Mount, Route

from casework import accounts, broadcasts, db, dissuasion, nlu_export, sessions, stop_payments
from casework.broadcast_schemas import AudienceIn
from casework.cases import open_case, open_ticket
from casework.clock import utcnow
from casework.conversations import conversation_for, record_inbound
from casework.dissuasion_schemas import LeadIn
from casework.models import Case, User
from gateway.app import create_app
from jmt import paths
from tests.gateway.conftest import StandInRasa, gateway_settings

ROLES = ("anonymous", "officer_a", "officer_b", "desk", "commander", "trainer", "admin")
PASSWORD = "correct-horse-battery"
COMMUNITY_A, COMMUNITY_B = "万景社区", "清水浦社区"

# ------------------------------------------------------------------ expectations


def everyone(code: int) -> dict[str, int]:
    """Public routes: the bearer token (if any) changes nothing."""
    return dict.fromkeys(ROLES, code)


def signed_in(code: int = 200) -> dict[str, int]:
    return {**everyone(code), "anonymous": 401}


def scoped(in_scope: int = 200) -> dict[str, int]:
    """A record of community A: its officer, commanders and admins; others 404; trainers
    are refused residents' records altogether."""
    return {
        "anonymous": 401,
        "officer_a": in_scope,
        "officer_b": 404,
        "desk": 404,
        "commander": in_scope,
        "trainer": 403,
        "admin": in_scope,
    }


def officers_only(code: int = 200) -> dict[str, int]:
    """Every console role but trainers, without scoping (aggregates, the officers' list)."""
    return {**signed_in(code), "trainer": 403}


def anti_fraud(in_scope: int = 200) -> dict[str, int]:
    """A dissuasion task or fraud case of community A: like `scoped`, and the 反诈 desk
    sees it too."""
    return {**scoped(in_scope), "desk": in_scope}


def uploaders(code: int = 200) -> dict[str, int]:
    """Lead imports: commanders, admins and the 反诈 desk; community officers 403."""
    return {**officers_only(403), "desk": code, "commander": code, "admin": code}


def trainers_only(code: int = 200) -> dict[str, int]:
    return {
        **signed_in(403),
        "trainer": code,
        "admin": code,
    }


# Which fixture records a list shows each role (None: the call is refused).
CASES_SEEN = {
    "officer_a": {"noise_case"},
    "officer_b": set(),
    "desk": {"fraud_case"},
    "commander": {"noise_case", "fraud_case"},
    "admin": {"noise_case", "fraud_case"},
}
CONVERSATIONS_SEEN = {
    "officer_a": {"resident"},
    "officer_b": set(),
    "desk": {"victim"},
    "commander": {"resident", "victim"},
    "admin": {"resident", "victim"},
}
TICKETS_SEEN = {
    "officer_a": {"ticket"},
    "officer_b": set(),
    "desk": set(),
    "commander": {"ticket"},
    "admin": {"ticket"},
}
TASKS_SEEN = {
    "officer_a": {"task_a"},
    "officer_b": set(),
    "desk": {"task_a", "task_desk"},
    "commander": {"task_a", "task_desk"},
    "admin": {"task_a", "task_desk"},
}
LEADS_CSV = (
    "external_id,phone,risk_type,risk_level,warned_at,source\n"
    "matrix-csv-1,13800009999,贷款,low,2026-12-05T10:00:00+08:00,96110\n"
).encode()


# List routes come a page at a time (50 by default); the cells that create fresh records
# push the fixture's own past the first page, so the "sees" check asks for the largest one.
WHOLE_LIST = {"limit": 200}


@dataclass(frozen=True)
class Row:
    expect: dict[str, int]
    sees: dict[str, set[str]] | None = None  # list routes: the fixture records shown
    json: dict[str, Any] | None = None
    fresh: bool = False  # acts on a new community-A case (and resident message) per check
    stream: bool = False  # an endless event stream: 200 cells are not requested here
    form: bool = False  # the login form with the role's own account
    fresh_task: bool = False  # acts on a new community-A dissuasion task per check
    case: str = "noise_case"  # the fixture record whose id fills {case_id}
    files: dict[str, Any] | None = None  # a multipart upload
    params: dict[str, Any] | None = None  # the query string
    fresh_broadcast: str | None = None  # acts on a new community-A broadcast in this state
    # The role signs in through the console's cookie session (POST /api/auth/session)
    # for this check, and sends its cookie and CSRF token instead of the bearer header.
    session: bool = False


STREAM_NOTE = (
    "/api/events never ends, so a 200 cannot be awaited through TestClient; the stream "
    "itself is tested over real HTTP in tests/gateway/test_cases_api.py"
)

BROADCAST_A = {"communities": [COMMUNITY_A]}

MATRIX: dict[tuple[str, str], Row] = {
    # ---- public: WeChat's callback (signature required), health, docs, console shells
    ("GET", "/wechat"): Row(everyone(403)),  # no signature
    ("POST", "/wechat"): Row(everyone(403)),
    ("GET", "/healthz"): Row(everyone(200)),
    # No action server runs in this test, so the gateway is not ready: 503 for everyone.
    ("GET", "/readyz"): Row(everyone(503)),
    # Development without METRICS_TOKEN: open (the token: tests/gateway/test_operations.py).
    ("GET", "/metrics"): Row(everyone(200)),
    ("GET", "/docs"): Row(everyone(200)),
    ("GET", "/docs/oauth2-redirect"): Row(everyone(200)),
    ("GET", "/redoc"): Row(everyone(200)),
    ("GET", "/openapi.json"): Row(everyone(200)),
    ("GET", "/console"): Row(everyone(200)),  # empty shells; data comes from /api
    ("GET", "/console/"): Row(everyone(307)),
    ("GET", "/console/login"): Row(everyone(200)),
    ("GET", "/console/cases/{case_id}"): Row(everyone(200)),
    ("GET", "/console/tickets"): Row(everyone(200)),
    ("GET", "/console/dissuasion"): Row(everyone(200)),
    ("GET", "/console/broadcasts"): Row(everyone(200)),
    ("GET", "/console/metrics"): Row(everyone(200)),
    ("GET", "/console/nlu"): Row(everyone(200)),
    ("GET", "/console/static/{name}"): Row(everyone(200)),
    # ---- accounts
    ("POST", "/api/auth/token"): Row(signed_in(200), form=True),
    ("GET", "/api/me"): Row(signed_in(200)),
    # ---- console sessions (issue 12): the cookie-based rows sign in afresh per check;
    # logout answers 204 even without a session (nothing to end); logout-all ends every
    # session and bearer token of the role (the matrix signs the role in again after it)
    ("POST", "/api/auth/session"): Row(signed_in(200), form=True),
    ("GET", "/api/auth/session"): Row(signed_in(200), session=True),
    ("GET", "/api/auth/sessions"): Row(signed_in(200)),
    ("POST", "/api/auth/logout"): Row(everyone(204), session=True),
    ("POST", "/api/auth/logout-all"): Row(signed_in(200), session=True),
    ("GET", "/api/vocabulary"): Row(signed_in(200)),
    # The stream takes a single-use ticket, never the bearer header (tokens stay out of
    # URLs); without one everybody is refused. Tickets: tests/gateway/test_events.py.
    ("GET", "/api/events"): Row(everyone(401), stream=True),
    ("POST", "/api/events/ticket"): Row(officers_only(200)),
    # ---- residents' records, scoped
    ("GET", "/api/cases"): Row(officers_only(200), sees=CASES_SEEN, params=WHOLE_LIST),
    ("GET", "/api/cases/{case_id}"): Row(scoped()),
    ("POST", "/api/cases/{case_id}/claim"): Row(scoped(), fresh=True),
    ("POST", "/api/cases/{case_id}/reply"): Row(scoped(), json={"text": "您好"}, fresh=True),
    ("POST", "/api/cases/{case_id}/notes"): Row(scoped(), json={"text": "已电话联系"}, fresh=True),
    ("POST", "/api/cases/{case_id}/transfer"): Row(scoped(), json={"desk": "治安"}, fresh=True),
    ("POST", "/api/cases/{case_id}/divert"): Row(scoped(), json={"kind": "noise"}, fresh=True),
    ("POST", "/api/cases/{case_id}/close"): Row(scoped(), json={"resolution": "已办"}, fresh=True),
    ("POST", "/api/cases/{case_id}/category"): Row(
        scoped(), json={"category": "other"}, fresh=True
    ),
    ("GET", "/api/conversations"): Row(
        officers_only(200), sees=CONVERSATIONS_SEEN, params=WHOLE_LIST
    ),
    ("GET", "/api/conversations/{conversation_id}"): Row(scoped()),
    ("GET", "/api/tickets"): Row(officers_only(200), sees=TICKETS_SEEN, params=WHOLE_LIST),
    ("POST", "/api/tickets/{ticket_id}/status"): Row(everyone(401), json={"status": "accepted"}),
    # ---- precision dissuasion: the platform's signed webhook (no signature: 401), imports,
    # tasks of community A (its officer, the 反诈 desk, commanders, admins)
    ("POST", "/api/dissuasion/leads"): Row(everyone(401), json={"leads": []}),
    # ---- DingTalk's robot callback: signed with DINGTALK_APP_SECRET (no signature: 401)
    ("POST", "/api/dingtalk/callback"): Row(
        everyone(401), json={"msgId": "m1", "msgtype": "text", "text": {"content": "#1 您好"}}
    ),
    ("POST", "/api/dissuasion/leads/upload"): Row(
        uploaders(), files={"file": ("leads.csv", LEADS_CSV, "text/csv")}
    ),
    ("GET", "/api/dissuasion/tasks"): Row(officers_only(200), sees=TASKS_SEEN, params=WHOLE_LIST),
    ("GET", "/api/dissuasion/tasks/{task_id}"): Row(anti_fraud()),
    ("POST", "/api/dissuasion/tasks/{task_id}/attempts"): Row(
        anti_fraud(), json={"channel": "phone", "reached": False, "note": "无人接听"}
    ),
    ("POST", "/api/dissuasion/tasks/{task_id}/outcome"): Row(
        anti_fraud(), json={"outcome": "dissuaded", "amount_protected": 500}, fresh_task=True
    ),
    # ---- 紧急止付 on a fraud case of community A
    ("GET", "/api/cases/{case_id}/stop-payments"): Row(anti_fraud(), case="fraud_case_a"),
    ("POST", "/api/cases/{case_id}/stop-payments"): Row(
        anti_fraud(),
        json={"bank": "工商银行", "account": "6222021234567890", "amount": 100},
        case="fraud_case_a",
    ),
    ("POST", "/api/cases/{case_id}/stop-payments/{stop_payment_id}/result"): Row(
        anti_fraud(), json={"frozen": 50}, case="fraud_case_a"
    ),
    # ---- warnings (预警推送): officers to their own community only (officer_b's and the
    # desk's are not community A: 403); a community-A broadcast is scoped like a case
    ("POST", "/api/broadcasts"): Row(
        {**scoped(200), "officer_b": 403, "desk": 403},
        json={"topic": "fraud", "title": "防诈提醒", "text": "请勿轻信", "audience": BROADCAST_A},
    ),
    ("GET", "/api/broadcasts"): Row(officers_only(200)),
    ("GET", "/api/broadcasts/preview"): Row(
        officers_only(200), params={"topic": "fraud", "title": "防诈提醒", "text": "请勿轻信"}
    ),
    ("GET", "/api/broadcasts/{broadcast_id}"): Row(scoped()),
    ("POST", "/api/broadcasts/{broadcast_id}/pause"): Row(scoped(), fresh_broadcast="scheduled"),
    ("POST", "/api/broadcasts/{broadcast_id}/resume"): Row(scoped(), fresh_broadcast="paused"),
    ("POST", "/api/broadcasts/{broadcast_id}/cancel"): Row(scoped(), fresh_broadcast="scheduled"),
    # drafts (草稿): edited and released by whoever may send to community A
    ("PUT", "/api/broadcasts/{broadcast_id}"): Row(
        scoped(),
        json={"topic": "fraud", "title": "防诈提醒", "text": "请勿轻信", "audience": BROADCAST_A},
        fresh_broadcast="draft",
    ),
    ("POST", "/api/broadcasts/{broadcast_id}/send"): Row(scoped(), fresh_broadcast="draft"),
    # ---- officers' tools and aggregates (no resident words)
    ("GET", "/api/canned-replies"): Row(officers_only(200)),
    ("GET", "/api/officers"): Row(officers_only(200)),
    ("GET", "/api/metrics"): Row(officers_only(200)),
    ("GET", "/api/metrics.csv"): Row(officers_only(200)),
    ("GET", "/api/metrics/hot-topics"): Row(officers_only(200)),
    # ---- the trainers' inbox (masked)
    ("GET", "/api/nlu/inbox"): Row(trainers_only()),
    ("GET", "/api/nlu/intents"): Row(trainers_only()),
    ("POST", "/api/nlu/inbox/{message_id}/annotate"): Row(
        trainers_only(), json={"intent": "complain_noise"}, fresh=True
    ),
    ("POST", "/api/nlu/inbox/{message_id}/discard"): Row(trainers_only(), fresh=True),
    ("POST", "/api/nlu/export"): Row(trainers_only()),
}


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path template) of every route, HEAD aside (Starlette adds it to GETs);
    a mounted static directory counts as GET <mount>/{name}."""
    found = set()
    for route in app.routes:
        if isinstance(route, (APIRoute, Route)):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
        elif isinstance(route, Mount):
            found.add(("GET", route.path + "/{name}"))
    return found


# ------------------------------------------------------------------ the world


@dataclass
class World:
    client: TestClient
    headers: dict[str, dict[str, str]]
    ids: dict[str, int]
    names: dict[str, dict[int, str]] = field(default_factory=dict)  # kind → id → name
    fresh_count: int = 0


def _user(session, name: str, role: str, **where: str) -> None:
    accounts.create_user(session=session, username=name, password=PASSWORD, role=role, **where)


def _resident_message(session, openid: str, key: str) -> int:
    """A parsed resident message (one the trainers' inbox picks: low confidence)."""
    message, _ = record_inbound(
        session=session, openid=openid, dedupe_key=key, msg_type="text", content="楼上太吵了"
    )
    message.intent, message.confidence = "complain_noise", 0.4
    message.media = {"parse": {"ranking": [{"name": "complain_noise", "confidence": 0.4}]}}
    session.flush()
    return int(message.id)


def _noise_case(session, openid: str) -> Case:
    case = open_case(
        session=session,
        sender_id=openid,
        category="noise_complaint",
        priority="normal",
        reason="resident_request",
        summary="【噪音投诉】楼上装修",
    )
    case.street, case.community = "骆驼街道", COMMUNITY_A
    session.flush()
    return case


def _lead(external_id: str, address: str | None) -> LeadIn:
    return LeadIn(
        external_id=external_id,
        phone="13800001234",
        address=address,
        risk_type="刷单返利",
        risk_level="high",
        warned_at="2026-12-05T10:00:00+08:00",
        source="96110",
    )


def _broadcast(session, author: User, *, paused: bool, draft: bool = False) -> int:
    """A community-A warning (scheduled in an hour), paused or a draft when asked."""
    created = broadcasts.compose(
        session=session,
        user=author,
        topic="fraud",
        title="防诈提醒",
        text="请勿轻信陌生来电",
        audience=AudienceIn(**BROADCAST_A),
        send_at=utcnow() + timedelta(hours=1),
        draft=draft,
    )
    if paused:
        broadcasts.pause(session=session, user=author, broadcast_id=created.id)
    return created.id


def _fresh_broadcast(state: str) -> int:
    with db.session_scope() as session:
        commander = session.execute(select(User).where(User.username == "commander")).scalar_one()
        return _broadcast(session, commander, paused=state == "paused", draft=state == "draft")


def _make_records() -> dict[str, int]:
    with db.session_scope() as session:
        _user(session, "officer_a", "officer", community=COMMUNITY_A)
        _user(session, "officer_b", "officer", community=COMMUNITY_B)
        _user(session, "desk", "officer", desk="反诈")
        _user(session, "commander", "commander")
        _user(session, "trainer", "trainer")
        _user(session, "admin", "admin")
        message = _resident_message(session, "o-resident-a", "matrix-resident")
        noise = _noise_case(session, "o-resident-a")
        ticket = open_ticket(
            session=session,
            sender_id="o-resident-a",
            kind="noise",
            summary="楼上装修",
            street="骆驼街道",
            community=COMMUNITY_A,
        )
        ticket.case_id = noise.id
        _resident_message(session, "o-victim", "matrix-victim")
        fraud = open_case(
            session=session,
            sender_id="o-victim",
            category="fraud_suspicion",
            priority="urgent",
            reason="money_lost",
            summary="【涉诈】刷单被骗两万",
        )
        fraud_a = open_case(
            session=session,
            sender_id="o-victim-a",
            category="fraud_suspicion",
            priority="urgent",
            reason="money_lost",
            summary="【涉诈】冒充客服被骗",
        )
        fraud_a.street, fraud_a.community = "骆驼街道", COMMUNITY_A
        session.flush()
        commander = session.execute(select(User).where(User.username == "commander")).scalar_one()
        stop = stop_payments.request(
            session=session,
            user=commander,
            case_id=fraud_a.id,
            bank="工商银行",
            account="6222021234567890",
            amount=Decimal("100"),
        )
        task_a, task_desk = dissuasion.ingest_leads(
            session=session,
            leads=[_lead("matrix-task-a", COMMUNITY_A), _lead("matrix-task-desk", None)],
            actor=None,
        ).task_ids
        broadcast = _broadcast(session, commander, paused=False)
        return {
            "broadcast": broadcast,
            "fraud_case_a": fraud_a.id,
            "stop_payment": stop.id,
            "task_a": task_a,
            "task_desk": task_desk,
            "noise_case": noise.id,
            "fraud_case": fraud.id,
            "ticket": ticket.id,
            "message": message,
            "resident": conversation_for(session=session, openid="o-resident-a").id,
            "victim": conversation_for(session=session, openid="o-victim").id,
        }


@pytest.fixture
def world(database_url, monkeypatch, tmp_path) -> Iterator[World]:
    # The export writes into a copy of nlu_data/, never into the repository's.
    target = tmp_path / "nlu_data"
    shutil.copytree(paths.NLU_DATA, target)
    monkeypatch.setattr(nlu_export, "NLU_DATA", target)
    settings = gateway_settings(database_url, monkeypatch)
    app = create_app(settings, start_outbox=False, rasa=StandInRasa(), probe_actions=False)
    with TestClient(app, follow_redirects=False) as client:
        ids = _make_records()
        headers: dict[str, dict[str, str]] = {"anonymous": {}}
        for role in ROLES[1:]:
            login = {"username": role, "password": PASSWORD}
            answer = client.post("/api/auth/token", data=login)
            assert answer.status_code == 200, answer.text
            headers[role] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        names = {
            "/api/cases": {ids["noise_case"]: "noise_case", ids["fraud_case"]: "fraud_case"},
            "/api/conversations": {ids["resident"]: "resident", ids["victim"]: "victim"},
            "/api/tickets": {ids["ticket"]: "ticket"},
            "/api/dissuasion/tasks": {ids["task_a"]: "task_a", ids["task_desk"]: "task_desk"},
        }
        yield World(client=client, headers=headers, ids=ids, names=names)


def _fresh_ids(world: World) -> dict[str, int]:
    """A new community-A resident with a message and an open noise case."""
    world.fresh_count += 1
    openid = f"o-fresh-{world.fresh_count}"
    with db.session_scope() as session:
        message = _resident_message(session, openid, f"matrix-fresh-{world.fresh_count}")
        case = _noise_case(session, openid)
        return {"case_id": case.id, "message_id": message}


def _fresh_task(world: World) -> int:
    world.fresh_count += 1
    with db.session_scope() as session:
        lead = _lead(f"matrix-fresh-task-{world.fresh_count}", COMMUNITY_A)
        return dissuasion.ingest_leads(session=session, leads=[lead], actor=None).task_ids[0]


def _path(world: World, template: str, row: Row) -> str:
    values: dict[str, Any] = {
        "case_id": world.ids[row.case],
        "task_id": world.ids["task_a"],
        "stop_payment_id": world.ids["stop_payment"],
        "broadcast_id": world.ids["broadcast"],
        "conversation_id": world.ids["resident"],
        "ticket_id": world.ids["ticket"],
        "message_id": world.ids["message"],
        "name": "console.js",
    }
    if row.fresh:
        values |= _fresh_ids(world)
    if row.fresh_task:
        values["task_id"] = _fresh_task(world)
    if row.fresh_broadcast:
        values["broadcast_id"] = _fresh_broadcast(row.fresh_broadcast)
    return template.format(**values)


def _bearer(client: TestClient, role: str) -> dict[str, str]:
    answer = client.post("/api/auth/token", data={"username": role, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _console_session(world: World, role: str) -> dict[str, str]:
    """A new console session of `role`: its cookie and CSRF token as explicit headers (the
    client's cookie jar stays empty, so no other cell is signed in by accident)."""
    login = {"username": role, "password": PASSWORD}
    answer = world.client.post("/api/auth/session", data=login)
    assert answer.status_code == 200, answer.text
    token = world.client.cookies[sessions.COOKIE]
    world.client.cookies.clear()
    return {"Cookie": f"{sessions.COOKIE}={token}", "X-CSRF-Token": answer.json()["csrf_token"]}


def _check(world: World, method: str, template: str, row: Row, role: str) -> str | None:
    """None when the cell holds, else what happened."""
    try:
        return _check_cell(world, method, template, row, role)
    finally:
        world.client.cookies.clear()  # a console login's cookie signs in no later cell
        if row.session and role != "anonymous":  # logout-all ended the role's token
            world.headers[role] = _bearer(world.client, role)


def _check_cell(world: World, method: str, template: str, row: Row, role: str) -> str | None:
    expected = row.expect[role]
    if row.stream and expected == 200:
        return None  # STREAM_NOTE
    kwargs: dict[str, Any] = {"headers": world.headers[role]}
    if row.session:
        kwargs["headers"] = _console_session(world, role) if role != "anonymous" else {}
    if row.json is not None:
        kwargs["json"] = row.json
    if row.files is not None:
        kwargs["files"] = row.files
    if row.params is not None:
        kwargs["params"] = row.params
    if row.form:
        user = role if role != "anonymous" else "nobody"
        kwargs["data"] = {"username": user, "password": PASSWORD}
    answer = world.client.request(method, _path(world, template, row), **kwargs)
    if answer.status_code != expected:
        return f"{answer.status_code} (expected {expected}): {answer.text[:120]}"
    if row.sees is not None and expected == 200:
        names = world.names[template]
        shown = {names[item["id"]] for item in answer.json() if item["id"] in names}
        if shown != row.sees[role]:
            return f"shows {sorted(shown)} (expected {sorted(row.sees[role])})"
    return None


# ------------------------------------------------------------------ the tests


def test_every_route_has_a_row_and_every_row_a_route(sqlite_url, monkeypatch):
    app = create_app(gateway_settings(sqlite_url, monkeypatch), start_outbox=False)
    routes = app_routes(app)
    missing = sorted(routes - MATRIX.keys())
    gone = sorted(MATRIX.keys() - routes)
    assert not missing, f"routes without a row in MATRIX (add one line each): {missing}"
    assert not gone, f"rows whose route no longer exists: {gone}"
    for key, row in MATRIX.items():
        assert set(row.expect) == set(ROLES), f"{key}: expectations for {sorted(row.expect)}"
        if row.sees is not None:
            allowed = {role for role, code in row.expect.items() if code == 200}
            assert set(row.sees) == allowed, f"{key}: sees {sorted(row.sees)}, 200 for {allowed}"


def test_every_role_gets_the_expected_answer_from_every_route(world):
    failures = []
    checked = 0
    for (method, template), row in MATRIX.items():
        for role in ROLES:
            problem = _check(world, method, template, row, role)
            checked += 1
            if problem:
                failures.append(f"{method} {template} as {role}: {problem}")
    assert checked == len(MATRIX) * len(ROLES)
    # In scope / out of scope: the same role (an officer) in and out of the record's
    # community, on every route where that changes the answer.
    scoped = sum(1 for row in MATRIX.values() if row.expect["officer_a"] != row.expect["officer_b"])
    backend = "sqlite" if str(db.get_engine().url).startswith("sqlite") else "postgresql"
    print(
        f"\nauthorization matrix ({backend}): {len(MATRIX)} routes x {len(ROLES)} roles = "
        f"{checked} checks; {scoped} routes answer in scope and out of scope differently; "
        f"{len(failures)} differ"
    )
    assert not failures, f"{len(failures)} of {checked} cells differ:\n" + "\n".join(failures)


def _as(world: World, role: str) -> Callable[..., Any]:
    def call(method: str, path: str, **kwargs: Any) -> Any:
        return world.client.request(method, path, headers=world.headers[role], **kwargs)

    return call


def test_the_desk_officer_works_the_fraud_case_and_searches_only_in_scope(world):
    desk, officer_b = _as(world, "desk"), _as(world, "officer_b")
    fraud = world.ids["fraud_case"]
    assert desk("GET", f"/api/cases/{fraud}").status_code == 200
    assert desk("GET", f"/api/conversations/{world.ids['victim']}").status_code == 200
    assert desk("POST", f"/api/cases/{fraud}/claim").status_code == 200
    assert officer_b("GET", f"/api/cases/{fraud}").status_code == 404
    assert officer_b("GET", f"/api/conversations/{world.ids['victim']}").status_code == 404
    # ?openid= for a resident out of scope: an empty list, as if nobody wrote
    assert officer_b("GET", "/api/conversations", params={"openid": "o-victim"}).json() == []
    found = desk("GET", "/api/conversations", params={"openid": "o-victim"}).json()
    assert [c["id"] for c in found] == [world.ids["victim"]]
    # a missing record and an out-of-scope one answer the same
    missing = officer_b("GET", "/api/cases/999999")
    hidden = officer_b("GET", f"/api/cases/{fraud}")
    assert (missing.status_code, hidden.status_code) == (404, 404)
