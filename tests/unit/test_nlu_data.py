"""The training data keeps the promises of nlu_data/README.md; the held-out set stays unseen."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from functools import lru_cache

import pytest
import yaml
from rasa.shared.nlu.training_data.loading import load_data

from actions.forms import FRAUD_RESPONSE_KEYS, LEGAL_RESPONSE_KEYS
from casework.triage import category_of
from jmt import paths

FILLERS = re.compile(r"[啊呀呢吧了的哦嘛\s,，.。!！?？~～、…]|请问|你好|您好|麻烦|一下")


def normalise(text: str) -> str:
    return FILLERS.sub("", text).lower()


@lru_cache(maxsize=2)
def examples(heldout: bool = False) -> list[tuple[str, str]]:
    """(text, full intent) pairs, e.g. ('护照怎么办', 'faq/passport')."""
    files = (
        [paths.HELDOUT]
        if heldout
        else [f for folder in paths.TRAINING_DATA[:3] for f in sorted(folder.rglob("*.yml"))]
    )
    pairs = []
    for file in files:
        data = load_data(str(file))
        for message in data.intent_examples:
            pairs.append((message.get("text"), message.get_full_intent()))
    return pairs


def test_every_triage_category_has_at_least_80_varied_training_examples():
    per_category = Counter(category_of(intent) for _, intent in examples())
    for category in (
        "legal_help",
        "fraud_suspicion",
        "noise_complaint",
        "dog_complaint",
        "emergency",
        "faq",
        "other",
    ):
        assert per_category[category] >= 80, (category, per_category[category])


def test_no_two_examples_differ_only_by_a_filler_word():
    seen: dict[str, str] = {}
    clashes = []
    for text, intent in examples():
        key = normalise(text)
        if key in seen:
            clashes.append((text, intent, seen[key]))
        seen[key] = intent
    assert clashes == []


def test_faq_has_60_topics_each_with_6_paraphrases_and_an_answer():
    per_topic = Counter(intent for _, intent in examples() if intent.startswith("faq/"))
    assert len(per_topic) >= 60
    assert min(per_topic.values()) >= 6
    answers = yaml.safe_load((paths.DOMAIN / "faq.yml").read_text(encoding="utf-8"))["responses"]
    assert {f"utter_{topic}" for topic in per_topic} == set(answers)


def test_heldout_set_is_not_in_the_training_data():
    training = {normalise(text) for text, _ in examples()}
    leaked = [text for text, _ in examples(heldout=True) if normalise(text) in training]
    assert leaked == []


def test_heldout_set_covers_every_category():
    per_category = Counter(category_of(intent) for _, intent in examples(heldout=True))
    assert all(
        per_category[c] >= 30
        for c in (
            "legal_help",
            "fraud_suspicion",
            "noise_complaint",
            "dog_complaint",
            "emergency",
            "faq",
            "other",
        )
    )


@pytest.mark.parametrize("value", sorted(FRAUD_RESPONSE_KEYS))
def test_every_fraud_type_is_taught_by_name(value):
    data = load_data(str(paths.NLU_DATA / "intents" / "fraud.yml"))
    annotated = [
        e
        for m in data.training_examples
        for e in m.get("entities") or []
        if e["entity"] == "fraud_type" and e["value"] == value
    ]
    assert len(annotated) >= 5


@pytest.mark.parametrize("value", sorted(LEGAL_RESPONSE_KEYS))
def test_every_legal_topic_is_taught(value):
    data = load_data(str(paths.NLU_DATA / "intents" / "legal.yml"))
    annotated = [
        e
        for m in data.training_examples
        for e in m.get("entities") or []
        if e["entity"] == "legal_topic" and e["value"] == value
    ]
    assert len(annotated) >= 3


def test_entities_used_in_examples_are_declared_in_the_domain():
    declared = set(
        yaml.safe_load((paths.DOMAIN / "core.yml").read_text(encoding="utf-8"))["entities"]
    )
    used = defaultdict(int)
    for folder in paths.TRAINING_DATA[:3]:
        for file in folder.rglob("*.yml"):
            for message in load_data(str(file)).training_examples:
                for entity in message.get("entities") or []:
                    used[entity["entity"]] += 1
    assert set(used) <= declared
