"""End to end: the real launcher (`make run`'s `python -m jmt.launch`) with two gateway
workers. Rasa is killed with SIGKILL, as the kernel's OOM killer would: the gateway keeps
answering /wechat with its fallback (and opens an officer case) while Rasa is down, the
launcher starts Rasa again and the bot answers again; a killed gateway worker is
replaced while the other one serves; SIGTERM to the launcher stops every process.

Needs the model for the current data (`make train`); no training happens here.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from casework import db
from casework.models import Case
from gateway.service import BOT_UNAVAILABLE
from tests.e2e.launcher import (
    children_of,
    is_rasa_server,
    rasa_urls,
    running_launcher,
    wait_until,
)
from tests.e2e.test_conversation import response, text_xml, wechat_post

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with running_launcher(tmp_path_factory.mktemp("launcher"), GATEWAY_WORKERS="2") as bot:
        yield bot


def processes(bot: dict) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {"rasa": [], "gateway": [], "actions": []}
    for pid, command in children_of(bot["launcher"].pid).items():
        if is_rasa_server(command):
            found["rasa"].append(pid)
        elif "jmt.gateway_worker" in command:
            found["gateway"].append(pid)
        elif "jmt.actions_server" in command:
            found["actions"].append(pid)
    return found


def rasa_status(bot: dict) -> bool:
    [url] = rasa_urls(bot["var"])["urls"]
    with urllib.request.urlopen(f"{url}/status?token={bot['token']}", timeout=5) as reply:
        return reply.status == 200


def bot_answers(bot: dict, text: str, expected: str | None = None, tries: int = 20) -> str:
    """The bot's passive answer to a new resident. A cold Rasa (just started) can take
    longer than WeChat's passive budget (that answer goes through the outbox instead),
    and in its first seconds it may answer nothing while its sentence encoder loads:
    ask again (another resident, a little later) until a passive answer comes."""
    answer: str | None = None
    for _ in range(tries):
        status, answer = wechat_post(bot, text_xml(f"sup-{uuid.uuid4().hex[:8]}", text))
        assert status == 200
        assert answer != BOT_UNAVAILABLE
        if answer is not None and (expected is None or answer == expected):
            return answer
        time.sleep(2)
    raise AssertionError(f"no passive answer in {tries} tries (last: {answer!r})")


def test_a_killed_rasa_is_restarted_and_the_gateway_answers_meanwhile(launched: dict) -> None:
    before = processes(launched)
    assert (len(before["rasa"]), len(before["gateway"]), len(before["actions"])) == (1, 2, 1)
    bot_answers(launched, "你好")

    os.kill(before["rasa"][0], signal.SIGKILL)
    resident = f"sup-{uuid.uuid4().hex[:8]}"
    status, text = wechat_post(launched, text_xml(resident, "身份证丢了怎么补办"))
    assert (status, text) == (200, BOT_UNAVAILABLE)  # the fallback, not connection refused
    with db.session_scope(launched["database"]) as session:
        [case] = session.execute(select(Case).where(Case.sender_id == resident)).scalars()
    assert case.status == "open"  # an officer will answer this resident
    during = processes(launched)
    assert during["gateway"] == before["gateway"] and during["actions"] == before["actions"]

    wait_until(lambda: rasa_status(launched), "Rasa restarted by the launcher")
    after = processes(launched)
    assert len(after["rasa"]) == 1 and after["rasa"] != before["rasa"]
    assert after["gateway"] == before["gateway"] and after["actions"] == before["actions"]
    # A new resident (the first one's conversation belongs to an officer now).
    expected = response("utter_faq/id_card_reissue")
    assert bot_answers(launched, "身份证丢了怎么补办", expected) == expected
    log = launched["log"].read_text()
    assert "rasa-0 (:" in log and "exited with signal SIGKILL" in log


def test_a_killed_gateway_worker_is_replaced_while_the_other_serves(launched: dict) -> None:
    before = processes(launched)
    os.kill(before["gateway"][0], signal.SIGKILL)
    for _ in range(5):  # the survivor (and the shared socket) take every request
        assert bot_answers(launched, "你好")
    after = wait_until(
        lambda: (found := processes(launched)) and len(found["gateway"]) == 2 and found,
        "a second gateway worker again",
    )
    assert before["gateway"][1] in after["gateway"] and before["gateway"][0] not in after["gateway"]
    assert after["rasa"] == before["rasa"] and after["actions"] == before["actions"]


def test_sigterm_stops_every_process(launched: dict) -> None:
    """Last in this module: it stops the launcher the others used."""
    pids = [pid for group in processes(launched).values() for pid in group]
    assert len(pids) == 4  # Rasa, two gateway workers, the action server
    launched["launcher"].send_signal(signal.SIGTERM)
    assert launched["launcher"].wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "a child outlived the launcher"
        time.sleep(0.2)
    assert not (launched["var"] / "launcher.json").exists()
