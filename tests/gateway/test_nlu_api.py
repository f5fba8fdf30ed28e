"""/api/nlu — the trainers' inbox through the API, every endpoint and role, on SQLite and
PostgreSQL. The export writes into a copy of nlu_data/ under tmp_path."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from casework import accounts, db, nlu_export
from casework.conversations import record_inbound
from casework.models import AuditEntry
from jmt import paths

PASSWORD = "correct-horse-battery"
PHONE = "13912345678"


def add_user(name: str, role: str) -> None:
    with db.session_scope() as session:
        accounts.create_user(session=session, username=name, password=PASSWORD, role=role)


def login(wechat, name: str) -> dict[str, str]:
    answer = wechat.client.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def parsed(text: str, intent: str, confidence: float, key: str, ranking=None, entities=None):
    with db.session_scope() as session:
        message, _ = record_inbound(
            session=session, openid="o-api", dedupe_key=key, msg_type="text", content=text
        )
        message.intent, message.confidence = intent, confidence
        message.media = {
            "parse": {
                "ranking": ranking or [{"name": intent, "confidence": confidence}],
                "entities": entities or [],
            }
        }
        return message.id


@pytest.fixture
def people(wechat):
    for name, role in (
        ("chen", "trainer"),
        ("root", "admin"),
        ("zhang", "officer"),
        ("wang", "commander"),
    ):
        add_user(name, role)
    return {name: login(wechat, name) for name in ("chen", "root", "zhang", "wang")}


@pytest.fixture
def nlu_copy(tmp_path, monkeypatch):
    target = tmp_path / "nlu_data"
    shutil.copytree(paths.NLU_DATA, target)
    for stale in ("intents/inbox.yml", "faq/inbox.yml"):
        (target / stale).unlink(missing_ok=True)
    monkeypatch.setattr(nlu_export, "NLU_DATA", target)
    return target


ENDPOINTS = [
    ("get", "/api/nlu/inbox", None),
    ("get", "/api/nlu/intents", None),
    ("post", "/api/nlu/inbox/{id}/annotate", {"intent": "greet", "entities": []}),
    ("post", "/api/nlu/inbox/{id}/discard", None),
    ("post", "/api/nlu/export", None),
]


@pytest.mark.parametrize("method,path,body", ENDPOINTS)
def test_officers_and_commanders_get_403_and_anonymous_401(
    wechat, people, nlu_copy, method, path, body
):
    mid = parsed("嗯嗯", "nlu_fallback", 0.2, "k-role")
    url = path.format(id=mid)
    for name in ("zhang", "wang"):
        kwargs = {"headers": people[name]}
        if body is not None:
            kwargs["json"] = body
        answer = getattr(wechat.client, method)(url, **kwargs)
        assert answer.status_code == 403, (name, answer.text)
    assert getattr(wechat.client, method)(url).status_code == 401


def test_trainer_lists_masked_items_with_reasons_and_filters(wechat, people):
    low = parsed(
        f"我被骗了 他的电话{PHONE}",
        "report_fraud",
        0.42,
        "k1",
        ranking=[
            {"name": "report_fraud", "confidence": 0.42},
            {"name": "legal_help", "confidence": 0.38},
        ],
        entities=[{"entity": "phone", "value": PHONE, "start": 9, "end": 20}],
    )
    parsed("狗一直叫", "complain_dog", 0.55, "k2")
    answer = wechat.client.get("/api/nlu/inbox", headers=people["chen"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == 2
    item = next(i for i in body["items"] if i["id"] == low)
    assert PHONE not in answer.text
    assert item["text"] == "我被骗了 他的电话139****5678"
    assert item["entities"] == [{"entity": "phone", "value": "139****5678", "start": 9, "end": 20}]
    assert {"low_confidence", "ambiguous"} <= set(item["reasons"])
    assert [r["name"] for r in item["top2"]] == ["report_fraud", "legal_help"]
    assert "置信度低" in item["reason_labels"]

    only_dog = wechat.client.get(
        "/api/nlu/inbox", params={"intent": "complain_dog"}, headers=people["root"]
    ).json()
    assert [i["intent"] for i in only_dog["items"]] == ["complain_dog"]
    ranged = wechat.client.get(
        "/api/nlu/inbox",
        params={"min_confidence": 0.5, "max_confidence": 0.6, "since": "2000-01-01"},
        headers=people["chen"],
    ).json()
    assert [i["intent"] for i in ranged["items"]] == ["complain_dog"]
    ambiguous = wechat.client.get(
        "/api/nlu/inbox", params={"reason": "ambiguous"}, headers=people["chen"]
    ).json()
    assert [i["id"] for i in ambiguous["items"]] == [low]
    nobody = wechat.client.get(
        "/api/nlu/inbox", params={"community": "万景社区"}, headers=people["chen"]
    ).json()
    assert nobody == {"items": [], "total": 0}
    bad = wechat.client.get("/api/nlu/inbox", params={"reason": "nope"}, headers=people["chen"])
    assert bad.status_code == 422
    limited = wechat.client.get("/api/nlu/inbox", params={"limit": 1}, headers=people["chen"])
    assert len(limited.json()["items"]) == 1 and limited.json()["total"] == 2


def test_intents_for_the_picker(wechat, people):
    answer = wechat.client.get("/api/nlu/intents", headers=people["chen"])
    assert answer.status_code == 200
    names = {i["name"] for i in answer.json()["intents"]}
    assert {"report_fraud", "greet", "faq/passport"} <= names and "faq" not in names
    assert "bank_account" in answer.json()["entities"]


def test_annotate_discard_and_export(wechat, people, nlu_copy):
    fraud = parsed(f"在抖音上被骗了 电话{PHONE}", "out_of_scope", 0.3, "k1")
    noise = parsed("半夜楼上一直在拖椅子", "complain_noise", 0.5, "k2")
    junk = parsed("？？？", "nlu_fallback", 0.1, "k3")
    chen = people["chen"]

    bad = wechat.client.post(
        f"/api/nlu/inbox/{fraud}/annotate", json={"intent": "nope"}, headers=chen
    )
    assert bad.status_code == 422 and "未知意图" in bad.json()["detail"]
    bad_entity = wechat.client.post(
        f"/api/nlu/inbox/{fraud}/annotate",
        json={"intent": "report_fraud", "entities": [{"entity": "weapon", "start": 0, "end": 1}]},
        headers=chen,
    )
    assert bad_entity.status_code == 422
    missing = wechat.client.post(
        "/api/nlu/inbox/999999/annotate", json={"intent": "greet"}, headers=chen
    )
    assert missing.status_code == 404
    done = wechat.client.post(
        f"/api/nlu/inbox/{fraud}/annotate",
        json={
            "intent": "report_fraud",
            "entities": [
                {"entity": "platform", "start": 1, "end": 3},
                {"entity": "phone", "start": 10, "end": 21},
            ],
        },
        headers=chen,
    )
    assert done.status_code == 200, done.text
    assert done.json()["entities"][1]["value"] == "139****5678"
    confirm = wechat.client.post(
        f"/api/nlu/inbox/{noise}/annotate", json={"intent": "complain_noise"}, headers=chen
    )
    assert confirm.status_code == 200
    dropped = wechat.client.post(f"/api/nlu/inbox/{junk}/discard", headers=people["root"])
    assert dropped.status_code == 200 and dropped.json()["status"] == "discarded"
    assert wechat.client.post("/api/nlu/inbox/999999/discard", headers=chen).status_code == 404

    assert wechat.client.get("/api/nlu/inbox", headers=chen).json()["total"] == 0

    exported = wechat.client.post("/api/nlu/export", headers=chen)
    assert exported.status_code == 200, exported.text
    report = exported.json()
    assert report["count"] == 2 and report["conflicts"] == [] and report["heldout"] == []
    assert report["files"] == ["intents/inbox.yml"]
    content = (nlu_copy / "intents" / "inbox.yml").read_text(encoding="utf-8")
    assert "在[抖音](platform)上被骗了 电话[139****5678](phone)" in content
    assert PHONE not in content and "？？？" not in content
    again = wechat.client.post(
        f"/api/nlu/inbox/{fraud}/annotate", json={"intent": "greet"}, headers=chen
    )
    assert again.status_code == 422  # exported decisions are final

    with db.session_scope() as session:
        actions = (
            session.execute(select(AuditEntry.action).where(AuditEntry.action.like("nlu_%")))
            .scalars()
            .all()
        )
    assert sorted(actions) == ["nlu_annotate", "nlu_annotate", "nlu_discard", "nlu_export"]


def test_the_trainer_page_is_served_with_its_script_and_csp(wechat):
    page = wechat.client.get("/console/nlu")
    assert page.status_code == 200
    assert "/console/static/nlu.js" in page.text and "语料标注" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = wechat.client.get("/console/static/nlu.js")
    assert script.status_code == 200 and "innerHTML" not in script.text
