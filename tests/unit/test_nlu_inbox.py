"""The trainers' NLU inbox: selection rules, filters, masking, annotation, export — on SQLite
and PostgreSQL. Exports go to a copy of nlu_data/ under tmp_path, never to the real one."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from rasa.shared.nlu.training_data.loading import load_data
from sqlalchemy import select

from casework import accounts, db, handling, nlu_export, nlu_inbox
from casework.cases import open_case
from casework.conversations import record_inbound
from casework.models import AuditEntry, Message, User
from jmt import paths

_keys = itertools.count(1)
PHONE = "13812345678"
ID_NUMBER = "330211199001011234"
CARD = "6222 0212 3456 7890 123"


def user(session, name: str, role: str = "trainer") -> User:
    return accounts.create_user(
        session=session, username=name, password="correct-horse-battery", role=role
    )


def message(
    session,
    text: str,
    intent: str | None,
    confidence: float | None,
    *,
    openid: str = "o-resident",
    ranking: list[tuple[str, float]] | None = None,
    entities: list[dict] | None = None,
    created_at: datetime | None = None,
    direction: str = "in",
) -> int:
    stored, _ = record_inbound(
        session=session,
        openid=openid,
        dedupe_key=f"k{next(_keys)}",
        msg_type="text",
        content=text,
    )
    stored.direction = direction
    stored.intent, stored.confidence = intent, confidence
    if ranking is None and intent is not None:
        ranking = [(intent, confidence or 0.0), ("out_of_scope", 0.01)]
    stored.media = {
        "parse": {
            "ranking": [{"name": n, "confidence": c} for n, c in ranking or []],
            "entities": entities or [],
        }
    }
    if created_at is not None:
        stored.created_at = created_at
    session.flush()
    return stored.id


def ids(items) -> list[int]:
    return [item.id for item in items]


def pending(session, trainer, **filters):
    items, _ = nlu_inbox.inbox(
        session=session, user=trainer, filters=nlu_inbox.Filters(**filters), limit=500
    )
    return items


# ------------------------------------------------------------------ selection


def test_selection_rules_and_reasons(database_url):
    with db.session_scope() as session:
        trainer = user(session, "chen")
        confident = message(session, "身份证丢了怎么补办", "faq/id_card_reissue", 0.97)
        low = message(session, "那个东西怎么弄", "faq/id_card_reissue", 0.41)
        fallback = message(session, "嗯嗯嗯", "nlu_fallback", 0.3)
        ambiguous = message(
            session,
            "隔壁狗叫还放音乐",
            "complain_noise",
            0.48,
            ranking=[("complain_noise", 0.48), ("complain_dog", 0.44)],
        )
        clear_margin = message(
            session,
            "楼上装修太吵",
            "complain_noise",
            0.9,
            ranking=[("complain_noise", 0.9), ("complain_dog", 0.05)],
        )
        unparsed = message(session, "[图片]", None, None)
        outbound = message(session, "您好", "greet", 0.2, direction="out")
        items = {item.id: item for item in pending(session, trainer)}

    assert "low_confidence" in items[low].reasons
    assert {"low_confidence", "fallback"} <= set(items[fallback].reasons)
    assert "ambiguous" in items[ambiguous].reasons
    assert clear_margin not in items or "ambiguous" not in items[clear_margin].reasons
    for never in (unparsed, outbound):
        assert never not in items
    for confident_id in (confident, clear_margin):
        if confident_id in items:  # only through the random sample
            assert items[confident_id].reasons == ["sample"]
    top2 = items[ambiguous].public()["top2"]
    assert [r["name"] for r in top2] == ["complain_noise", "complain_dog"]


def test_random_sample_is_deterministic_and_about_five_percent():
    picks = [nlu_inbox.sampled(i) for i in range(1, 20001)]
    assert picks == [nlu_inbox.sampled(i) for i in range(1, 20001)]
    assert 0.04 < sum(picks) / len(picks) < 0.06


def test_sampled_confident_messages_are_in_the_inbox_with_reason_sample(database_url):
    with db.session_scope() as session:
        trainer = user(session, "chen")
        made = [message(session, f"护照怎么办第{n}次", "faq/passport", 0.99) for n in range(60)]
        items = pending(session, trainer, reason="sample")
    expected = sorted(i for i in made if nlu_inbox.sampled(i))
    assert sorted(ids(items)) == expected
    assert all(item.reasons == ["sample"] for item in items)


def test_a_case_whose_category_an_officer_corrected_selects_the_message_that_started_it(
    database_url,
):
    with db.session_scope() as session:
        trainer = user(session, "chen")
        commander = user(session, "wang", "commander")
        first = message(session, "我家狗被邻居打了", "complain_dog", 0.95, openid="o-a")
        later = message(session, "在骆驼街道", "inform", 0.95, openid="o-a")
        case = open_case(
            session=session,
            sender_id="o-a",
            category="dog_complaint",
            priority="normal",
            reason="form_complete",
            summary="犬只",
            details={"first_message": "我家狗被邻居打了"},
        )
        # a second resident: no first_message → their last message before the case
        before = message(
            session,
            "他打我",
            "legal_help",
            0.9,
            openid="o-b",
            created_at=datetime.now(timezone.utc) - timedelta(minutes=5),
        )
        case_b = open_case(
            session=session,
            sender_id="o-b",
            category="legal_help",
            priority="normal",
            reason="form_complete",
            summary="法律",
        )
        after = message(
            session,
            "谢谢",
            "thanks",
            0.99,
            openid="o-b",
            created_at=datetime.now(timezone.utc) + timedelta(minutes=5),
        )
        uncorrected = message(session, "有人骗我钱", "report_fraud", 0.95, openid="o-c")
        open_case(
            session=session,
            sender_id="o-c",
            category="fraud_suspicion",
            priority="urgent",
            reason="form_complete",
            summary="诈骗",
            details={"first_message": "有人骗我钱"},
        )
        handling.correct_category(
            session=session, user=commander, case_id=case.id, category="legal_help"
        )
        handling.correct_category(
            session=session, user=commander, case_id=case_b.id, category="emergency"
        )
        corrected = ids(pending(session, trainer, reason="corrected"))
    assert sorted(corrected) == sorted([first, before])
    assert later not in corrected and after not in corrected and uncorrected not in corrected


def test_filters_intent_confidence_dates_and_community(database_url):
    now = datetime.now(timezone.utc)
    with db.session_scope() as session:
        trainer = user(session, "chen")
        old = message(
            session, "狗叫", "complain_dog", 0.5, openid="o-1", created_at=now - timedelta(days=10)
        )
        new = message(session, "狗又叫", "complain_dog", 0.3, openid="o-2")
        other = message(session, "吵死了", "complain_noise", 0.55, openid="o-2")
        open_case(
            session=session,
            sender_id="o-2",
            category="dog_complaint",
            priority="normal",
            reason="form_complete",
            summary="犬只",
        ).community = "万景社区"
        session.flush()
        by_intent = ids(pending(session, trainer, intent="complain_dog"))
        by_confidence = ids(pending(session, trainer, min_confidence=0.4, max_confidence=0.52))
        by_date = ids(pending(session, trainer, since=now.date() - timedelta(days=1)))
        by_old_date = ids(pending(session, trainer, until=(now - timedelta(days=9)).date()))
        by_community = ids(pending(session, trainer, community="万景社区"))
        items = {i.id: i for i in pending(session, trainer)}
    assert sorted(by_intent) == sorted([old, new])
    assert by_confidence == [old]
    assert sorted(by_date) == sorted([new, other])
    assert by_old_date == [old]
    assert sorted(by_community) == sorted([new, other])
    assert items[new].community == "万景社区" and items[old].community is None


def test_unknown_reason_filter_is_refused(database_url):
    with db.session_scope() as session:
        trainer = user(session, "chen")
        with pytest.raises(nlu_inbox.NluError):
            pending(session, trainer, reason="whatever")


def test_only_trainers_and_admins(database_url):
    with db.session_scope() as session:
        officer = user(session, "zhang", "officer")
        admin = user(session, "root", "admin")
        mid = message(session, "嗯", "nlu_fallback", 0.2)
        with pytest.raises(nlu_inbox.NotAllowed):
            pending(session, officer)
        with pytest.raises(nlu_inbox.NotAllowed):
            nlu_inbox.annotate(session=session, user=officer, message_id=mid, intent="greet")
        with pytest.raises(nlu_inbox.NotAllowed):
            nlu_inbox.discard(session=session, user=officer, message_id=mid)
        assert ids(pending(session, admin)) == [mid]


# ------------------------------------------------------------------ masking


def test_phone_id_and_bank_numbers_are_masked_in_texts_and_entity_values(database_url):
    text = f"我被骗了 对方电话{PHONE} 身份证{ID_NUMBER} 卡号{CARD} 转了两万"
    start = text.index(PHONE)
    card_start = text.index(CARD)
    with db.session_scope() as session:
        trainer = user(session, "chen")
        mid = message(
            session,
            text,
            "report_fraud",
            0.5,
            entities=[
                {"entity": "phone", "value": PHONE, "start": start, "end": start + 11},
                {
                    "entity": "bank_account",
                    "value": CARD,
                    "start": card_start,
                    "end": card_start + len(CARD),
                },
                {"entity": "amount", "value": "两万", "start": len(text) - 2, "end": len(text)},
            ],
        )
        (item,) = pending(session, trainer)
        public = item.public()
        cli_lines = [public["text"], *(e["value"] for e in public["entities"])]
    assert item.id == mid
    dump = repr(public)
    for secret in (PHONE, ID_NUMBER, CARD, "021234567890", "3456 7890"):
        assert secret not in dump
    assert "138****5678" in public["text"]
    assert "330211********1234" in public["text"]
    values = {e["entity"]: e for e in public["entities"]}
    assert values["phone"]["value"] == "138****5678"
    assert (
        values["bank_account"]["value"].startswith("6222")
        and "*" in values["bank_account"]["value"]
    )
    for entity in public["entities"]:  # offsets point into the masked text
        assert public["text"][entity["start"] : entity["end"]] == entity["value"]
    assert all(PHONE not in line for line in cli_lines)


# ------------------------------------------------------------------ annotate / discard


def test_annotate_validates_intent_and_entities_and_is_audited(database_url):
    text = f"我在抖音上被骗了 他电话{PHONE}"
    with db.session_scope() as session:
        trainer = user(session, "chen")
        mid = message(session, text, "out_of_scope", 0.4)
        masked = nlu_inbox.inbox(session=session, user=trainer)[0][0].text
        for bad_intent in ("no_such_intent", "faq", "faq/no_such_topic", "nlu_fallback", ""):
            with pytest.raises(nlu_inbox.NluError):
                nlu_inbox.annotate(session=session, user=trainer, message_id=mid, intent=bad_intent)
        bad_entities = [
            [{"entity": "weapon", "start": 0, "end": 1}],
            [{"entity": "platform", "start": 5, "end": 3}],
            [{"entity": "platform", "start": 0, "end": len(masked) + 1}],
            [
                {"entity": "platform", "start": 2, "end": 4},
                {"entity": "time", "start": 3, "end": 6},
            ],
        ]
        for entities in bad_entities:
            with pytest.raises(nlu_inbox.NluError):
                nlu_inbox.annotate(
                    session=session,
                    user=trainer,
                    message_id=mid,
                    intent="report_fraud",
                    entities=entities,
                )
        with pytest.raises(LookupError):
            nlu_inbox.annotate(session=session, user=trainer, message_id=999999, intent="greet")
        phone_at = masked.index("138****5678")
        row = nlu_inbox.annotate(
            session=session,
            user=trainer,
            message_id=mid,
            intent="report_fraud",
            entities=[
                {"entity": "phone", "start": phone_at, "end": phone_at + 11},
                {"entity": "platform", "start": 2, "end": 4},
            ],
        )
        assert row.text == masked and PHONE not in row.text
        assert [e["value"] for e in row.entities] == ["抖音", "138****5678"]
        faq = message(session, "护照到期了咋办", "faq/passport", 0.5)
        nlu_inbox.annotate(session=session, user=trainer, message_id=faq, intent="faq/passport")
        assert pending(session, trainer) == []  # decided messages leave the inbox
        audit = (
            session.execute(
                select(AuditEntry)
                .where(AuditEntry.action == "nlu_annotate")
                .order_by(AuditEntry.id)
            )
            .scalars()
            .all()
        )
    assert [(a.actor_id, a.target_id, a.detail["intent"]) for a in audit] == [
        (trainer.id, mid, "report_fraud"),
        (trainer.id, faq, "faq/passport"),
    ]
    assert audit[0].detail["predicted"] == "out_of_scope"


def test_discard_leaves_the_inbox_is_audited_and_never_exported(database_url, tmp_path):
    nlu_dir = copy_nlu_data(tmp_path)
    with db.session_scope() as session:
        trainer = user(session, "chen")
        mid = message(session, "啊啊啊啊啊", "nlu_fallback", 0.2)
        row = nlu_inbox.discard(session=session, user=trainer, message_id=mid)
        assert row.status == "discarded" and row.intent is None
        assert pending(session, trainer) == []
        result = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "nlu_discard")
        ).scalar_one()
    assert result.written == [] and entry.target_id == mid and entry.actor_id == trainer.id


def test_intent_list_has_every_triage_intent_and_every_faq_topic():
    names = {i["name"] for i in nlu_inbox.intents()}
    assert {"report_fraud", "emergency", "greet", "faq/passport"} <= names
    assert "faq" not in names and "nlu_fallback" not in names
    assert len([n for n in names if n.startswith("faq/")]) >= 60


# ------------------------------------------------------------------ export


def copy_nlu_data(tmp_path: Path) -> Path:
    target = tmp_path / "nlu_data"
    shutil.copytree(paths.NLU_DATA, target)
    for stale in ("intents/inbox.yml", "faq/inbox.yml"):
        (target / stale).unlink(missing_ok=True)
    return target


def annotated(session, trainer, text: str, intent: str, entities=None, predicted="out_of_scope"):
    mid = message(session, text, predicted, 0.4)
    nlu_inbox.annotate(
        session=session, user=trainer, message_id=mid, intent=intent, entities=entities or []
    )
    return mid


def test_export_round_trip_merge_order_duplicates_and_provenance(database_url, tmp_path):
    nlu_dir = copy_nlu_data(tmp_path)
    text = f"在闲鱼上买东西被骗了 对方电话{PHONE}"
    with db.session_scope() as session:
        trainer = user(session, "chen")
        masked_phone_at = text.index(PHONE)
        first = annotated(
            session,
            trainer,
            text,
            "report_fraud",
            [
                {"entity": "platform", "start": 1, "end": 3},
                {"entity": "phone", "start": masked_phone_at, "end": masked_phone_at + 11},
            ],
        )
        annotated(session, trainer, "楼下烧烤店半夜还在放歌", "complain_noise")
        annotated(session, trainer, "楼下烧烤店半夜还在放歌啊", "complain_noise")  # filler only
        annotated(session, trainer, "港澳通行证签注在网上能续吗", "faq/hk_macau_endorsement")
        result = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
        assert result.conflicts == [] and result.heldout == []
        assert len(result.written) == 3 and len(result.duplicates) == 1
        assert sorted(result.files) == ["faq/inbox.yml", "intents/inbox.yml"]
        exported = (
            session.execute(
                select(nlu_inbox.NluAnnotation).where(nlu_inbox.NluAnnotation.exported_at.is_(None))
            )
            .scalars()
            .all()
        )
        assert exported == []
        # a second batch merges into the same files, in order
        annotated(session, trainer, "阿拉小区门口有人打架了", "emergency")
        again = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
        assert len(again.written) == 1
        nothing = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
        assert nothing.written == [] and nothing.files == []
        audits = (
            session.execute(select(AuditEntry).where(AuditEntry.action == "nlu_export"))
            .scalars()
            .all()
        )
    assert len(audits) == 3

    intents_file = nlu_dir / "intents" / "inbox.yml"
    content = intents_file.read_text(encoding="utf-8")
    assert PHONE not in content
    assert "在[闲鱼](platform)上买东西被骗了 对方电话[138****5678](phone)" in content
    assert content.count("楼下烧烤店半夜还在放歌") == 1
    blocks = [b["intent"] for b in yaml.safe_load(content)["nlu"]]
    assert blocks == sorted(blocks) == ["complain_noise", "emergency", "report_fraud"]
    data = load_data(str(intents_file))
    by_text = {m.get("text"): m for m in data.intent_examples}
    fraud = by_text["在闲鱼上买东西被骗了 对方电话138****5678"]
    assert fraud.get("intent") == "report_fraud"
    assert [(e["entity"], e["value"]) for e in fraud.get("entities")] == [
        ("platform", "闲鱼"),
        ("phone", "138****5678"),
    ]
    faq = load_data(str(nlu_dir / "faq" / "inbox.yml"))
    assert [m.get_full_intent() for m in faq.intent_examples] == ["faq/hk_macau_endorsement"]
    sources = (nlu_dir / "SOURCES.md").read_text(encoding="utf-8")
    assert sources.count("chen (chen) · ") == 2 and f"#{first}" in sources
    assert "## NLU inbox exports" in sources

    # stable: the same content rewritten gives the same bytes
    before = intents_file.read_bytes()
    examples = {}
    for intent, example in nlu_export.read_examples(intents_file):
        examples.setdefault(intent, set()).add(example)
    nlu_export._write(intents_file, examples, "Intent examples from the NLU inbox")
    assert intents_file.read_bytes() == before


def test_conflicts_are_reported_left_out_and_stay_in_the_inbox(database_url, tmp_path):
    nlu_dir = copy_nlu_data(tmp_path)
    existing = "身份证丢了怎么补办"  # nlu_data teaches it under faq/...
    known = {
        nlu_export.normalise(nlu_export.plain(ex)): intent
        for file in (nlu_dir / "faq").glob("*.yml")
        for intent, ex in nlu_export.read_examples(file)
    }
    assert known.get(nlu_export.normalise(existing), "").startswith("faq/")
    with db.session_scope() as session:
        trainer = user(session, "chen")
        a = annotated(session, trainer, "邻居家狗一直叫还咬人", "complain_dog")
        b = annotated(session, trainer, "邻居家狗一直叫，还咬人！", "emergency")  # near-identical
        c = annotated(session, trainer, existing + "啊", "report_fraud")  # vs training data
        ok = annotated(
            session, trainer, "我想问问驾照到期了换证要去哪", "faq/driving_license_renew"
        )
        result = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
        left = (
            session.execute(
                select(nlu_inbox.NluAnnotation.message_id)
                .where(nlu_inbox.NluAnnotation.exported_at.is_(None))
                .order_by(nlu_inbox.NluAnnotation.message_id)
            )
            .scalars()
            .all()
        )
        # re-annotating resolves the conflict on the next export
        nlu_inbox.annotate(session=session, user=trainer, message_id=b, intent="complain_dog")
        resolved = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
    conflicted = {item["message_id"]: item for item in result.conflicts}
    assert set(conflicted) == {a, b, c}
    assert conflicted[a]["with"][0]["intent"] == "emergency"
    assert conflicted[c]["with"][0]["source"].startswith("faq/")
    assert [w["message_id"] for w in result.written] == [ok]
    assert left == [a, b, c]
    text = "\n".join(result.lines())
    assert "冲突" in text and "邻居家狗一直叫还咬人" in text
    assert [w["message_id"] for w in resolved.written] == [a] and resolved.duplicates[0][
        "message_id"
    ] == b
    content = (nlu_dir / "intents" / "inbox.yml").read_text(encoding="utf-8")
    assert "邻居家狗一直叫还咬人" in content and "邻居家狗一直叫，还咬人！" not in content


def test_held_out_texts_are_never_exported(database_url, tmp_path):
    nlu_dir = copy_nlu_data(tmp_path)
    heldout_intent, heldout_example = nlu_export.read_examples(paths.HELDOUT)[0]
    heldout_text = nlu_export.plain(heldout_example)
    with db.session_scope() as session:
        trainer = user(session, "chen")
        mid = annotated(session, trainer, heldout_text, heldout_intent)
        result = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
    assert [h["message_id"] for h in result.heldout] == [mid]
    assert result.written == []
    assert not (nlu_dir / "intents" / "inbox.yml").exists()
    assert "留出测试集" in "\n".join(result.lines())


def test_exported_data_passes_rasa_data_validate(sqlite_url, tmp_path):
    nlu_dir = copy_nlu_data(tmp_path)
    with db.session_scope() as session:
        trainer = user(session, "chen")
        annotated(
            session,
            trainer,
            "在拼多多上被人骗了八百块",
            "report_fraud",
            [
                {"entity": "platform", "start": 1, "end": 4},
                {"entity": "amount", "start": 9, "end": 12},
            ],
        )
        annotated(session, trainer, "小区里大狗不拴绳追着小孩跑", "complain_dog")
        annotated(session, trainer, "出国护照快过期了网上怎么预约换", "faq/passport")
        result = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
    assert len(result.written) == 3, result.lines()
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from jmt import paths, validate
        nlu = Path({str(nlu_dir)!r})
        paths.TRAINING_DATA = [nlu / "intents", nlu / "faq", nlu / "entities", paths.BOT / "data"]
        validate.main()
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=paths.REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(paths.REPO_ROOT)},
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "no problems" in run.stdout


def test_since_and_until_are_whole_utc_days(database_url):
    with db.session_scope() as session:
        trainer = user(session, "chen")
        late = message(
            session,
            "狗",
            "complain_dog",
            0.2,
            created_at=datetime(2026, 11, 20, 23, 59, tzinfo=timezone.utc),
        )
        assert ids(
            pending(session, trainer, since=date(2026, 11, 20), until=date(2026, 11, 20))
        ) == [late]
        assert ids(pending(session, trainer, since=date(2026, 11, 21))) == []
        assert len(session.execute(select(Message)).scalars().all()) == 1


# ------------------------------------------------------------------ command line


def test_jmt_nlu_inbox_and_export_commands(sqlite_url, tmp_path, monkeypatch, capsys):
    from jmt import cli

    nlu_dir = copy_nlu_data(tmp_path)
    monkeypatch.setattr(nlu_export, "NLU_DATA", nlu_dir)
    with db.session_scope() as session:
        trainer = user(session, "chen")
        low = message(session, f"他让我打这个电话{PHONE}", "report_fraud", 0.45)
        message(session, "狗叫了一晚上", "complain_dog", 0.5)
        b = annotated(session, trainer, "隔壁的狗一直叫还冲人", "complain_dog")
        annotated(session, trainer, "隔壁的狗一直叫还冲人！", "emergency")
    cli.main(["nlu", "inbox", "--limit", "1"])
    out = capsys.readouterr().out
    assert PHONE not in out and "1 of 2 waiting" in out
    cli.main(["nlu", "inbox", "--reason", "low_confidence"])
    out = capsys.readouterr().out
    assert f"#{low} [low_confidence" in out and "138****5678" in out
    with pytest.raises(SystemExit) as stopped:  # conflicts → exit status 1
        cli.main(["nlu", "export"])
    out = capsys.readouterr().out
    assert stopped.value.code == 1
    assert "导出 0 条" in out and "冲突" in out and f"#{b}" in out


def test_markup_neutralises_brackets_and_line_breaks_and_keeps_offsets():
    text = "😭[图片]\n在抖音\t上被骗"
    at = text.index("抖音")
    example = nlu_export.markup(text, [{"entity": "platform", "start": at, "end": at + 2}])
    assert example == "😭［图片］ 在[抖音](platform) 上被骗"
    assert nlu_export.plain(example) == "😭［图片］ 在抖音 上被骗"


TINY_CONFIG = """
recipe: default.v1
language: zh
assistant_id: export-check
pipeline:
  - name: JiebaTokenizer
  - name: CountVectorsFeaturizer
    analyzer: char
    min_ngram: 1
    max_ngram: 2
  - name: DIETClassifier
    epochs: 1
    number_of_transformer_layers: 0
  - name: ResponseSelector
    retrieval_intent: faq
    epochs: 1
