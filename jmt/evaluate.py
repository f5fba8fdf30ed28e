"""NLU evaluation on every evaluation set (`make evaluate`).

Runs `rasa test nlu` on each set under `tests/nlu/` (`heldout.yml`, `blind.yml`, any
other `*.yml`; none is ever used for training) and writes, for each set, under
`reports/<set>/`:
- `nlu/` — Rasa's own intent and entity reports and intent confusion matrix;
- `triage_report.json` / `triage_report.md` — per-category precision/recall/F1 through
  `bot/triage.yml`, macro-F1, per-register accuracy and macro-F1, the wrong-FAQ share
  (messages of category `other` that would get an FAQ text), the gating targets and
  issue 9's targets;
- `triage_confusion_matrix.png`;

and `reports/summary.md` with every set side by side.

Exits non-zero when any set misses one of the gating TARGETS, so it can gate a model;
issue 9's targets are reported as pass/fail lines. `--set NAME=PATH` adds or replaces a
set (e.g. a draft blind set outside the repository).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from casework.cases import CATEGORIES
from casework.triage import category_of
from jmt import evalsets, paths
from jmt.evalreport import (
    goal_lines,
    markdown,
    plot_confusion,
    summary_markdown,
    target_lines,
    wrong_faq_line,
)
from jmt.scoring import (
    Prediction,
    category_scores,
    check_goals,
    check_targets,
    macro_f1,
    measures,
    register_scores,
    wrong_faq,
)
from jmt.train import rasa_bin, train

logger = logging.getLogger(__name__)


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


def load_predictions(out: Path, registers: dict[str, str] | None = None) -> list[Prediction]:
    """Rasa's predictions; `registers` (normalised text → register) gives each its register,
    since Rasa's outputs do not keep the examples' metadata."""
    rows = []
    for name in ("intent_successes.json", "intent_errors.json"):
        file = out / name
        if not file.exists():
            continue
        for row in json.loads(file.read_text(encoding="utf-8")):
            predicted = row.get("intent_prediction") or {}
            register = (registers or {}).get(evalsets.normalise(row["text"]))
            rows.append(
                Prediction(
                    text=row["text"],
                    expected=category_of(row["intent"]),
                    predicted=category_of(predicted.get("name")),
                    intent_expected=row["intent"],
                    intent_predicted=str(predicted.get("name")),
                    confidence=float(predicted.get("confidence") or 0.0),
                    register=register or evalsets.UNSPECIFIED,
                )
            )
    return rows


def fallback_threshold(config: Path = paths.CONFIG) -> float | None:
    """The FallbackClassifier's threshold in bot/config.yml, if there is one."""
    pipeline = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("pipeline") or []
    for component in pipeline:
        if component.get("name") == "FallbackClassifier":
            return float(component.get("threshold", 0.3))  # Rasa's default
    return None


def summarise(model: Path, predictions: list[Prediction], threshold: float | None = None) -> dict:
    """The triage report of one model on one set: per-category scores, the gating targets
    (`targets`, what the model gate reads), per register, wrong FAQ and issue 9's goals."""
    scores = category_scores(predictions)
    faq = {
        "other": wrong_faq(predictions, threshold=threshold),
        "out_of_scope": wrong_faq(predictions, intent="out_of_scope", threshold=threshold),
    }
    return {
        "model": model.name,
        "examples": len(predictions),
        "categories": scores,
        "macro_f1": macro_f1(scores),
        "targets": check_targets(scores),
        "registers": register_scores(predictions),
        "wrong_faq": faq,
        "goals": check_goals(measures(scores, faq["other"]["share"])),
    }


def _shown(file: Path) -> str:
    """A set's file as reports show it: relative inside the repository, else absolute."""
    try:
        return str(file.resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(file.resolve())


def evaluate(model: Path, heldout: Path, reports: Path) -> dict:
    """Evaluate `model` on the set `heldout` and write its reports into `reports`."""
    rasa_out = reports / "nlu"
    run_rasa_test(model, heldout, rasa_out)
    registers = evalsets.registers_by_text(evalsets.load_examples(heldout))
    predictions = load_predictions(rasa_out, registers)
    if not predictions:
        raise SystemExit(f"no predictions found in {rasa_out}")
    report = summarise(model, predictions, fallback_threshold())
    report["set"] = _shown(heldout)
    (reports / "triage_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (reports / "triage_report.md").write_text(markdown(report, predictions, f"`{report['set']}`"))
    plot_confusion(predictions, reports / "triage_confusion_matrix.png", heldout.stem)
    return report


def evaluate_sets(model: Path, sets: dict[str, Path], reports_root: Path) -> dict[str, dict]:
    """Every set into reports_root/<name>/, then reports_root/summary.md."""
    reports = {}
    for name, file in sets.items():
        out = reports_root / name
        shutil.rmtree(out / "nlu", ignore_errors=True)  # no stale intent_errors.json
        out.mkdir(parents=True, exist_ok=True)
        logger.info("evaluating %s on %s (%s)", model.name, name, file)
        reports[name] = evaluate(model, file, out)
    summary = summary_markdown(model.name, reports)
    (reports_root / "summary.md").write_text(summary, encoding="utf-8")
    return reports


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


def _sets(args: argparse.Namespace) -> dict[str, Path]:
    sets = evalsets.discover()
    if args.heldout is not None:
        sets["heldout"] = args.heldout
    for option in args.set or []:
        try:
            name, file = evalsets.parse_set_option(option)
        except ValueError as error:
            raise SystemExit(f"--set: {error}") from error
        sets[name] = file
    missing = [str(file) for file in sets.values() if not file.exists()]
    if missing:
        raise SystemExit(f"no such evaluation set: {', '.join(missing)}")
    return sets


def _log(name: str, report: dict) -> None:
    logger.info("== %s: %d messages, macro-F1 %.3f", name, report["examples"], report["macro_f1"])
    for category, s in report["categories"].items():
        logger.info(
            "%-16s P %.3f  R %.3f  F1 %.3f  (n=%d)",
            category,
            s["precision"],
            s["recall"],
            s["f1"],
            s["support"],
        )
    for register, r in report["registers"].items():
        logger.info(
            "register %-16s accuracy %.3f  macro-F1 %.3f  (n=%d)",
            register,
            r["accuracy"],
            r["macro_f1"],
            r["examples"],
        )
    for key in ("other", "out_of_scope"):
        logger.info("wrong FAQ (%s): %s", key, wrong_faq_line(report["wrong_faq"][key]))
    for line in target_lines(report) + goal_lines(report):
        logger.info("%s", line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="model to evaluate (default: train/cached)")
    parser.add_argument("--heldout", type=Path, help="same as --set heldout=PATH")
    parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=PATH",
        help="add or replace an evaluation set (repeatable), e.g. --set blind=/tmp/blind.yml",
    )
    parser.add_argument("--out", type=Path, default=paths.REPORTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sets = _sets(args)
    model = args.model or train()
    args.out.mkdir(parents=True, exist_ok=True)
    reports = evaluate_sets(model, sets, args.out)
    for name, report in reports.items():
        _log(name, report)
    logger.info("reports written to %s (summary: %s)", args.out, args.out / "summary.md")
    missed = [
        f"{name}: {target}"
        for name, report in reports.items()
        for target, t in report["targets"].items()
        if not t["met"]
    ]
    if missed:
        logger.error("gating targets missed: %s", "; ".join(missed))
        sys.exit(1)


if __name__ == "__main__":
    main()
