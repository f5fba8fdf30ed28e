"""The seven triage categories and the intent → category map of `bot/triage.yml`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from casework.cases import CATEGORIES
from casework.settings import REPO_ROOT

TRIAGE_FILE = REPO_ROOT / "bot" / "triage.yml"


@lru_cache(maxsize=4)
def load_categories(path: Path = TRIAGE_FILE) -> dict[str, str]:
    """intent → category, validated: every category must be one of the seven."""
    mapping = yaml.safe_load(path.read_text(encoding="utf-8"))["categories"]
    unknown = {category for category in mapping.values() if category not in CATEGORIES}
    if unknown:
        raise ValueError(f"{path}: unknown categories {sorted(unknown)}")
    return dict(mapping)


def category_of(intent: str | None, path: Path = TRIAGE_FILE) -> str:
    """The category of an intent; `faq/<topic>` counts as `faq`; unknown → other."""
    if not intent:
        return "other"
    return load_categories(path).get(intent.split("/", 1)[0], "other")
