"""EntityDIETClassifier loads for prediction without Rasa's training step, and predicts
exactly what the standard load predicts (jmt/nlu/entities.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jmt.nlu.entities import EntityDIETClassifier

CONFIG = """
recipe: default.v1
language: zh
assistant_id: entities-check
pipeline:
  - name: JiebaTokenizer
  - name: CountVectorsFeaturizer
    analyzer: char
    min_ngram: 1
    max_ngram: 2
  - name: jmt.nlu.entities.EntityDIETClassifier
    intent_classification: false
    epochs: 60  # enough for the tiny model to find entities (3 found them by chance)
    length_batches: true  # as bot/config.yml: through Rasa's graph, training and loading
    number_of_transformer_layers: 1
    transformer_size: 32
    random_seed: 42
  - name: KeywordIntentClassifier
policies: []
"""

NLU = """
version: "3.1"
nlu:
- intent: report_fraud
  examples: |
    - 我被骗了[两万](amount)
    - 刷单被骗[五千](amount)块
    - 昨天被人骗走[八百](amount)
    - 在[抖音](platform)上被骗了[三千](amount)
    - [淘宝](platform)客服让我转了[一万](amount)
- intent: complain_noise
  examples: |
    - 楼上太吵了
    - 隔壁装修一直响
    - 晚上广场舞声音很大
