"""`SentenceEmbeddingFeaturizer`: the whole message as one sentence-encoder vector.

Adds a dense *sentence* feature (no sequence feature: a sentence encoder has no
per-token output worth giving, and entities are DIET's job on the sparse features).
Components that should not see it — DIET, the ResponseSelector — name the featurizers
they use in bot/config.yml (`featurizers: [...]`); `SentenceIntentClassifier` uses it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from jmt.nlu.encoders import DEFAULT_ENCODER, SentenceEncoder, get_encoder


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class SentenceEmbeddingFeaturizer(DenseFeaturizer, GraphComponent):
    """Featurizes a message's text with a pretrained sentence encoder."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            "encoder": DEFAULT_ENCODER,  # a name known to jmt.nlu.encoders
        }

    def __init__(self, config: dict[str, Any], name: str) -> None:
        super().__init__(name, config)
        self._encoder_name = str(config["encoder"])

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SentenceEmbeddingFeaturizer:
        return cls(config, execution_context.node_name)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """Nothing to check beyond the encoder name, which fails loudly on first use."""

    @property
    def encoder(self) -> SentenceEncoder:
        return get_encoder(self._encoder_name)  # one instance per process, cached there

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self._featurize([m for m in training_data.training_examples if m.get(TEXT)])
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        self._featurize([m for m in messages if m.get(TEXT)])
        return messages

    def _featurize(self, messages: list[Message]) -> None:
        if not messages:
            return
        vectors = self.encoder.encode([m.get(TEXT) for m in messages])
        for message, vector in zip(messages, vectors, strict=True):
            self.add_features_to_message(
                sequence=None,
                sentence=np.asarray(vector, dtype=np.float32).reshape(1, -1),
                attribute=TEXT,
                message=message,
            )
