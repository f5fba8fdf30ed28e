"""`SentenceIntentClassifier`: logistic regression over [sentence embedding ⊕ char tf-idf].

Why this shape (bench/nlu_pipelines.py prints the comparison): the embedding carries
meaning that our training phrasing does not cover, the character n-grams carry the
police vocabulary the encoder was never taught; a linear model over both, trained on
the fine labels (`faq/<topic>`, not one big `faq`), was the best of every design on the
blind set and trains in seconds. Its probabilities are what out-of-scope detection needs:
a message that is close to no trained label gets a low top probability, and
FallbackClassifier turns that into `nlu_fallback`.

Writes Rasa's `intent` and `intent_ranking` by intent (`faq`, not `faq/<topic>`: the
dialogue works on intents); an intent's confidence is its best fine label's probability,
so a question spread thin over many FAQ topics is not confidently an FAQ.

It also answers "which topic" for retrieval intents (`faq/<topic>`), in the
`response_selector` output Rasa's ResponseSelector would write (its `utter_faq/<topic>`
is what the retrieval action `utter_faq` utters), so the pipeline needs no second,
TensorFlow-trained model for the FAQ topic: measured in bench/nlu_pipelines.py, the topic
chosen here is right as often as the ResponseSelector's, and dropping it saves a minute of
training and its memory. The model is stored as plain arrays and JSON (no pickle).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers import LABEL_RANKING_LENGTH
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.nlu.constants import (
    RESPONSE_SELECTOR_PREDICTION_KEY,
    RESPONSE_SELECTOR_PROPERTY_NAME,
    RESPONSE_SELECTOR_RANKING_KEY,
    RESPONSE_SELECTOR_RESPONSES_KEY,
    RESPONSE_SELECTOR_RETRIEVAL_INTENTS,
    RESPONSE_SELECTOR_UTTER_ACTION_KEY,
)
from rasa.shared.nlu.constants import INTENT, INTENT_RESPONSE_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from jmt.nlu.embeddings import SentenceEmbeddingFeaturizer

logger = logging.getLogger(__name__)

MODEL_FILE = "linear.npz"
VOCABULARY_FILE = "vocabulary.json"


def _utter_action(intent_response_key: str) -> str:
    """`faq/passport` → `utter_faq/passport`, the response the retrieval action utters."""
    return f"utter_{intent_response_key}"


def _tfidf(ngram_max: int, vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="char", ngram_range=(1, ngram_max), sublinear_tf=True, vocabulary=vocabulary
    )


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class SentenceIntentClassifier(GraphComponent, IntentClassifier):
    """Intent classifier on sentence embeddings and character n-grams."""

    @classmethod
    def required_components(cls) -> list[type]:
        return [SentenceEmbeddingFeaturizer]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "featurizers": [],  # aliases whose dense sentence features to use (empty: all)
            "C": 10.0,  # inverse L2 strength; 10 was best of 1–30 in bench/nlu_pipelines.py
            "char_ngram_max": 2,
            "max_iter": 3000,
        }

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        *,
        labels: list[str] | None = None,
        coef: np.ndarray | None = None,
        intercept: np.ndarray | None = None,
        tfidf: TfidfVectorizer | None = None,
        responses: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self._config = config
        self._model_storage = model_storage
        self._resource = resource
        self.labels = labels or []
        self._coef = coef
        self._intercept = intercept
        self._tfidf = tfidf
        self.responses = responses or {}  # utter_<intent>/<key> → the domain's responses

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SentenceIntentClassifier:
        return cls(config, model_storage, resource)

    # --- features ---

    def _dense(self, message: Message) -> np.ndarray | None:
        _, sentence = message.get_dense_features(TEXT, self._config["featurizers"] or None)
        return None if sentence is None else np.asarray(sentence.features).reshape(-1)

    def _matrix(self, messages: list[Message], dense: list[np.ndarray]) -> sparse.csr_matrix:
        assert self._tfidf is not None
        ngrams = self._tfidf.transform([m.get(TEXT) for m in messages])
        return sparse.hstack([sparse.csr_matrix(np.vstack(dense)), ngrams]).tocsr()

    # --- training ---

    def train(self, training_data: TrainingData) -> Resource:
        from sklearn.linear_model import LogisticRegression

        examples = [m for m in training_data.intent_examples if m.get(TEXT)]
        dense = [self._dense(m) for m in examples]
        if any(d is None for d in dense):
            raise ValueError(
                "SentenceIntentClassifier needs a dense sentence feature on every example: "
                "put SentenceEmbeddingFeaturizer before it in the pipeline"
            )
        labels = [m.get(INTENT_RESPONSE_KEY) or m.get(INTENT) for m in examples]
        if len(set(labels)) < 2:
            logger.warning("SentenceIntentClassifier: fewer than 2 intents, not training")
            return self._resource
        self._tfidf = _tfidf(int(self._config["char_ngram_max"]))
        self._tfidf.fit([m.get(TEXT) for m in examples])
        model = LogisticRegression(C=float(self._config["C"]), max_iter=self._config["max_iter"])
        model.fit(self._matrix(examples, dense), labels)  # type: ignore[arg-type]
        self.labels = [str(label) for label in model.classes_]
        self._coef, self._intercept = model.coef_, model.intercept_
        self.responses = {
            utter: list(training_data.responses.get(utter, []))
            for utter in (_utter_action(label) for label in self.labels if "/" in label)
        }
        self.persist()
        return self._resource

    def persist(self) -> None:
        assert self._tfidf is not None and self._coef is not None and self._intercept is not None
        with self._model_storage.write_to(self._resource) as directory:
            np.savez(
                directory / MODEL_FILE,
                coef=self._coef,
                intercept=self._intercept,
                idf=self._tfidf.idf_,
            )
            vocabulary = {term: int(i) for term, i in self._tfidf.vocabulary_.items()}
            (directory / VOCABULARY_FILE).write_text(
                json.dumps(
                    {"labels": self.labels, "vocabulary": vocabulary, "responses": self.responses},
                    ensure_ascii=False,
                ),
                encoding="utf-8",
            )

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> SentenceIntentClassifier:
        try:
            with model_storage.read_from(resource) as directory:
                arrays = np.load(directory / MODEL_FILE)
                stored = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))
        except (ValueError, FileNotFoundError):
            logger.warning("SentenceIntentClassifier: no trained model found, predicting none")
            return cls(config, model_storage, resource)
        tfidf = _tfidf(int(config["char_ngram_max"]), stored["vocabulary"])
        tfidf.idf_ = arrays["idf"]
        return cls(
            config,
            model_storage,
            resource,
            labels=stored["labels"],
            coef=arrays["coef"],
            intercept=arrays["intercept"],
            tfidf=tfidf,
            responses=stored.get("responses", {}),
        )

    # --- inference ---

    def predict_proba(self, messages: list[Message]) -> np.ndarray:
        """Probabilities over the fine labels (`self.labels`), one row per message."""
        assert self._coef is not None and self._intercept is not None
        dense = [self._dense(m) for m in messages]
        scores = self._matrix(messages, dense) @ self._coef.T + self._intercept  # type: ignore[arg-type]
        scores = np.asarray(scores)
        if scores.shape[1] == 1:  # binary logistic regression: one column for labels[1]
            p = 1.0 / (1.0 + np.exp(-scores))
            return np.hstack([1.0 - p, p])
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def process(self, messages: list[Message]) -> list[Message]:
        ready = [
            m
            for m in messages
            if self._coef is not None and m.get(TEXT) and self._dense(m) is not None
        ]
        rows = self.predict_proba(ready) if ready else np.zeros((0, len(self.labels)))
        by_message = {id(m): row for m, row in zip(ready, rows, strict=True)}
        for message in messages:
            row = by_message.get(id(message))
            ranking = [] if row is None else self._ranking(row)
            intent = ranking[0] if ranking else {"name": None, "confidence": 0.0}
            message.set("intent", intent, add_to_output=True)
            message.set("intent_ranking", ranking, add_to_output=True)
            if row is not None and self.retrieval_intents:
                message.set(
                    RESPONSE_SELECTOR_PROPERTY_NAME, self._selection(row), add_to_output=True
                )
        return messages

    @property
    def retrieval_intents(self) -> list[str]:
        return sorted({label.split("/", 1)[0] for label in self.labels if "/" in label})

    def _selection(self, probabilities: np.ndarray) -> dict[str, Any]:
        """What Rasa's ResponseSelector writes: per retrieval intent, the best response
        key with its probability given that intent, and a ranking."""
        selection: dict[str, Any] = {RESPONSE_SELECTOR_RETRIEVAL_INTENTS: self.retrieval_intents}
        for retrieval_intent in self.retrieval_intents:
            keyed = [
                (label, float(p))
                for label, p in zip(self.labels, probabilities, strict=True)
                if label.startswith(f"{retrieval_intent}/")
            ]
            total = sum(p for _, p in keyed) or 1.0
            ranked = sorted(keyed, key=lambda item: -item[1])[:LABEL_RANKING_LENGTH]
            best, p_best = ranked[0]
            selection[retrieval_intent] = {
                RESPONSE_SELECTOR_PREDICTION_KEY: {
                    RESPONSE_SELECTOR_RESPONSES_KEY: self.responses.get(_utter_action(best), []),
                    PREDICTED_CONFIDENCE_KEY: p_best / total,
                    INTENT_RESPONSE_KEY: best,
                    RESPONSE_SELECTOR_UTTER_ACTION_KEY: _utter_action(best),
                },
                RESPONSE_SELECTOR_RANKING_KEY: [
                    {"id": i, PREDICTED_CONFIDENCE_KEY: p / total, INTENT_RESPONSE_KEY: label}
                    for i, (label, p) in enumerate(ranked)
                ],
            }
        return selection

    def _ranking(self, probabilities: np.ndarray) -> list[dict[str, Any]]:
        best: dict[str, float] = {}
        for label, p in zip(self.labels, probabilities, strict=True):
            intent = label.split("/", 1)[0]
            best[intent] = max(best.get(intent, 0.0), float(p))
        ranked = sorted(best.items(), key=lambda item: -item[1])[:LABEL_RANKING_LENGTH]
        return [{"name": name, "confidence": confidence} for name, confidence in ranked]
