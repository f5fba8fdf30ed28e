"""`make evaluate`'s breakdowns on small synthetic predictions (no model): per register,
the wrong-FAQ share, issue 9's targets, the join of Rasa's outputs to registers, and the
summary of several sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jmt import evalsets
from jmt.evalreport import summary_markdown
from jmt.evaluate import load_predictions, summarise
from jmt.scoring import Prediction, register_scores, wrong_faq

UNSPECIFIED = evalsets.UNSPECIFIED


def p(
    expected: str,
    predicted: str,
    register: str = UNSPECIFIED,
    *,
    intent: str | None = None,
    confidence: float = 0.9,
) -> Prediction:
    """A prediction by category; the intents are the category's own unless given."""
    return Prediction(
        text=f"{expected}->{predicted}",
        expected=expected,
        predicted=predicted,
        intent_expected=intent or expected,
        intent_predicted=predicted,
        confidence=confidence,
        register=register,
    )


def test_register_breakdown_accuracy_and_macro_f1_over_the_registers_categories():
    rows = [
        p("other", "other", "chitchat"),
        p("other", "faq", "chitchat"),
        p("other", "other", "chitchat"),
        p("other", "other", "chitchat"),
        p("noise_complaint", "noise_complaint", "long_complaint"),
        p("noise_complaint", "fraud_suspicion", "long_complaint"),
        p("fraud_suspicion", "fraud_suspicion", "long_complaint"),
        p("faq", "faq"),
    ]
    scores = register_scores(rows)
    assert list(scores) == ["chitchat", "long_complaint", UNSPECIFIED]  # unspecified last
    chitchat = scores["chitchat"]
    assert chitchat["examples"] == 4
    assert chitchat["accuracy"] == pytest.approx(0.75)
    # only `other` has examples here: F1 = 2·1·0.75/1.75 (the faq slip lowers recall)
    assert chitchat["macro_f1"] == pytest.approx(2 * 0.75 / 1.75)
    complaint = scores["long_complaint"]
    assert complaint["accuracy"] == pytest.approx(2 / 3)
    # noise P 1 R 0.5 → F1 2/3; fraud P 0.5 R 1 → F1 2/3
    assert complaint["macro_f1"] == pytest.approx(2 / 3)
    assert scores[UNSPECIFIED] == {"examples": 1, "accuracy": 1.0, "macro_f1": 1.0}


def test_wrong_faq_counts_category_other_sent_to_an_faq_intent():
    rows = [
        p("other", "faq", intent="out_of_scope", confidence=0.95),
        p("other", "faq", intent="out_of_scope", confidence=0.3),
        p("other", "other", intent="out_of_scope"),
        p("other", "legal_help", intent="out_of_scope"),
        p("other", "faq", intent="greet"),
        p("other", "other", intent="thanks"),
        p("faq", "faq"),  # an FAQ question answered by an FAQ is not wrong
        p("fraud_suspicion", "faq"),  # wrong, but not an out-of-scope message
    ]
    assert wrong_faq(rows, threshold=0.4) == {
        "messages": 6,
        "faq": 3,
        "share": 0.5,
        "below_threshold": 1,
    }
    assert wrong_faq(rows, intent="out_of_scope", threshold=0.4) == {
        "messages": 4,
        "faq": 2,
        "share": 0.5,
        "below_threshold": 1,
    }
    assert wrong_faq([p("faq", "faq")]) == {
        "messages": 0,
        "faq": 0,
        "share": 0.0,
        "below_threshold": 0,
    }


def perfect_except(*extra: Prediction) -> list[Prediction]:
    categories = ["emergency", "fraud_suspicion", "legal_help", "noise_complaint"]
    categories += ["dog_complaint", "faq", "other"]
    rows = [p(c, c) for c in categories for _ in range(10)]
    return rows + list(extra)


