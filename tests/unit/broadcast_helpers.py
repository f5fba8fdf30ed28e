"""Shared helpers of the warnings tests: residents, accounts and a recording messenger."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

from sqlalchemy import select

from casework import accounts, db, residents
from casework.conversations import conversation_for, record_inbound
from casework.models import Message, Resident, User
from gateway.broadcast_worker import BroadcastWorker
from integrations.wechat import DeliveryError

PASSWORD = "correct-horse-battery"


def make_resident(
    openid: str,
    community: str | None = None,
    *,
    subscribed: bool = True,
    wrote_at: datetime | None = None,
) -> int:
    with db.session_scope() as session:
        conversation = conversation_for(session=session, openid=openid)
        if community is not None:
            residents.set_profile(session=session, openid=openid, community=community)
        resident = session.get(Resident, conversation.resident_id)
        assert resident is not None
        resident.subscribed = subscribed
        if wrote_at is not None:
            message, _ = record_inbound(
                session=session,
                openid=openid,
                dedupe_key=f"wrote:{openid}:{wrote_at.timestamp()}",
                msg_type="text",
                content="你好",
            )
            message.created_at = wrote_at
        return int(resident.id)


def make_user(name: str, role: str, community: str | None = None) -> User:
    with db.session_scope() as session:
        accounts.create_user(
            session=session,
            username=name,
            password=PASSWORD,
            role=role,
            **({"community": community} if community else {}),
        )
    return user(name)


def user(name: str) -> User:
    """A detached User (its attributes loaded) for services called in a fresh session."""
    with db.session_scope() as session:
        found = session.execute(select(User).where(User.username == name)).scalar_one()
        session.expunge(found)
        return found


def inbound_count(openid: str) -> int:
    with db.session_scope() as session:
        conversation = conversation_for(session=session, openid=openid)
        return len(
            session.execute(
                select(Message.id).where(Message.conversation_id == conversation.id)
            ).all()
        )


class RecordingMessenger:
    """Stands in for WeChatMessenger: records every send (thread-safe), fails as scripted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.texts: list[tuple[str, str]] = []
        self.templates: list[tuple[str, str, dict]] = []
        self.mass: list[tuple[int, str, list[str]]] = []
        self.tags: dict[str, int] = {}
        self.members: dict[int, set[str]] = {}
        self.fail_template: list[DeliveryError] = []
        self.fail_text: list[DeliveryError] = []
        self.on_send = None  # called with the openid before each send (tests act mid-send)
        self._msgid = 5000

    def _next(self) -> str:
        self._msgid += 1
        return str(self._msgid)

    def send_text(self, openid: str, text: str) -> None:
        if self.on_send:
            self.on_send(openid)
        with self.lock:
            if self.fail_text:
                raise self.fail_text.pop(0)
            self.texts.append((openid, text))

    def send_template(self, openid: str, template_id: str, data: dict) -> str:
        if self.on_send:
            self.on_send(openid)
        with self.lock:
            if self.fail_template:
                raise self.fail_template.pop(0)
            self.templates.append((openid, template_id, data))
            return self._next()

    def ensure_tag(self, name: str) -> int:
        with self.lock:
            return self.tags.setdefault(name, 100 + len(self.tags))

    def sync_tag(self, tag_id: int, openids: list[str]) -> tuple[int, int]:
        with self.lock:
            before = self.members.get(tag_id, set())
            self.members[tag_id] = set(openids)
            return len(set(openids) - before), len(before - set(openids))

    def send_mass_to_tag(self, tag_id: int, text: str) -> str:
        with self.lock:
            self.mass.append((tag_id, text, sorted(self.members.get(tag_id, set()))))
            return self._next()

    def recipients(self) -> list[str]:
        with self.lock:
            return sorted(
                [o for o, _ in self.texts]
                + [o for o, _, _ in self.templates]
                + [o for _, _, members in self.mass for o in members]
            )


async def _no_wait(_: float) -> None:
    return None


def worker(messenger, database_url: str, *, owner: str = "host:1", **kwargs) -> BroadcastWorker:
    options = {"template_id": "TPL-1", "rate_per_second": 1000.0, **kwargs}
    return BroadcastWorker(
        messenger, database_url=database_url, owner=owner, sleep=_no_wait, **options
    )


def drain(loop: BroadcastWorker, passes: int = 50) -> int:
    """Run passes until one does nothing; returns the passes that did something."""

    async def run() -> int:
        busy = 0
        for _ in range(passes):
            if await loop.run_once() == 0:
                break
            busy += 1
        return busy

    return asyncio.run(run())