policies:
  - name: RulePolicy
"""


@pytest.mark.e2e
def test_exported_data_trains(sqlite_url, tmp_path):
    """Round trip to the end: the exported YAML, with all other training data, trains an
    NLU model (a tiny pipeline and one epoch: this proves the data trains, not quality)."""
    nlu_dir = copy_nlu_data(tmp_path)
    with db.session_scope() as session:
        trainer = user(session, "chen")
        annotated(
            session,
            trainer,
            "在拼多多上被人骗了八百块",
            "report_fraud",
            [{"entity": "platform", "start": 1, "end": 4}],
        )
        annotated(session, trainer, "出国护照快过期了网上怎么预约换", "faq/passport")
        result = nlu_export.export(session=session, user=trainer, nlu_dir=nlu_dir)
    assert len(result.written) == 2, result.lines()
    config = tmp_path / "config.yml"
    config.write_text(TINY_CONFIG, encoding="utf-8")
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("rasa")),
            "train",
            "--config",
            str(config),
            "--domain",
            str(paths.DOMAIN),  # the FAQ answers (retrieval-intent responses) live there
            "--data",
            str(nlu_dir / "intents"),
            str(nlu_dir / "faq"),
            str(nlu_dir / "entities"),
            "--out",
            str(tmp_path / "models"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert list((tmp_path / "models").glob("*.tar.gz"))
