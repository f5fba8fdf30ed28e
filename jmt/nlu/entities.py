"""`EntityDIETClassifier`: Rasa's DIETClassifier, loaded for prediction only.

Rasa 3.6 rebuilds a DIET model at load time by running one *training* step on an example
(`RasaModel.load` calls `model.fit`) and only then loads the trained weights. The training
graph, gradients and optimizer state it builds stay in memory for the life of the process:
measured on our model, DIET's load costs +616 MB and the Rasa process serves at 1456 MB
resident. Loaded here the way TensorFlow loads a checkpoint into a model that is only
used for prediction — restore the weights (TensorFlow's deferred restoration assigns each
variable as the prediction graph creates it), trace the prediction step once, and check
that every variable it created came from the checkpoint — the same process serves at
988 MB, with identical entities and confidences on 150 held-out messages (measured, and
`tests/unit/test_nlu_entities.py` checks it on a small model).

Training is DIET's own, except that with `length_batches: true` each batch holds
examples of similar length (`LengthBatchedModelData`), so a batch of short messages is
no longer padded to the longest complaint (measured with bench/diet_entities.py; the
numbers are in bot/config.yml). Fine-tuning (`rasa train --finetune`) loads the standard
way, since it does need the optimizer.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.nlu.extractors.extractor import EntityTagSpec
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.training_data import TrainingData
from rasa.utils.tensorflow.constants import (
    BALANCED,
    BATCH_STRATEGY,
    EVAL_NUM_EXAMPLES,
    INTENT_CLASSIFICATION,
    SEQUENCE_LENGTH,
)
from rasa.utils.tensorflow.model_data import Data, RasaModelData
from rasa.utils.tensorflow.models import RasaModel

LENGTH_BATCHES = "length_batches"


class LengthBatchedModelData(RasaModelData):
    """Model data whose batches hold examples of similar length.

    A batch is padded to its longest example; with the examples in random order nearly
    every batch holds one long complaint, so DIET computes on 80–95 tokens per example
    where the median example has 8 (nlu_data, batches of 128–256: 7–9 times the tokens
    there are; batched as here, 1.5 times). Each epoch sorts the (already shuffled)
    examples by their length times a random factor in [1, 1.5) — so a batch's members
    still change from epoch to epoch — cuts that order into batches and shuffles the
    batches.

    DIET's data generator calls `balanced_data` for `batch_strategy: balanced` (DIET's
    default), which without intent labels would return the data unchanged.
    """

    def balanced_data(self, data: Data, batch_size: int, shuffle: bool) -> Data:
        lengths = np.asarray(data[TEXT][SEQUENCE_LENGTH][0], dtype=float).ravel()
        if shuffle:
            lengths = lengths * np.random.uniform(1.0, 1.5, len(lengths))
        order = np.argsort(lengths, kind="stable")
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if shuffle:
            batches = [batches[i] for i in np.random.permutation(len(batches))]
        return self._data_for_ids(data, np.concatenate(batches))


@DefaultV1Recipe.register(
    [
        DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER,
        DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR,
    ],
    is_trainable=True,
)
class EntityDIETClassifier(DIETClassifier):
    """DIETClassifier that loads for prediction without a training step."""

    lean_load = True  # False: Rasa's own load (tests compare the two)

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**DIETClassifier.get_default_config(), LENGTH_BATCHES: False}

    def preprocess_train_data(self, training_data: TrainingData) -> RasaModelData:
        model_data = super().preprocess_train_data(training_data)
        if not self.component_config.get(LENGTH_BATCHES) or model_data.is_empty():
            return model_data
        # Where length batching would silently not apply, or would replace Rasa's
        # balancing of intent labels, refuse instead.
        if (
            self.component_config[BATCH_STRATEGY] != BALANCED
            or self.component_config[INTENT_CLASSIFICATION]
            or self.component_config[EVAL_NUM_EXAMPLES]  # its split drops the subclass
        ):
            raise ValueError(
                f"{LENGTH_BATCHES} needs {BATCH_STRATEGY}: {BALANCED}, "
                f"{INTENT_CLASSIFICATION}: false and {EVAL_NUM_EXAMPLES}: 0"
            )
        batched = LengthBatchedModelData(
            label_key=model_data.label_key,
            label_sub_key=model_data.label_sub_key,
            data=model_data.data,
        )
        batched.add_sparse_feature_sizes(model_data.get_sparse_feature_sizes())
        return batched

    @classmethod
    def _load_model_class(
        cls,
        tf_model_file: str,
        model_data_example: RasaModelData,
        label_data: RasaModelData,
        entity_tag_specs: list[EntityTagSpec],
        config: dict[str, Any],
        finetune_mode: bool,
    ) -> RasaModel:
        if finetune_mode or not cls.lean_load:
            return super()._load_model_class(
                tf_model_file,
                model_data_example,
                label_data,
                entity_tag_specs,
                config,
                finetune_mode,
            )
        predict_data_example = RasaModelData(
            label_key=model_data_example.label_key,
            data={name: features for name, features in model_data_example.items() if TEXT in name},
        )
        model = cls.model_class()(
            data_signature=model_data_example.get_signature(),
            label_data=label_data,
            entity_tag_specs=entity_tag_specs,
            config=copy.deepcopy(config),
        )
        restored = model.load_weights(tf_model_file)  # deferred: applied as variables appear
        model.run_inference(predict_data_example)  # creates (and so restores) every variable
        # Every variable prediction uses was in the checkpoint; a shape or name mismatch
        # raises here instead of predicting with random weights.
        restored.assert_existing_objects_matched()
        restored.expect_partial()  # the optimizer's slots are in the file but not needed
        return model
