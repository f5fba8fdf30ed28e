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
from jmt import evalsets, paths

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


# --- evaluation sets are never trained on ---

# A copied evaluation text of this many characters (normalised) is a leak even inside a
# longer training example; shorter ones ("谢谢") only when they are a whole example.
LEAK_INSIDE_MIN_CHARS = 12


def _units(value: object) -> list[str]:
    """Every string of a YAML value; '- a\n- b' example blocks give one string per line."""
    if isinstance(value, dict):
        return [unit for item in value.values() for unit in _units(item)]
    if isinstance(value, list):
        return [unit for item in value for unit in _units(item)]
    if isinstance(value, str):
        lines = [line.strip() for line in value.splitlines()]
        if any(line.startswith("- ") for line in lines):
            return [line.removeprefix("- ") for line in lines if line]
        return [value]
    return []


@lru_cache(maxsize=1)
def nlu_data_texts() -> frozenset[str]:
    """Every text in any file of nlu_data/ (YAML strings, other files line by line),
    normalised the way the evaluation sets are."""
    texts = set()
    for file in sorted(p for p in paths.NLU_DATA.rglob("*") if p.is_file()):
        content = file.read_text(encoding="utf-8")
        if file.suffix in (".yml", ".yaml"):
            units = _units(yaml.safe_load(content))
        else:
            units = content.splitlines()
        texts.update(evalsets.normalise(evalsets.plain_text(unit)) for unit in units)
    texts.discard("")
    return frozenset(texts)


EVALUATION_SETS = sorted(
    {paths.HELDOUT, paths.BLIND, *paths.EVALUATION_SETS.glob("*.yml")}, key=lambda p: p.name
)


@pytest.mark.parametrize("evaluation_set", EVALUATION_SETS, ids=lambda p: p.name)
def test_no_evaluation_text_is_in_nlu_data(evaluation_set):
    if not evaluation_set.exists():
        pytest.skip(f"{evaluation_set.name} is not written yet")
    texts = [example.text for example in evalsets.load_examples(evaluation_set)]
    assert texts, f"{evaluation_set.name} has no examples"
    assert leaked(texts) == [], f"{evaluation_set.name} texts found in nlu_data/"


def leaked(texts: list[str]) -> list[str]:
    training = nlu_data_texts()
    found = []
    for text in texts:
        key = evalsets.normalise(text)
        if key in training or (
            len(key) >= LEAK_INSIDE_MIN_CHARS and any(key in unit for unit in training)
        ):
            found.append(text)
    return found


def test_a_copied_training_text_is_caught_however_it_is_written():
    text = examples()[0][0]
    longest = max((t for t, _ in examples()), key=lambda t: len(evalsets.normalise(t)))
    inside = evalsets.normalise(longest)[1 : 1 + LEAK_INSIDE_MIN_CHARS]
    disguised = " ".join(text.upper()) + "！！"
    assert leaked([disguised, inside, "这句话不会出现在训练数据里吧我猜"]) == [disguised, inside]


def test_the_leak_check_sees_through_case_width_spaces_punctuation_and_markup(tmp_path):
    assert evalsets.normalise("ＡＢ c，d！ 身份证?") == "abcd身份证"
    assert evalsets.plain_text("被骗了[两万](amount)元") == "被骗了两万元"
    assert _units({"nlu": [{"intent": "x", "examples": "- 一\n- 二\n"}]}) == ["x", "一", "二"]
    blind = tmp_path / "blind.yml"
    blind.write_text(
        "nlu:\n- intent: out_of_scope\n  examples:\n  - text: |\n      去日本 旅游！\n"
        "    metadata:\n      register: chitchat\n",
        encoding="utf-8",
    )
    assert evalsets.load_examples(blind) == [
        evalsets.Example("去日本 旅游！", "out_of_scope", "chitchat")
    ]


def test_every_evaluation_text_is_read():
    """Our reader of the evaluation sets finds what Rasa finds."""
    assert len(evalsets.load_examples(paths.HELDOUT)) == len(examples(heldout=True))


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


# --- entity annotations line up with the tokens DIET learns them on ---


@lru_cache(maxsize=1)
def _jieba():  # the project's user dictionary loaded, as JiebaTokenizer loads it
    import jieba

    for dictionary in sorted(p for p in paths.JIEBA_DICT.iterdir() if p.is_file()):
        jieba.load_userdict(str(dictionary))
    return jieba


def misaligned(text: str, entities: list[dict]) -> list[str]:
    """The annotated spans of `text` that do not start and end on a jieba token boundary
    (training warns "Misaligned entity annotation" for them and DIET learns them badly)."""
    tokens = list(_jieba().tokenize(text))
    starts = {start for _, start, _ in tokens}
    ends = {end for _, _, end in tokens}
    return [
        text[e["start"] : e["end"]]
        for e in entities
        if e["start"] not in starts or e["end"] not in ends
    ]


def test_entity_annotations_fall_on_jieba_token_boundaries():
    found = []
    for folder in paths.TRAINING_DATA[:3]:
        for file in sorted(folder.rglob("*.yml")):
            for message in load_data(str(file)).training_examples:
                spans = misaligned(message.get("text"), message.get("entities") or [])
                found += [(file.name, message.get("text"), span) for span in spans]
    assert found == []


def test_a_span_cutting_a_jieba_word_is_reported():
    # jieba reads 月工资 as one word: "工资" alone cannot be an entity of this sentence
    text = "老板拖欠我三个月工资不给怎么办"
    start = text.index("工资")
    assert misaligned(text, [{"start": start, "end": start + 2}]) == ["工资"]
    start = text.index("老板")
    assert misaligned(text, [{"start": start, "end": start + 2}]) == []
