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

Training is DIET's own, unchanged. Fine-tuning (`rasa train --finetune`) loads the
standard way, since it does need the optimizer.
"""

from __future__ import annotations

import copy
from typing import Any

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.nlu.extractors.extractor import EntityTagSpec
from rasa.shared.nlu.constants import TEXT
from rasa.utils.tensorflow.model_data import RasaModelData
from rasa.utils.tensorflow.models import RasaModel


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
