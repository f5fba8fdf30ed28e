"""bot/triage.yml maps every intent of the domain, and nlu_fallback, to one of seven."""

import yaml

from casework.cases import CATEGORIES
from casework.triage import category_of, load_categories
from jmt import paths


def domain_intents() -> set[str]:
    intents: set[str] = set()
    for file in paths.DOMAIN.glob("*.yml"):
        intents |= set(
            (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("intents") or []
        )
    return intents


def test_every_domain_intent_and_nlu_fallback_has_exactly_one_category():
    mapping = load_categories()
    assert set(mapping) == domain_intents() | {"nlu_fallback"}
    assert set(mapping.values()) == set(CATEGORIES)


def test_faq_sub_intents_are_faq():
    assert category_of("faq/passport") == "faq"
    assert category_of("report_fraud") == "fraud_suspicion"
    assert category_of(None) == "other"
