"""What `make evaluate` writes: one set's triage report, the confusion matrix, and the
summary of every set side by side (`reports/summary.md`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from casework.cases import CATEGORIES
from jmt.scoring import Prediction


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _mark(met: object) -> str:
    return "pass" if met else "FAIL"


def goal_lines(report: dict) -> list[str]:
    """Issue 9's targets of one set, one 'pass/FAIL: …' line each."""
    return [
        f"{_mark(g['met'])}: {g['name']} {g['value']:.3f} (issue 9 target {g['op']} {g['target']})"
        for g in report["goals"]
    ]


def target_lines(report: dict) -> list[str]:
    """The gating targets of one set."""
    return [
        f"{_mark(t['met'])}: {name} {t['value']:.3f} (gating target ≥ {t['target']})"
        for name, t in report["targets"].items()
    ]


def wrong_faq_line(counts: dict) -> str:
    if not counts["messages"]:
        return "no such messages"
    return (
        f"{counts['faq']:.0f} of {counts['messages']:.0f} ({counts['share']:.1%}); "
        f"{counts['below_threshold']:.0f} of them below the fallback threshold"
    )


def markdown(report: dict, predictions: list[Prediction], set_label: str) -> str:
    """One set's triage report: categories, targets, registers, wrong FAQ, every error."""
    lines = [
        f"# Triage evaluation — model `{report['model']}`",
        "",
        f"Evaluation set: {set_label}, {len(predictions)} messages.",
        "",
        "| category | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for category, s in report["categories"].items():
        lines.append(
            f"| {category} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} "
            f"| {s['support']:.0f} |"
        )
    lines += ["", "| target | value | required | met |", "|---|---|---|---|"]
    for name, t in report["targets"].items():
        lines.append(
            f"| {name} | {t['value']:.3f} | ≥ {t['target']} | {'yes' if t['met'] else 'NO'} |"
        )
    lines += ["", "## Issue 9 targets", "", *[f"- {line}" for line in goal_lines(report)]]
    lines += [
        "",
        "## Wrong FAQ: messages of category `other` predicted as an `faq` intent",
        "",
        f"- all of category `other`: {wrong_faq_line(report['wrong_faq']['other'])}",
        f"- intent `out_of_scope`: {wrong_faq_line(report['wrong_faq']['out_of_scope'])}",
        "",
        "## Per register",
        "",
        "| register | examples | accuracy | macro-F1 |",
        "|---|---|---|---|",
    ]
    for register, r in report["registers"].items():
        lines.append(
            f"| {register} | {r['examples']:.0f} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} |"
        )
    errors = [p for p in predictions if p.expected != p.predicted]
    lines += [
        "",
        f"## Misclassified ({len(errors)})",
        "",
        "| text | register | expected | predicted (intent, confidence) |",
        "|---|---|---|---|",
    ]
    for p in sorted(errors, key=lambda p: (p.expected, p.register, p.text)):
        lines.append(
            f"| {_cell(p.text)} | {p.register} | {p.expected} "
            f"| {p.predicted} ({p.intent_predicted}, {p.confidence:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def summary_markdown(model: str, reports: dict[str, dict]) -> str:
    """Every set side by side: the measures, the targets and the registers."""
    names = list(reports)
    header = "| | " + " | ".join(names) + " |"
    rule = "|---" * (len(names) + 1) + "|"

    def row(label: str, cells: list[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [
        f"# NLU evaluation — model `{model}`",
        "",
        "Sets (never trained on), each with its own report listing every misclassified message:",
        "",
        *[f"- [{n}]({n}/triage_report.md): `{reports[n].get('set', '?')}`" for n in names],
        "",
        header,
        rule,
        row("messages", [f"{reports[n]['examples']}" for n in names]),
        row("**macro-F1**", [f"**{reports[n]['macro_f1']:.3f}**" for n in names]),
    ]
    for category in CATEGORIES:
        lines.append(
            row(
                f"F1 {category}",
                [
                    f"{reports[n]['categories'][category]['f1']:.3f} "
                    f"(n={reports[n]['categories'][category]['support']:.0f})"
                    for n in names
                ],
            )
        )
    for category in ("emergency", "fraud_suspicion"):
        lines.append(
            row(
                f"recall {category}",
                [f"{reports[n]['categories'][category]['recall']:.3f}" for n in names],
            )
        )
    for key, label in (("other", "category other"), ("out_of_scope", "intent out_of_scope")):
        cells = []
        for n in names:
            counts = reports[n]["wrong_faq"][key]
            cells.append(
                f"{counts['faq']:.0f}/{counts['messages']:.0f} ({counts['share']:.1%})"
                if counts["messages"]
                else "–"
            )
        lines.append(row(f"wrong FAQ, {label}", cells))
    lines += ["", "## Targets", ""]
    for n in names:
        lines += [f"**{n}**", ""]
        lines += [f"- {line}" for line in target_lines(reports[n]) + goal_lines(reports[n])]
        lines.append("")
    registers = sorted({r for n in names for r in reports[n]["registers"]})
    lines += [
        "## Per register (accuracy / macro-F1, examples)",
        "",
        "| register | " + " | ".join(names) + " |",
        rule,
    ]
    for register in registers:
        cells = []
        for n in names:
            r = reports[n]["registers"].get(register)
            cells.append(
                f"{r['accuracy']:.3f} / {r['macro_f1']:.3f} ({r['examples']:.0f})" if r else "–"
            )
        lines.append(row(register, cells))
    return "\n".join(lines) + "\n"


def plot_confusion(predictions: list[Prediction], file: Path, set_name: str) -> None:
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
    ax.set_title(f"Triage confusion matrix ({set_name})")
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
