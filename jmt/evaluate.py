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
import shutil
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


def summarise(model: Path, predictions: list[Prediction]) -> dict:
    """The triage report of one model: per-category scores and the targets."""
    scores = category_scores(predictions)
    return {
        "model": model.name,
        "examples": len(predictions),
        "categories": scores,
        "targets": check_targets(scores),
    }


def evaluate(model: Path, heldout: Path, reports: Path) -> dict:
    rasa_out = reports / "nlu"
    run_rasa_test(model, heldout, rasa_out)
    predictions = load_predictions(rasa_out)
    if not predictions:
        raise SystemExit(f"no predictions found in {rasa_out}")
    report = summarise(model, predictions)
    scores, targets = report["categories"], report["targets"]
    (reports / "triage_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (reports / "triage_report.md").write_text(markdown(scores, targets, predictions, model.name))
    plot_confusion(predictions, reports / "triage_confusion_matrix.png")
    return report


# --- Candidate vs live (`jmt nlu evaluate --compare`; the gate is run by jmt/model.py) ---

COMPARE_REPORTS = paths.REPORTS / "compare"
MAX_MACRO_F1_DROP = 0.005
RECALL_NEVER_DROPS = ("emergency", "fraud_suspicion")
_EPSILON = 1e-9  # equal counts give equal floats; this only absorbs rounding noise


@dataclass(frozen=True)
class Evaluation:
    """One model's triage report (as `evaluate` writes it) and its predictions."""

    model: Path
    report: dict
    predictions: list[Prediction]

    @property
    def name(self) -> str:
        return self.model.name.removesuffix(".tar.gz")

    @property
    def macro_f1(self) -> float:
        return float(self.report["targets"]["macro_f1"]["value"])

    def score(self, category: str, measure: str) -> float:
        return float(self.report["categories"][category][measure])


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # the failed checks (empty when passed)
    checks: list[str]  # every check with its numbers, for the report


def evaluate_model(model: Path, heldout: Path, reports_root: Path) -> Evaluation:
    """`evaluate` into reports_root/<model>/, keeping the predictions for a comparison."""
    out = reports_root / model.name.removesuffix(".tar.gz")
    shutil.rmtree(out / "nlu", ignore_errors=True)  # no stale intent_errors.json
    out.mkdir(parents=True, exist_ok=True)
    report = evaluate(model, heldout, out)
    return Evaluation(model, report, load_predictions(out / "nlu"))


def gate(candidate: Evaluation, live: Evaluation | None) -> GateResult:
    """The absolute targets hold; against live: macro-F1 drops by at most 0.005 and the
    recall of emergency and fraud_suspicion never drops."""
    checks: list[str] = []
    reasons: list[str] = []

    def check(ok: bool, text: str) -> None:
        checks.append(f"{'pass' if ok else 'FAIL'}: {text}")
        if not ok:
            reasons.append(text)

    for name, t in candidate.report["targets"].items():
        check(bool(t["met"]), f"{name} {t['value']:.3f} (target ≥ {t['target']})")
    if live is not None:
        check(
            candidate.macro_f1 >= live.macro_f1 - MAX_MACRO_F1_DROP - _EPSILON,
            f"macro-F1 {candidate.macro_f1:.3f} vs live {live.macro_f1:.3f} "
            f"(may drop by at most {MAX_MACRO_F1_DROP})",
        )
        for category in RECALL_NEVER_DROPS:
            new, old = candidate.score(category, "recall"), live.score(category, "recall")
            check(
                new >= old - _EPSILON,
                f"{category} recall {new:.3f} vs live {old:.3f} (may never drop)",
            )
    return GateResult(passed=not reasons, reasons=reasons, checks=checks)


Change = tuple[Prediction, Prediction]  # (live, candidate) for one held-out message


def changed_examples(live: Evaluation, candidate: Evaluation) -> tuple[list[Change], list[Change]]:
    """(worse, better): messages whose category was right in live and is wrong in the
    candidate, and the other way round."""
    by_message = {(p.text, p.intent_expected): p for p in live.predictions}
    worse: list[Change] = []
    better: list[Change] = []
    for new in candidate.predictions:
        old = by_message.get((new.text, new.intent_expected))
        if old is None:
            continue
        was_right, is_right = old.expected == old.predicted, new.expected == new.predicted
        if was_right and not is_right:
            worse.append((old, new))
        elif is_right and not was_right:
            better.append((old, new))
    key = lambda change: (change[1].expected, change[1].text)  # noqa: E731
    return sorted(worse, key=key), sorted(better, key=key)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _delta(value: float) -> str:
    return "±0" if abs(value) < 0.0005 else f"{value:+.3f}"


def comparison_markdown(candidate: Evaluation, live: Evaluation | None, result: GateResult) -> str:
    """The side-by-side report a trainer reads (reports/compare/report.md)."""
    verdict = "PASSED" if result.passed else "FAILED"
    live_name = f"`{live.name}`" if live else "none (first model: only the targets apply)"
    lines = [
        f"# Quality gate — candidate `{candidate.name}` vs live {live_name}",
        "",
        f"**Gate {verdict}.**",
        "",
        *[f"- {line}" for line in result.checks],
        "",
        f"Held-out set: {candidate.report['examples']} messages, never trained on.",
        "",
        "## Per category",
        "",
    ]
    measures = ("precision", "recall", "f1")
    if live is None:
        lines += ["| category | support | precision | recall | F1 |", "|---|---|---|---|---|"]
        for category in CATEGORIES:
            values = " | ".join(f"{candidate.score(category, m):.3f}" for m in measures)
            support = candidate.score(category, "support")
            lines.append(f"| {category} | {support:.0f} | {values} |")
        lines.append(f"| **macro-F1** | | | | {candidate.macro_f1:.3f} |")
    else:
        header = " | ".join(f"{m} live | {m} cand. | Δ" for m in ("P", "R", "F1"))
        lines += [f"| category | support | {header} |", "|---" * 11 + "|"]
        for category in CATEGORIES:
            cells = []
            for m in measures:
                old, new = live.score(category, m), candidate.score(category, m)
                cells.append(f"{old:.3f} | {new:.3f} | {_delta(new - old)}")
            support = candidate.score(category, "support")
            lines.append(f"| {category} | {support:.0f} | {' | '.join(cells)} |")
        change = _delta(candidate.macro_f1 - live.macro_f1)
        lines.append(
            f"| **macro-F1** | | | | | | | | {live.macro_f1:.3f} | {candidate.macro_f1:.3f} "
            f"| {change} |"
        )
    lines += ["", "## Triage confusion matrices", ""]
    for label, evaluation in (("live", live), ("candidate", candidate)):
        if evaluation is not None:
            lines.append(
                f"{label} `{evaluation.name}`:\n\n"
                f"![{label}]({evaluation.name}/triage_confusion_matrix.png)\n"
            )
    if live is not None:
        worse, better = changed_examples(live, candidate)
        for title, changes in (
            (f"Worse: right in live, wrong in the candidate ({len(worse)})", worse),
            (f"Better: wrong in live, right in the candidate ({len(better)})", better),
        ):
            lines += [
                f"## {title}",
                "",
                "| text | expected | live (intent, confidence) | candidate (intent, confidence) |",
                "|---|---|---|---|",
            ]
            for was, now in changes:
                lines.append(
                    f"| {_cell(now.text)} | {now.expected} ({now.intent_expected}) "
                    f"| {was.predicted} ({was.intent_predicted}, {was.confidence:.2f}) "
                    f"| {now.predicted} ({now.intent_predicted}, {now.confidence:.2f}) |"
                )
            lines.append("")
    lines.append(
        "Each model's own report (with every misclassified message): "
        + ", ".join(
            f"[{e.name}]({e.name}/triage_report.md)" for e in (live, candidate) if e is not None
        )
    )
    return "\n".join(lines) + "\n"


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
