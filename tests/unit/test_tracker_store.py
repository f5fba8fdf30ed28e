"""The gateway reads a message's parse from Rasa's SQL tracker store (written here by
Rasa's own SQLTrackerStore) instead of asking a Rasa replica for the tracker."""

from __future__ import annotations

import asyncio

from casework.tracker_store import latest_user_parse
from integrations.rasa import parse_result


def _save(path: str, sender: str, messages: list[tuple[str, str, float]]) -> None:
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered

    store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=path)
    tracker = asyncio.run(store.get_or_create_tracker(sender))
    for text, intent, confidence in messages:
        tracker.update(
            UserUttered(
                text,
                {"name": intent, "confidence": confidence},
                [{"entity": "location", "value": "镇海", "start": 0, "end": 2}],
                {
                    "intent_ranking": [
                        {"name": intent, "confidence": confidence},
                        {"name": "greet", "confidence": 1 - confidence},
                    ]
                },
            )
        )
        tracker.update(ActionExecuted("utter_answer"))
        tracker.update(BotUttered("好的"))
    asyncio.run(store.save(tracker))


def test_the_latest_message_of_the_sender_is_read(tmp_path):
    path = str(tmp_path / "rasa-tracker.sqlite3")
    url = f"sqlite:///{path}"
    assert latest_user_parse(tracker_url=url, sender_id="o-1") is None  # nothing stored yet
    _save(path, "o-1", [("你好", "greet", 0.9), ("镇海派出所在哪", "faq/address", 0.8)])
    _save(path, "o-2", [("谢谢", "thanks", 0.99)])
    parsed = parse_result(latest_user_parse(tracker_url=url, sender_id="o-1") or {})
    assert (parsed.intent, parsed.confidence) == ("faq/address", 0.8)
    assert [r["name"] for r in parsed.ranking] == ["faq/address", "greet"]
    assert parsed.entities == [{"entity": "location", "value": "镇海", "start": 0, "end": 2}]
    assert latest_user_parse(tracker_url=url, sender_id="o-3") is None


def test_an_unreadable_store_gives_none(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'rasa.sqlite3'}"
    assert latest_user_parse(tracker_url=url, sender_id="o-1") is None


def test_the_gateway_records_the_stored_parse_and_asks_rasa_only_without_one(sqlite_url, tmp_path):
    from casework import db
    from casework.models import Message
    from gateway.messages import describe
    from gateway.service import InboundService
    from integrations.rasa import ParseResult

    class Replica:
        asked: list[str] = []

        async def latest_parse(self, sender: str) -> ParseResult:
            self.asked.append(sender)
            return ParseResult("asked_rasa", 0.5)

    path = str(tmp_path / "rasa-tracker.sqlite3")
    _save(path, "o-1", [("镇海派出所在哪", "faq/address", 0.8)])
    rasa = Replica()
    service = InboundService(
        rasa=rasa,  # type: ignore[arg-type]
        database_url=sqlite_url,
        tracker_url=f"sqlite:///{path}",
    )
    ids = []
    for n, openid in enumerate(["o-1", "o-2"]):
        fields = {
            "ToUserName": "gh",
            "FromUserName": openid,
            "CreateTime": "1700000000",
            "MsgType": "text",
            "Content": "镇海派出所在哪",
            "MsgId": str(10**18 + n),
        }
        stored = service._store(describe(fields), None)
        asyncio.run(service._fetch_parse(openid, stored.message_id))
        ids.append(stored.message_id)
    with db.session_scope() as session:
        recorded = [
            (session.get(Message, i).intent, session.get(Message, i).confidence) for i in ids
        ]
    assert recorded == [("faq/address", 0.8), ("asked_rasa", 0.5)]
    assert rasa.asked == ["o-2"]  # only where the store had nothing