def test_issue_9_targets_are_pass_fail_lines_and_the_gating_targets_stay_as_they_were():
    one_wrong_faq = p("other", "faq", intent="out_of_scope")
    report = summarise(Path("jmt-x.tar.gz"), perfect_except(one_wrong_faq))
    goals = {g["name"]: g for g in report["goals"]}
    assert report["wrong_faq"]["other"]["faq"] == 1
    assert goals["wrong_faq_share"]["value"] == pytest.approx(1 / 11)
    assert goals["wrong_faq_share"]["met"] is False and goals["wrong_faq_share"]["op"] == "≤"
    assert goals["recall:emergency"]["met"] is True
    assert goals["macro_f1"]["met"] is True and goals["macro_f1"]["op"] == "≥"
    # what the model gate reads is unchanged: the three gating targets only
    assert set(report["targets"]) == {"macro_f1", "recall:emergency", "recall:fraud_suspicion"}
    assert all(t["met"] for t in report["targets"].values())

    missed_fraud = summarise(Path("m"), perfect_except(p("fraud_suspicion", "legal_help")))
    goals = {g["name"]: g for g in missed_fraud["goals"]}
    assert goals["recall:fraud_suspicion"]["value"] == pytest.approx(10 / 11)
    assert goals["recall:fraud_suspicion"]["met"] is False
    assert missed_fraud["targets"]["recall:fraud_suspicion"]["met"] is False


def test_rasa_outputs_are_joined_to_registers_by_normalised_text(tmp_path: Path):
    blind = tmp_path / "blind.yml"
    blind.write_text(
        """version: "3.1"
nlu:
- intent: complain_noise
  examples:
  - text: |
      楼上每天晚上十一点以后还在蹦迪
    metadata:
      register: long_complaint
- intent: out_of_scope
  examples:
  - text: |
      去日本旅游，哪里好玩？
    metadata:
      register: chitchat
  - text: |
      Ｗi-Fi密码多少
- intent: faq/passport
  examples: |
    - 护照怎么办
""",
        encoding="utf-8",
    )
    out = tmp_path / "nlu"
    out.mkdir()
    successes = [
        {"text": "楼上每天晚上十一点以后还在蹦迪", "intent": "complain_noise",
         "intent_prediction": {"name": "complain_noise", "confidence": 0.9}},
        {"text": "护照怎么办", "intent": "faq",
         "intent_prediction": {"name": "faq", "confidence": 0.8}},
    ]  # fmt: skip
    errors = [
        {"text": "去日本旅游 哪里好玩", "intent": "out_of_scope",
         "intent_prediction": {"name": "faq", "confidence": 0.7}},
        {"text": "wi-fi密码多少", "intent": "out_of_scope",
         "intent_prediction": {"name": "faq", "confidence": 0.6}},
    ]  # fmt: skip
    (out / "intent_successes.json").write_text(json.dumps(successes, ensure_ascii=False))
    (out / "intent_errors.json").write_text(json.dumps(errors, ensure_ascii=False))

    registers = evalsets.registers_by_text(evalsets.load_examples(blind))
    rows = load_predictions(out, registers)
    assert [(r.register, r.expected, r.predicted) for r in rows] == [
        ("long_complaint", "noise_complaint", "noise_complaint"),
        (UNSPECIFIED, "faq", "faq"),
        ("chitchat", "other", "faq"),
        (UNSPECIFIED, "other", "faq"),
    ]


def test_the_summary_puts_the_sets_side_by_side():
    heldout = summarise(Path("jmt-x.tar.gz"), perfect_except())
    rows = [p("other", "faq", "chitchat", intent="out_of_scope"), p("emergency", "emergency")]
    blind = summarise(Path("jmt-x.tar.gz"), rows)
    text = summary_markdown("jmt-x.tar.gz", {"heldout": heldout, "blind": blind})
    assert "| | heldout | blind |" in text
    assert "| wrong FAQ, intent out_of_scope | – | 1/1 (100.0%) |" in text
    assert "| chitchat | – | 0.000 / 0.000 (1) |" in text
    assert "| unspecified | 1.000 / 1.000 (70) | 1.000 / 1.000 (1) |" in text
    assert "FAIL: wrong_faq_share 1.000 (issue 9 target ≤ 0.03)" in text
    assert "pass: recall:emergency 1.000 (gating target ≥ 0.98)" in text


@pytest.mark.parametrize(
    ("option", "expected"),
    [("blind=/tmp/x.yml", ("blind", Path("/tmp/x.yml"))), ("a=b=c", ("a", Path("b=c")))],
)
def test_set_options(option, expected):
    assert evalsets.parse_set_option(option) == expected


@pytest.mark.parametrize("option", ["blind", "=x.yml", "blind="])
def test_bad_set_options(option):
    with pytest.raises(ValueError):
        evalsets.parse_set_option(option)


def test_sets_are_discovered_heldout_first(tmp_path: Path):
    for name in ("zeta", "blind", "heldout"):
        (tmp_path / f"{name}.yml").write_text("nlu: []\n")
    (tmp_path / "notes.md").write_text("x")
    assert list(evalsets.discover(tmp_path)) == ["heldout", "blind", "zeta"]
