"""The NLU evaluation sets under `tests/nlu/`: which there are, their examples and registers.

Each set is a Rasa 3 NLU YAML file that is never trained on: `heldout.yml` (written in
the style of our data) and `blind.yml` (written by authors who never saw `nlu_data/`, in
the registers residents really use). A blind example may carry
`metadata: {register: long_complaint}`; examples without one are `unspecified`.

`rasa test nlu` does not keep example metadata in its outputs (`intent_successes.json` /
`intent_errors.json` hold only text, intent and prediction), so predictions are joined
back to their register by the normalised text of the examples loaded here.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from jmt import paths

logger = logging.getLogger(__name__)

UNSPECIFIED = "unspecified"
# heldout first (the set the model gate uses), then every other set by name.
FIRST = "heldout"
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


@dataclass(frozen=True)
class Example:
    text: str
    intent: str  # full intent, e.g. faq/passport
    register: str = UNSPECIFIED


def normalise(text: str) -> str:
    """What 'the same message' means across files: NFKC, lower case, no whitespace and no
    punctuation (so 'Ａ，b ?' and 'ab' are one text)."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(
        char
        for char in folded
        if not char.isspace() and not unicodedata.category(char).startswith(("P", "Z"))
    )


def plain_text(text: str) -> str:
    """An example's text without Rasa's entity markup: '[两万](amount)' → '两万'."""
    return _ANNOTATION.sub(r"\1", text).strip()


def _examples_of(block: object) -> list[tuple[str, dict]]:
    """(text, metadata) of one intent's `examples`: a '- text' block or a list of
    {text, metadata} mappings."""
    if isinstance(block, str):
        lines = (line.strip() for line in block.splitlines())
        return [(line[1:].strip(), {}) for line in lines if line.startswith("-")]
    found: list[tuple[str, dict]] = []
    for item in block if isinstance(block, list) else []:
        if isinstance(item, dict):
            found.append((str(item.get("text") or ""), item.get("metadata") or {}))
        else:
            found.append((str(item), {}))
    return found


def load_examples(file: Path) -> list[Example]:
    """Every intent example of one NLU file, with its register."""
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    examples = []
    for entry in data.get("nlu") or []:
        if not isinstance(entry, dict) or "intent" not in entry:
            continue
        for text, metadata in _examples_of(entry.get("examples")):
            register = metadata.get("register") if isinstance(metadata, dict) else None
            text = plain_text(text)
            if text:
                examples.append(Example(text, str(entry["intent"]), str(register or UNSPECIFIED)))
    return examples


def registers_by_text(examples: list[Example]) -> dict[str, str]:
    """Normalised text → register (the first one when a text appears twice)."""
    registers: dict[str, str] = {}
    for example in examples:
        key = normalise(example.text)
        if key in registers and registers[key] != example.register:
            logger.warning("%r is in two registers; counted as %s", example.text, registers[key])
        registers.setdefault(key, example.register)
    return registers


def discover(directory: Path = paths.EVALUATION_SETS) -> dict[str, Path]:
    """name → file of every evaluation set in `directory` (`heldout` first)."""
    files = sorted(directory.glob("*.yml"), key=lambda f: (f.stem != FIRST, f.stem))
    return {file.stem: file for file in files}


def parse_set_option(value: str) -> tuple[str, Path]:
    """`--set name=path` → (name, path)."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"expected NAME=PATH, got {value!r}")
    return name, Path(path)
