"""Entity extraction by DIET: quality and training cost of a configuration, in process.

Loads nlu_data/{intents,faq,entities} with Rasa's loader and splits it 80/20 with a fixed
seed — the examples with an entity annotation and those without separately, so both
parts keep the same mix. Runs the tokenizer and the sparse featurizers that DIET uses, as
configured in bot/config.yml, then for each VARIANT trains jmt.nlu.entities'
EntityDIETClassifier with bot/config.yml's settings plus the variant's overrides and
prints, on the held-out 20 %:

- exact-span micro precision / recall / F1 (entity type, start and end must all match),
  overall and per entity type;
- the CPU seconds and wall seconds of DIET's training alone (featurizing is shared);
- how many entities it finds in the long messages (>= 60 characters) of
  tests/nlu/blind.yml, which carry no entity annotation: complaints and stories written
  by other authors, where a model that never saw long unannotated text could invent
  entities. Compare the count between variants (some of those entities are real).

    .venv/bin/python bench/diet_entities.py                        # bot/config.yml as is
    .venv/bin/python bench/diet_entities.py "length_batches=false,transformer_size=128" "epochs=30"
    .venv/bin/python bench/diet_entities.py --diet-seed 7 "" "transformer_size=128"

A VARIANT is "" (the configuration unchanged) or comma-separated key=value overrides of
the DIET block, values parsed as YAML. Variants run one after the other in this process.
CPU seconds (`time.process_time`, every thread of this process) are the figure to
compare on a shared machine; wall seconds follow the machine's load.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jmt import paths  # noqa: E402

SPLIT_SEED = 20261205
DIET = "jmt.nlu.entities.EntityDIETClassifier"
LONG_CHARS = 60


def load(folder: str):  # -> TrainingData
    from rasa.shared.nlu.training_data.loading import load_data

    return load_data(str(paths.REPO_ROOT / folder))


def split(data, share: float = 0.2):  # -> (TrainingData, list[Message])
    from rasa.shared.nlu.training_data.training_data import TrainingData

    rng = random.Random(SPLIT_SEED)
    train, test = [], []
    for annotated in (True, False):
        group = [m for m in data.training_examples if bool(m.get("entities")) == annotated]
        rng.shuffle(group)
        cut = round(len(group) * share)
        test += group[:cut]
        train += group[cut:]
    rng.shuffle(train)
    kept = TrainingData(
        train,
        entity_synonyms=data.entity_synonyms,
        regex_features=data.regex_features,
        lookup_tables=data.lookup_tables,
    )
    return kept, test


def components(config: dict[str, Any]):  # -> (components, DIET's config, storage, context)
    """The tokenizer and the featurizers DIET reads, built from bot/config.yml."""
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import (
        CountVectorsFeaturizer,
    )
    from rasa.nlu.featurizers.sparse_featurizer.lexical_syntactic_featurizer import (
        LexicalSyntacticFeaturizer,
    )
    from rasa.nlu.featurizers.sparse_featurizer.regex_featurizer import RegexFeaturizer
    from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer

    classes = {
        "JiebaTokenizer": JiebaTokenizer,
        "RegexFeaturizer": RegexFeaturizer,
        "LexicalSyntacticFeaturizer": LexicalSyntacticFeaturizer,
        "CountVectorsFeaturizer": CountVectorsFeaturizer,
    }
    [diet] = [c for c in config["pipeline"] if c["name"] == DIET]
    storage = LocalModelStorage(Path(config["storage"]))
    context = ExecutionContext(GraphSchema({}), "diet-entities")
    built = []
    for index, item in enumerate(config["pipeline"]):
        if item["name"] not in classes:
            continue
        if item["name"] != "JiebaTokenizer" and item.get("alias") not in diet["featurizers"]:
            continue
        cls = classes[item["name"]]
        options = {k: v for k, v in item.items() if k != "name"}
        if "dictionary_path" in options:
            options["dictionary_path"] = str(paths.REPO_ROOT / options["dictionary_path"])
        built.append(
            cls.create(
                {**cls.get_default_config(), **options},
                storage,
                Resource(f"{index}-{item['name']}"),
                context,
            )
        )
    return built, {k: v for k, v in diet.items() if k != "name"}, storage, context


def spans(message) -> set[tuple[str, int, int]]:
    return {(e["entity"], e["start"], e["end"]) for e in message.get("entities") or []}


def report(gold: list, predicted: list) -> None:
    counts: dict[str, Counter] = {}
    for expected, found in zip(gold, predicted, strict=True):
        for entity, *_ in expected | found:
            counts.setdefault(entity, Counter())
        for span in found:
            counts[span[0]]["tp" if span in expected else "fp"] += 1
        for span in expected - found:
            counts[span[0]]["fn"] += 1
    total = sum(counts.values(), Counter())

    def prf(c: Counter) -> str:
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return f"P {p:.3f}  R {r:.3f}  F1 {f:.3f}  (tp {c['tp']}, fp {c['fp']}, fn {c['fn']})"

    print(f"  {'micro':<12} {prf(total)}")
    for entity in sorted(counts):
        print(f"  {entity:<12} {prf(counts[entity])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", default=[""])
    parser.add_argument("--diet-seed", type=int, default=None, help="DIET's random_seed")
    args = parser.parse_args()

    import tempfile

    from rasa.engine.storage.resource import Resource
    from rasa.shared.nlu.training_data.message import Message

    from jmt.nlu.entities import EntityDIETClassifier

    data = load("nlu_data/intents").merge(load("nlu_data/faq"), load("nlu_data/entities"))
    train, test = split(data)
    blind = load("tests/nlu/blind.yml").training_examples
    long_texts = [m.get("text") for m in blind if len(m.get("text")) >= LONG_CHARS]
    print(
        f"train {len(train.training_examples)} examples "
        f"({sum(bool(m.get('entities')) for m in train.training_examples)} annotated), "
        f"held out {len(test)} ({sum(bool(m.get('entities')) for m in test)} annotated); "
        f"{len(long_texts)} long blind messages"
    )

    config = yaml.safe_load((paths.REPO_ROOT / "bot" / "config.yml").read_text("utf-8"))
    config["storage"] = tempfile.mkdtemp(prefix="diet-entities-")
    featurizers, diet_config, storage, context = components(config)

    def featurized(texts: list[str]) -> list:
        messages = [Message(data={"text": text}) for text in texts]
        for component in featurizers:
            messages = component.process(messages)
        return messages

    for component in featurizers:
        if hasattr(component, "train"):
            component.train(train)
        train = component.process_training_data(train)
    test_messages = featurized([m.get("text") for m in test])
    long_messages = featurized(long_texts)

    for number, variant in enumerate(args.variants):
        overrides = {}
        for pair in filter(None, variant.split(",")):
            key, _, value = pair.partition("=")
            overrides[key.strip()] = yaml.safe_load(value)
        if args.diet_seed is not None:
            overrides.setdefault("random_seed", args.diet_seed)
        options = {**EntityDIETClassifier.get_default_config(), **diet_config, **overrides}
        diet = EntityDIETClassifier.create(options, storage, Resource(f"diet-{number}"), context)
        cpu, wall = time.process_time(), time.perf_counter()
        diet.train(train)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"\n[{variant or 'bot/config.yml'}] {overrides}")
        print(f"  DIET training: {cpu:.0f} CPU-s, {wall:.0f} wall-s")
        for message in test_messages + long_messages:
            message.set("entities", [])
        diet.process(test_messages + long_messages)
        report([spans(m) for m in test], [spans(m) for m in test_messages])
        found = Counter(e["entity"] for m in long_messages for e in m.get("entities"))
        print(
            f"  long blind messages: {sum(found.values())} entities in "
            f"{sum(bool(m.get('entities')) for m in long_messages)} of {len(long_messages)} "
            f"messages {dict(sorted(found.items()))}"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
