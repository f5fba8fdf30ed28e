"""Build rasa-sdk trackers and a domain for action tests (no Rasa server needed)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml
from rasa_sdk import Tracker

from jmt import paths


@lru_cache(maxsize=1)
def domain() -> dict[str, Any]:
    """The real domain (bot/domain/*.yml merged), as the action server receives it."""
    merged: dict[str, Any] = {"slots": {}, "forms": {}, "responses": {}}
    for file in sorted(paths.DOMAIN.glob("*.yml")):
        part = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for key in merged:
            merged[key].update(part.get(key) or {})
    return merged


def tracker(
    text: str = "",
    *,
    intent: str = "inform",
    slots: dict[str, Any] | None = None,
    active_loop: str | None = None,
    metadata: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    sender_id: str = "resident-1",
) -> Tracker:
    all_slots = {name: None for name in domain()["slots"]}
    all_slots.update(slots or {})
    latest = {
        "text": text,
        "intent": {"name": intent, "confidence": 0.95},
        "entities": [],
        "metadata": metadata or {},
    }
    events = [*(history or []), {"event": "user", "text": text, "parse_data": latest}]
    return Tracker(
        sender_id=sender_id,
        slots=all_slots,
        latest_message=latest,
        events=events,
        paused=False,
        followup_action=None,
        active_loop={"name": active_loop} if active_loop else {},
        latest_action_name="action_listen",
    )


def user(text: str, intent: str) -> dict[str, Any]:
    """A past user event for `history`."""
    return {
        "event": "user",
        "text": text,
        "parse_data": {"text": text, "intent": {"name": intent, "confidence": 0.9}},
    }