"""

PROBES = ["我被骗了三万", "在抖音上被人骗了两千", "楼上装修太吵", "淘宝客服骗了我五百"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from rasa.model_training import train_nlu

    folder = tmp_path_factory.mktemp("entities")
    (folder / "config.yml").write_text(CONFIG, encoding="utf-8")
    (folder / "nlu.yml").write_text(NLU, encoding="utf-8")
    trained = train_nlu(
        config=str(folder / "config.yml"),
        nlu_data=str(folder / "nlu.yml"),
        output=str(folder / "models"),
        fixed_model_name="entities",
    )
    assert trained is not None
    return Path(trained)


def parse_all(model: Path, *, lean: bool) -> list[list[tuple[str, str, float]]]:
    from rasa.core.agent import load_agent

    EntityDIETClassifier.lean_load = lean
    try:

        async def run() -> list[list[tuple[str, str, float]]]:
            agent = await load_agent(str(model))
            out = []
            for text in PROBES:
                parsed = await agent.parse_message(text)
                out.append(
                    [
                        (e["entity"], e["value"], round(e["confidence_entity"], 5))
                        for e in parsed["entities"]
                    ]
                )
            return out

        return asyncio.run(run())
    finally:
        EntityDIETClassifier.lean_load = True


def test_the_lean_load_predicts_exactly_what_rasas_load_predicts(model):
    lean = parse_all(model, lean=True)
    standard = parse_all(model, lean=False)
    assert lean == standard
    assert any(lean), "the tiny model should find some entity, or the comparison proves little"


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(model, tmp_path, caplog):
    """A prediction variable missing from the checkpoint must fail the load, not predict
    with random weights: the restore is checked."""
    import tarfile

    folder = tmp_path / "unpacked"
    with tarfile.open(model) as archive:
        archive.extractall(folder)  # noqa: S202 (our own model file)
    [index] = folder.glob("components/*EntityDIETClassifier*/*.tf_model.index")
    for part in index.parent.glob("*.tf_model.*"):
        part.unlink()  # an empty checkpoint: nothing to restore
    import tensorflow as tf

    empty = tf.train.Checkpoint(unrelated=tf.Variable(1.0))
    empty.write(str(index.parent / "EntityDIETClassifier.tf_model"))
    broken = tmp_path / "broken.tar.gz"
    with tarfile.open(broken, "w:gz") as archive:
        for item in folder.iterdir():
            archive.add(item, arcname=item.name)
    from rasa.core.exceptions import AgentNotReady

    with pytest.raises(AgentNotReady):  # Rasa refuses to serve a model that fails to load
        parse_all(broken, lean=True)
    assert "no matching checkpointed value" in caplog.text  # … because the restore check failed


def make_classifier(tmp_path: Path, **config) -> EntityDIETClassifier:
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource

    return EntityDIETClassifier.create(
        {**EntityDIETClassifier.get_default_config(), "random_seed": 42, **config},
        LocalModelStorage(tmp_path),
        Resource("diet"),
        ExecutionContext(GraphSchema({}), "sample-check"),
    )


def sample_data():
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    examples = []
    for i in range(12):
        entities = [{"entity": "amount", "start": 0, "end": 1, "value": "五"}] if i % 4 == 0 else []
        # twelve distinct texts (TrainingData drops duplicates) of three token lengths
        text = "五六七八九十百千万亿两三"[i] + "，很长的投诉" * 3 * (i % 3)
        examples.append(
            Message(data={"text": text, "intent": "report_fraud", "entities": entities})
        )
    return TrainingData(examples, regex_features=[{"name": "phone", "pattern": r"1\d{10}"}])


def featurized_sample(tmp_path: Path):
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import (
        CountVectorsFeaturizer,
    )
    from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer

    storage, context = LocalModelStorage(tmp_path), ExecutionContext(GraphSchema({}), "x")
    tokenizer = JiebaTokenizer.create(
        JiebaTokenizer.get_default_config(), storage, Resource("t"), context
    )
    featurizer = CountVectorsFeaturizer.create(
        {**CountVectorsFeaturizer.get_default_config(), "analyzer": "char"},
        storage,
        Resource("f"),
        context,
    )
    data = tokenizer.process_training_data(sample_data())
    featurizer.train(data)
    return featurizer.process_training_data(data)


def test_length_batches_put_the_long_examples_together():
    import numpy as np
    from rasa.utils.tensorflow.constants import SEQUENCE_LENGTH
    from rasa.utils.tensorflow.model_data import FeatureArray

    from jmt.nlu.entities import LengthBatchedModelData

    lengths = np.array([2, 3, 50, 2, 4, 60, 3, 2, 55, 2, 3, 4, 52, 2, 3, 2])
    data = LengthBatchedModelData(
        data={
            "text": {
                SEQUENCE_LENGTH: [FeatureArray(lengths, number_of_dimensions=1)],
                "id": [FeatureArray(np.arange(16), number_of_dimensions=1)],
            }
        }
    )
    np.random.seed(3)
    for _ in range(5):
        batched = data.balanced_data(data.data, batch_size=4, shuffle=True)
        ids = np.asarray(batched["text"]["id"][0])
        assert sorted(ids) == list(range(16)), "every example once per epoch"
        assert list(np.asarray(batched["text"][SEQUENCE_LENGTH][0])) == list(lengths[ids])
        batches = [set(ids[i : i + 4]) for i in range(0, 16, 4)]
        assert {2, 5, 8, 12} in batches, "the four long examples share one batch"
        # so one batch is padded to 60 tokens and the other three to at most 4
        assert sorted(max(lengths[list(b)]) for b in batches)[-2] <= 4


def test_length_batches_are_what_diet_trains_on(tmp_path):
    import numpy as np
    from rasa.utils.tensorflow.constants import SEQUENCE_LENGTH

    from jmt.nlu.entities import LengthBatchedModelData

    data = featurized_sample(tmp_path)
    plain = make_classifier(tmp_path, intent_classification=False).preprocess_train_data(data)
    assert type(plain) is not LengthBatchedModelData  # off by default: Rasa's batches
    diet = make_classifier(tmp_path, intent_classification=False, length_batches=True)
    model_data = diet.preprocess_train_data(data)
    assert isinstance(model_data, LengthBatchedModelData)
    assert model_data.number_of_examples() == 12
    # kept: DIET sizes its input layer with them
    assert model_data.get_sparse_feature_sizes() == plain.get_sparse_feature_sizes() != {}
    batched = model_data.balanced_data(model_data.data, batch_size=4, shuffle=True)
    lengths = np.asarray(batched["text"][SEQUENCE_LENGTH][0])
    assert len(set(lengths)) == 3
    assert all(len(set(lengths[i : i + 4])) == 1 for i in range(0, 12, 4)), lengths
    for wrong in (
        {"batch_strategy": "sequence"},  # Rasa would never call balanced_data
        {"intent_classification": True},  # it would replace the balancing of intents
        {"evaluate_on_number_of_examples": 2},  # Rasa's split returns plain model data
    ):
        options = {"intent_classification": False, "length_batches": True, **wrong}
        with pytest.raises(ValueError, match="length_batches needs"):
            make_classifier(tmp_path, **options).preprocess_train_data(data)
