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
    epochs: 3
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
