"""NLU evaluation on the held-out set (`make evaluate`).

Runs `rasa test nlu` on `tests/nlu/heldout.yml` (never used for training) and writes under
`reports/`:
- `nlu/` — Rasa's own intent and entity reports and intent confusion matrix;
- `triage_report.json` / `triage_report.md` — per-category precision/recall/F1 through
  `bot/triage.yml`, macro-F1, and the targets;
- `triage_confusion_matrix.png`.

Exits non-zero when a target is missed, so it can gate a model.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from casework.cases import CATEGORIES
from casework.triage import category_of
from jmt import paths
from jmt.train import rasa_bin, train

logger = logging.getLogger(__name__)

TARGETS = {"macro_f1": 0.92, "recall:emergency": 0.98, "recall:fraud_suspicion": 0.95}


@dataclass(frozen=True)
class Prediction:
    text: str
    expected: str  # category
    predicted: str  # category
    intent_expected: str
    intent_predicted: str
    confidence: float


def run_rasa_test(model: Path, heldout: Path, out: Path) -> None:
    command = [
        rasa_bin(),
        "test",
        "nlu",
        "--model",
        str(model),
        "--nlu",
        str(heldout),
        "--out",
        str(out),
        "--successes",
    ]
    subprocess.run(command, check=True, cwd=paths.REPO_ROOT)


def load_predictions(out: Path) -> list[Prediction]:
    rows = []
    for name in ("intent_successes.json", "intent_errors.json"):
        file = out / name
        if not file.exists():
            continue
        for row in json.loads(file.read_text(encoding="utf-8")):
            predicted = row.get("intent_prediction") or {}
            rows.append(
                Prediction(
                    text=row["text"],
                    expected=category_of(row["intent"]),
                    predicted=category_of(predicted.get("name")),
                    intent_expected=row["intent"],
                    intent_predicted=str(predicted.get("name")),
                    confidence=float(predicted.get("confidence") or 0.0),
                )
            )
    return rows


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


def check_targets(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float | bool]]:
    macro = sum(s["f1"] for s in scores.values()) / len(scores)
    measured = {
        "macro_f1": macro,
        "recall:emergency": scores["emergency"]["recall"],
        "recall:fraud_suspicion": scores["fraud_suspicion"]["recall"],
    }
    return {
        name: {"value": measured[name], "target": target, "met": measured[name] >= target}
        for name, target in TARGETS.items()
    }


def plot_confusion(predictions: list[Prediction], file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = Counter((p.expected, p.predicted) for p in predictions)
    matrix = [[counts[(e, p)] for p in CATEGORIES] for e in CATEGORIES]
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(CATEGORIES)), CATEGORIES, rotation=45, ha="right")
    ax.set_yticks(range(len(CATEGORIES)), CATEGORIES)
    ax.set_xlabel("predicted category")
    ax.set_ylabel("expected category")
    ax.set_title("Triage confusion matrix (held-out set)")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                ax.text(
                    j,
                    i,
                    str(value),
                    ha="center",
                    va="center",
                    color="white" if value > max(map(max, matrix)) / 2 else "black",
                )
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)


def markdown(scores: dict, targets: dict, predictions: list[Prediction], model: str) -> str:
    lines = [
        f"# Triage evaluation — model `{model}`",
        "",
        f"Held-out set: `{paths.HELDOUT.relative_to(paths.REPO_ROOT)}`, "
        f"{len(predictions)} messages.",
        "",
        "| category | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for category, s in scores.items():
        lines.append(
            f"| {category} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} "
            f"| {s['support']:.0f} |"
        )
    lines += ["", "| target | value | required | met |", "|---|---|---|---|"]
    for name, t in targets.items():
        lines.append(
            f"| {name} | {t['value']:.3f} | ≥ {t['target']} | {'yes' if t['met'] else 'NO'} |"
        )
    errors = [p for p in predictions if p.expected != p.predicted]
    lines += [
        "",
        f"## Misclassified ({len(errors)})",
        "",
        "| text | expected | predicted (intent, confidence) |",
        "|---|---|---|",
    ]
    for p in sorted(errors, key=lambda p: (p.expected, p.text)):
        text = p.text.replace("|", "\\|")
        lines.append(
            f"| {text} | {p.expected} | {p.predicted} ({p.intent_predicted}, {p.confidence:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def evaluate(model: Path, heldout: Path, reports: Path) -> dict:
    rasa_out = reports / "nlu"
    run_rasa_test(model, heldout, rasa_out)
    predictions = load_predictions(rasa_out)
    if not predictions:
        raise SystemExit(f"no predictions found in {rasa_out}")
    scores = category_scores(predictions)
    targets = check_targets(scores)
    report = {
        "model": model.name,
        "examples": len(predictions),
        "categories": scores,
        "targets": targets,
    }
    (reports / "triage_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (reports / "triage_report.md").write_text(markdown(scores, targets, predictions, model.name))
    plot_confusion(predictions, reports / "triage_confusion_matrix.png")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="model to evaluate (default: train/cached)")
    parser.add_argument("--heldout", type=Path, default=paths.HELDOUT)
    parser.add_argument("--out", type=Path, default=paths.REPORTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = args.model or train()
    args.out.mkdir(parents=True, exist_ok=True)
    report = evaluate(model, args.heldout, args.out)
    for category, s in report["categories"].items():
        logger.info(
            "%-16s P %.3f  R %.3f  F1 %.3f  (n=%d)",
            category,
            s["precision"],
            s["recall"],
            s["f1"],
            s["support"],
        )
    for name, t in report["targets"].items():
        logger.info(
            "%-24s %.3f (target ≥ %s) %s",
            name,
            t["value"],
            t["target"],
            "ok" if t["met"] else "MISSED",
        )
    logger.info("reports written to %s", args.out)
    if not all(t["met"] for t in report["targets"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
