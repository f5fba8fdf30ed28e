"""The sentence-embedding components: encoder cache, features, training, persistence."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from jmt.nlu import encoders
from jmt.nlu.classifier import SentenceIntentClassifier
from jmt.nlu.embeddings import SentenceEmbeddingFeaturizer

FAKE = "fake-test-encoder"


class FakeEncoder:
    """A deterministic 8-dimensional stand-in: each character hashed into a bucket."""

    dimension = 8
    instances = 0

    def __init__(self) -> None:
        FakeEncoder.instances += 1

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            for char in text:
                rows[i, hashlib.md5(char.encode()).digest()[0] % self.dimension] += 1.0
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1.0, norms)


encoders.register_encoder(FAKE, FakeEncoder)

EXAMPLES = [
    ("你好", "greet", None),
    ("您好啊", "greet", None),
    ("早上好", "greet", None),
    ("我被骗了两万", "report_fraud", None),
    ("有人骗我转账", "report_fraud", None),
    ("刷单被骗了", "report_fraud", None),
    ("身份证丢了怎么补办", "faq", "faq/id_card_reissue"),
    ("补办身份证要带什么", "faq", "faq/id_card_reissue"),
    ("护照怎么办理", "faq", "faq/passport"),
    ("办护照去哪里", "faq", "faq/passport"),
]


def messages() -> list[Message]:
    out = []
    for text, intent, key in EXAMPLES:
        data = {TEXT: text, "intent": intent}
        if key:
            data["intent_response_key"] = key
        out.append(Message(data=data))
    return out


@pytest.fixture
def storage(tmp_path) -> LocalModelStorage:
    return LocalModelStorage(tmp_path)


@pytest.fixture
def context() -> ExecutionContext:
    return ExecutionContext(GraphSchema({}), "test")


def featurizer(storage, context) -> SentenceEmbeddingFeaturizer:
    config = {
        **SentenceEmbeddingFeaturizer.get_default_config(),
        "encoder": FAKE,
        "alias": "sentence_embedding",
    }
    return SentenceEmbeddingFeaturizer.create(config, storage, Resource("embed"), context)


CLASSIFIER_CONFIG = {
    **SentenceIntentClassifier.get_default_config(),
    "featurizers": ["sentence_embedding"],
}


def test_an_encoder_is_loaded_once_per_process():
    before = FakeEncoder.instances
    first = encoders.get_encoder(FAKE)
    assert encoders.get_encoder(FAKE) is first
    assert FakeEncoder.instances - before <= 1


def test_an_unknown_encoder_is_named_in_the_error():
    with pytest.raises(ValueError, match="no-such-encoder"):
        encoders.get_encoder("no-such-encoder")


def test_the_featurizer_adds_one_dense_sentence_feature(storage, context):
    training = TrainingData(messages())
    featurizer(storage, context).process_training_data(training)
    for message in training.training_examples:
        sequence, sentence = message.get_dense_features(TEXT, ["sentence_embedding"])
        assert sequence is None  # entities stay with DIET and the sparse features
        assert sentence is not None
        assert sentence.features.shape == (1, FakeEncoder.dimension)
        assert sentence.origin == ["sentence_embedding"]


def test_the_featurizer_skips_messages_without_text(storage, context):
    empty = Message(data={"intent": "greet"})
    featurizer(storage, context).process([empty])
    assert not empty.features_present(TEXT)


def test_the_classifier_trains_persists_and_loads_through_model_storage(storage, context):
    features = featurizer(storage, context)
    training = TrainingData(messages())
    features.process_training_data(training)
    resource = Resource("classifier")
    trained = SentenceIntentClassifier.create(CLASSIFIER_CONFIG, storage, resource, context)
    trained.train(training)

    loaded = SentenceIntentClassifier.load(CLASSIFIER_CONFIG, storage, resource, context)
    assert loaded.labels == trained.labels
    assert "faq/passport" in loaded.labels  # trained on the fine labels

    queries = [Message(data={TEXT: "我被骗了两万"}), Message(data={TEXT: "护照怎么办理"})]
    features.process(queries)
    np.testing.assert_allclose(loaded.predict_proba(queries), trained.predict_proba(queries))
    loaded.process(queries)
    assert queries[0].get("intent")["name"] == "report_fraud"
    faq = queries[1]
    assert faq.get("intent")["name"] == "faq"  # the dialogue and ResponseSelector see `faq`
    ranking = faq.get("intent_ranking")
    assert [r["name"] for r in ranking] == sorted(
        {label.split("/")[0] for label in loaded.labels},
        key=lambda name: -next(r["confidence"] for r in ranking if r["name"] == name),
    )
    assert all(0.0 <= r["confidence"] <= 1.0 for r in ranking)


PASSPORT_ANSWER = [{"text": "办理护照请带身份证到出入境窗口。"}]


def test_the_classifier_selects_the_faq_answer_as_the_response_selector_would(storage, context):
    """No ResponseSelector in the pipeline: the retrieval action `utter_faq` reads the
    topic this classifier writes, and the answer survives persisting and loading."""
    features = featurizer(storage, context)
    training = TrainingData(messages(), responses={"utter_faq/passport": PASSPORT_ANSWER})
    features.process_training_data(training)
    resource = Resource("selector")
    SentenceIntentClassifier.create(CLASSIFIER_CONFIG, storage, resource, context).train(training)
    loaded = SentenceIntentClassifier.load(CLASSIFIER_CONFIG, storage, resource, context)

    faq, fraud = Message(data={TEXT: "护照怎么办理"}), Message(data={TEXT: "我被骗了两万"})
    features.process([faq, fraud])
    loaded.process([faq, fraud])
    selection = faq.get("response_selector")
    assert selection["all_retrieval_intents"] == ["faq"]
    answer = selection["faq"]["response"]
    assert answer["intent_response_key"] == "faq/passport"
    assert answer["utter_action"] == "utter_faq/passport"
    assert answer["responses"] == PASSPORT_ANSWER
    ranking = selection["faq"]["ranking"]
    assert ranking[0]["intent_response_key"] == "faq/passport"
    assert ranking[0]["confidence"] == answer["confidence"]
    assert [r["intent_response_key"] for r in ranking] == ["faq/passport", "faq/id_card_reissue"]
    assert sum(r["confidence"] for r in ranking) == pytest.approx(1.0)  # given it is an FAQ
    # Every message gets a selection (as with Rasa's ResponseSelector); the dialogue only
    # uses it when the intent is `faq`.
    assert fraud.get("response_selector")["faq"]["response"]["utter_action"].startswith(
        "utter_faq/"
    )


def test_an_untrained_classifier_predicts_no_intent(storage, context):
    untrained = SentenceIntentClassifier.load(
        CLASSIFIER_CONFIG, storage, Resource("never-trained"), context
    )
    message = Message(data={TEXT: "你好"})
    featurizer(storage, context).process([message])
    untrained.process([message])
    assert message.get("intent") == {"name": None, "confidence": 0.0}
    assert message.get("intent_ranking") == []


def test_the_real_encoder_gives_normalised_512_dimensional_rows():
    encoder = encoders.default_encoder()
    assert encoders.default_encoder() is encoder
    vectors = encoder.encode(["身份证丢了怎么补办", "楼上装修太吵了"])
    assert vectors.shape == (2, encoder.dimension) == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
