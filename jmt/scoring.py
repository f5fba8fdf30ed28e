"""Scores of one evaluation set from its predictions (pure: no Rasa, no files).

Per triage category (precision, recall, F1, macro-F1), per register (accuracy and
macro-F1 of the triage decision), and the wrong-FAQ share: messages whose gold category
is `other` (greetings, out-of-scope questions, chit-chat …) that the model sends to an
`faq` intent, i.e. that would be answered with a police FAQ text.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from casework.cases import CATEGORIES
from jmt.evalsets import UNSPECIFIED

# The targets `make evaluate` gates on (exit 1 when a set misses one); the model gate of
# `jmt nlu evaluate --compare` checks them too.
TARGETS = {"macro_f1": 0.92, "recall:emergency": 0.98, "recall:fraud_suspicion": 0.95}
# Issue 9's targets: reported as pass/fail lines on every set, not gating (yet).
GOALS_AT_LEAST = {"macro_f1": 0.95, "recall:emergency": 1.0, "recall:fraud_suspicion": 0.97}
GOALS_AT_MOST = {"wrong_faq_share": 0.03}


@dataclass(frozen=True)
class Prediction:
    text: str
    expected: str  # category
    predicted: str  # category
    intent_expected: str
    intent_predicted: str
    confidence: float
    register: str = UNSPECIFIED


def category_scores(predictions: list[Prediction]) -> dict[str, dict[str, float]]:
    scores: dict[str, dict[str, float]] = {}
    for category in CATEGORIES:
        tp = sum(p.expected == category and p.predicted == category for p in predictions)
        fp = sum(p.expected != category and p.predicted == category for p in predictions)
        fn = sum(p.expected == category and p.predicted != category for p in predictions)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[category] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    return scores


def macro_f1(scores: dict[str, dict[str, float]]) -> float:
    """The mean F1 of all seven categories (a category without examples counts 0)."""
    return sum(s["f1"] for s in scores.values()) / len(scores)


def register_scores(predictions: list[Prediction]) -> dict[str, dict[str, float]]:
    """register → examples, accuracy and macro-F1 of the triage category.

    A register holds only some categories (chit-chat is all `other`), so its macro-F1 is
    the mean F1 over the categories it has examples of; a wrong prediction still lowers
    it through recall (and through precision when it lands on one of those categories).
    """
    by_register: dict[str, list[Prediction]] = defaultdict(list)
    for p in predictions:
        by_register[p.register].append(p)
    result = {}
    for register in sorted(by_register, key=lambda r: (r == UNSPECIFIED, r)):
        rows = by_register[register]
        scores = category_scores(rows)
        present = [s["f1"] for s in scores.values() if s["support"]]
        result[register] = {
            "examples": len(rows),
            "accuracy": sum(p.expected == p.predicted for p in rows) / len(rows),
            "macro_f1": sum(present) / len(present) if present else 0.0,
        }
    return result


def wrong_faq(
    predictions: list[Prediction], *, intent: str | None = None, threshold: float | None = None
) -> dict[str, float]:
    """Messages of gold category `other` (only those of `intent` if given) predicted as an
    `faq` intent: their count and share. `below_threshold` counts those whose confidence
    is under the FallbackClassifier threshold (Rasa's test undoes the fallback; live, they
    would get the fallback reply instead of the FAQ text). They are still counted as wrong:
    the ambiguity rule and the FAQ topic are not visible here."""
    messages = [
        p
        for p in predictions
        if p.expected == "other" and (intent is None or p.intent_expected == intent)
    ]
    wrong = [p for p in messages if p.predicted == "faq"]
    below = [p for p in wrong if threshold is not None and p.confidence < threshold]
    return {
        "messages": len(messages),
        "faq": len(wrong),
        "share": len(wrong) / len(messages) if messages else 0.0,
        "below_threshold": len(below),
    }


def measures(scores: dict[str, dict[str, float]], faq_share: float) -> dict[str, float]:
    """What the targets are about, by name."""
    return {
        "macro_f1": macro_f1(scores),
        "recall:emergency": scores["emergency"]["recall"],
        "recall:fraud_suspicion": scores["fraud_suspicion"]["recall"],
        "wrong_faq_share": faq_share,
    }


def check_targets(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float | bool]]:
    """The gating TARGETS (each an 'at least')."""
    measured = measures(scores, faq_share=0.0)
    return {
        name: {"value": measured[name], "target": target, "met": measured[name] >= target}
        for name, target in TARGETS.items()
    }


def check_goals(measured: dict[str, float]) -> list[dict[str, float | bool | str]]:
    """Issue 9's targets as pass/fail lines."""

    def line(name: str, op: str, met: bool, target: float) -> dict[str, float | bool | str]:
        return {"name": name, "value": measured[name], "op": op, "target": target, "met": met}

    return [
        *(line(n, "≥", measured[n] >= t, t) for n, t in GOALS_AT_LEAST.items()),
        *(line(n, "≤", measured[n] <= t, t) for n, t in GOALS_AT_MOST.items()),
    ]
