"""The Rasa replica pool (integrations.rasa.RasaClient over several base URLs), against
simulated replicas on real local sockets (tests/rasa_replicas.py): a turn goes to another
replica only when it was never delivered, and is never sent twice."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from integrations import rasa
from integrations.rasa import RasaClient, RasaNotReached, RasaUnavailable, user_turns
from tests.rasa_replicas import DyingReplica, Unanswering, refused_url, sender_first_on, served


def webhook_calls(seen: list[dict]) -> list[dict]:
    return [s["body"] for s in seen if s["path"] == "/webhooks/rest/webhook"]


def write_urls(path: Path, urls: list[str], generation: int) -> None:
    """As the launcher does: write aside, then rename over (atomic)."""
    aside = path.with_suffix(".tmp")
    aside.write_text(json.dumps({"urls": urls, "generation": generation}), encoding="utf-8")
    os.replace(aside, path)


def test_a_refused_replica_is_skipped_and_left_alone_until_it_answers(caplog):
    seen: list[dict] = []
    dead = refused_url()
    with served("b", seen) as live:
        sender = sender_first_on(dead, [dead, live.url])

        async def turns() -> tuple[list, list, list[str]]:
            client = RasaClient([dead, live.url], cool_down=60)
            try:
                first = await client.send(sender, "你好")
                live_after_first = client.live_urls
                second = await client.send(sender, "还在吗")
                return first, second, live_after_first
            finally:
                await client.close()

        first, second, live_urls = asyncio.run(turns())
    assert first == [{"recipient_id": sender, "text": "b: 你好"}]
    assert second == [{"recipient_id": sender, "text": "b: 还在吗"}]
    assert live_urls == [live.url]  # marked down: the next turn goes straight to b
    assert [c["message"] for c in webhook_calls(seen)] == ["你好", "还在吗"]
    assert f"Rasa replica {dead} is down (ConnectError)" in caplog.text


def test_a_replica_that_does_not_accept_is_skipped_on_the_connect_timeout(caplog):
    """A host that never completes the connection costs at most the connect time-out
    (CONNECT_TIMEOUT, 1 s: the skip stays within 2 s), not the read time-out."""
    assert rasa.CONNECT_TIMEOUT <= 1.0
    seen: list[dict] = []
    hung = Unanswering()
    try:
        with served("b", seen) as live:
            sender = sender_first_on(hung.url, [hung.url, live.url])

            async def turn() -> tuple[list, list[str]]:
                client = RasaClient([hung.url, live.url], timeout=30, cool_down=60)
                try:
                    return await client.send(sender, "你好"), client.live_urls
                finally:
                    await client.close()

            answer, live_urls = asyncio.run(turn())
    finally:
        hung.close()
    assert answer == [{"recipient_id": sender, "text": "b: 你好"}]
    assert live_urls == [live.url]
    assert len(webhook_calls(seen)) == 1
    assert f"Rasa replica {hung.url} is down (ConnectTimeout)" in caplog.text


@pytest.mark.parametrize("failure", ["dies", "5xx", "read timeout"])
def test_a_request_that_may_have_reached_rasa_is_never_sent_again(failure):
    seen_b: list[dict] = []
    seen_a: list[dict] = []
    dying = DyingReplica() if failure == "dies" else None
    broken = (
        served("a", seen_a, status=500)
        if failure == "5xx"
        else served("a", seen_a, delay=3)
        if failure == "read timeout"
        else None
    )
    try:
        with served("b", seen_b) as live:
            if broken is not None:
                broken.__enter__()
            first_url = dying.url if dying else broken.url  # type: ignore[union-attr]
            sender = sender_first_on(first_url, [first_url, live.url])

            async def turn() -> BaseException | list:
                client = RasaClient([first_url, live.url], timeout=0.5)
                try:
                    return await client.send(sender, "我家被盗了")
                except RasaUnavailable as error:
                    return error
                finally:
                    await client.close()

            outcome = asyncio.run(turn())
    finally:
        if broken is not None:
            broken.__exit__(None, None, None)
        if dying is not None:
            dying.close()
    assert isinstance(outcome, RasaUnavailable) and not isinstance(outcome, RasaNotReached)
    reached = (
        [r for r in dying.received if b"/webhooks/rest/webhook" in r]
        if dying
        else webhook_calls(seen_a)
    )
    assert len(reached) == 1  # the replica that took it saw it once …
    assert webhook_calls(seen_b) == []  # … and the other replica never saw it


def test_all_replicas_down_raises_not_reached():
    async def turn() -> BaseException | None:
        client = RasaClient([refused_url(), refused_url()], cool_down=60)
        try:
            await client.send("resident", "你好")
        except RasaUnavailable as error:
            return error
        finally:
            await client.close()
        return None

    error = asyncio.run(turn())
    assert isinstance(error, RasaNotReached)
    assert "ConnectError" in str(error)


def test_a_residents_turns_stay_on_one_replica_and_residents_spread():
    seen_a: list[dict] = []
    seen_b: list[dict] = []
    with served("a", seen_a) as a, served("b", seen_b) as b:

        async def turns() -> None:
            client = RasaClient([a.url, b.url])
            try:
                for i in range(40):
                    for n in range(2):
                        await client.send(f"resident-{i}", f"消息{n}")
            finally:
                await client.close()

        asyncio.run(turns())
    on_a = {c["sender"] for c in webhook_calls(seen_a)}
    on_b = {c["sender"] for c in webhook_calls(seen_b)}
    assert on_a and on_b  # spread over both
    assert not on_a & on_b  # nobody's turns were split
    assert len(on_a | on_b) == 40


def test_tracker_calls_go_to_any_live_replica():
    seen: list[dict] = []
    dead = refused_url()
    with served("b", seen) as live:

        async def calls() -> tuple:
            client = RasaClient([dead, live.url], cool_down=60)
            try:
                return (
                    await client.latest_parse("resident"),
                    await client.resume("resident", revert_latest=True),
                    await client.healthy(),
                )
            finally:
                await client.close()

        parsed, resumed, healthy = asyncio.run(calls())
    assert parsed.intent == "greet" and resumed and healthy
    assert [s["path"] for s in seen] == [
        "/conversations/resident/tracker",
        "/conversations/resident/tracker/events",
        "/status",
    ]
    # Revert the message a paused tracker logged without a turn, end any intake, un-pause,
    # and listen: the message sent again is then predicted on as a fresh turn.
    assert seen[1]["body"] == [
        {"event": "rewind"},
        {"event": "active_loop", "name": None},
        {"event": "slot", "name": "requested_slot", "value": None},
        {"event": "resume"},
        {"event": "action", "name": "action_listen"},
    ]


def test_the_launchers_list_replaces_the_configured_one_and_switches(tmp_path):
    seen_a: list[dict] = []
    seen_b: list[dict] = []
    urls_file = tmp_path / rasa.URLS_FILE
    with served("a", seen_a) as a, served("b", seen_b) as b:
        write_urls(urls_file, [a.url], 1)

        async def turns() -> list[str]:
            # Configured: b only; the file (a) wins while it exists.
            client = RasaClient([b.url], urls_file=urls_file, file_check_every=0)
            answers = []
            try:
                answers += [m["text"] for m in await client.send("r", "一")]
                write_urls(urls_file, [b.url], 2)  # a promotion switched to b
                await asyncio.sleep(0.01)
                answers += [m["text"] for m in await client.send("r", "二")]  # looks, in background
                await asyncio.sleep(0.2)
                answers += [m["text"] for m in await client.send("r", "三")]
                assert client.generation == 2
                urls_file.write_text("{not json", encoding="utf-8")  # unusable: kept
                await client.refresh()
                answers += [m["text"] for m in await client.send("r", "四")]
                urls_file.unlink()  # gone: back to the configured list
                await client.refresh()
                assert client.generation is None and client.urls == [b.url]
            finally:
                await client.close()
            return answers

        answers = asyncio.run(turns())
    assert answers[0] == "a: 一"
    assert answers[1] in ("a: 二", "b: 二")  # this call went on with the list it had
    assert answers[2:] == ["b: 三", "b: 四"]


def test_a_switch_to_a_new_replica_is_found_when_the_old_one_is_gone(tmp_path):
    """The launcher switched the file and stopped the old replica before this worker's
    next look: the refused turn makes it look at once, and the turn goes to the new one."""
    seen: list[dict] = []
    urls_file = tmp_path / rasa.URLS_FILE
    old = refused_url()
    with served("new", seen) as new:
        write_urls(urls_file, [old], 1)

        async def turn() -> list:
            client = RasaClient([old], urls_file=urls_file, file_check_every=3600)
            try:
                write_urls(urls_file, [new.url], 2)
                return await client.send("r", "你好")
            finally:
                await client.close()

        answer = asyncio.run(turn())
    assert answer == [{"recipient_id": "r", "text": "new: 你好"}]


def test_a_replica_marked_down_comes_back_when_its_probe_answers():
    seen: list[dict] = []
    with served("b", seen) as b:
        port = int(b.url.rsplit(":", 1)[1])

        async def scenario() -> tuple[list[str], list[str]]:
            client = RasaClient([b.url], cool_down=0.05)
            try:
                client._replicas[0].down = True  # as after a refused connection
                client._candidates(None)  # starts the probe
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if client.live_urls:
                        break
                return client.live_urls, [s["path"] for s in seen]
            finally:
                await client.close()

        live_urls, paths = asyncio.run(scenario())
    assert live_urls == [f"http://127.0.0.1:{port}"]
    assert "/status" in paths


def test_user_turns_do_not_count_reverted_messages():
    events = [
        {"event": "user", "text": "你好"},
        {"event": "bot", "text": "您好"},
        {"event": "pause"},
        {"event": "user", "text": "还在吗"},  # logged by a paused tracker, no turn run
        {"event": "rewind"},
        {"event": "resume"},
        {"event": "user", "text": "还在吗"},
    ]
    assert user_turns(events) == 2
    assert user_turns([{"event": "user"}, {"event": "user"}]) == 2
