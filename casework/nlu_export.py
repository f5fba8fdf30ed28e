"""Export the trainers' annotations into the training data, in Rasa 3 YAML.

- Annotated, not yet exported examples go to ``nlu_data/intents/inbox.yml`` (and
  ``nlu_data/faq/inbox.yml`` for ``faq/<topic>``), merged with what those files already
  hold, sorted by intent and then text, so a diff shows only what was added.
- Texts are the masked texts the trainer saw (see :mod:`casework.nlu_inbox`); entity spans
  are written as ``[text](entity)``. Square brackets and line breaks in a resident's text
  are replaced one-for-one (``［``, ``］``, a space) so they cannot be read as markup.
- Two texts are "the same" when they are equal after removing fillers and punctuation
  (the rule of ``tests/unit/test_nlu_data.py``). The same text under the same intent is a
  duplicate: not written again, the annotation counts as exported. The same text under a
  *different* intent — within the batch, in the inbox files or in any other training file
  — is a conflict: reported, not written, and the annotation stays in the inbox until a
  trainer re-annotates or discards it. A text of the held-out test set
  (``tests/nlu/heldout.yml``) is never written; it is reported and stays in the inbox.
- Provenance: every export that writes something appends a line to
  ``nlu_data/SOURCES.md`` under "NLU inbox exports" (UTC time, who, how many, which
  message ids), and the export is audited (``nlu_export``).

Files are written before the annotations are marked exported; if the database commit then
fails, the next export finds the examples already there and counts them as duplicates.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.audit import record as audit
from casework.handling import officer_name
from casework.models import User, utcnow
from casework.nlu_inbox import NluAnnotation, check_role
from casework.settings import REPO_ROOT

NLU_DATA = REPO_ROOT / "nlu_data"
HELDOUT = REPO_ROOT / "tests" / "nlu" / "heldout.yml"
INBOX_FILES = {"intents": Path("intents") / "inbox.yml", "faq": Path("faq") / "inbox.yml"}
FILLERS = re.compile(r"[啊呀呢吧了的哦嘛\s,，.。!！?？~～、…]|请问|你好|您好|麻烦|一下")
CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
MARKUP = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\{[^}]*\})")
PROVENANCE_HEADING = "## NLU inbox exports"


def normalise(text: str) -> str:
    return FILLERS.sub("", text).lower()


def plain(example: str) -> str:
    """The text of a Rasa example without entity markup."""
    return MARKUP.sub(r"\1", example)


def read_examples(path: Path) -> list[tuple[str, str]]:
    """(intent, example with markup) of a Rasa NLU YAML file; [] when it does not exist."""
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    pairs = []
    for block in data.get("nlu") or []:
        if not isinstance(block, dict) or "intent" not in block:
            continue
        for line in str(block.get("examples") or "").splitlines():
            line = line.strip()
            if line.startswith("- "):
                pairs.append((str(block["intent"]), line[2:].strip()))
    return pairs


def markup(text: str, entities: list[dict[str, Any]]) -> str:
    """`text` with its entities as [span](entity); brackets and line breaks neutralised."""
    safe = text.replace("[", "［").replace("]", "］")
    safe = CONTROL.sub(" ", safe)  # line breaks, tabs, control characters: one space each
    out, at = [], 0
    for entity in sorted(entities, key=lambda e: e["start"]):
        out.append(safe[at : entity["start"]])
        out.append(f"[{safe[entity['start'] : entity['end']]}]({entity['entity']})")
        at = entity["end"]
    out.append(safe[at:])
    return "".join(out).strip()


@dataclass
class ExportResult:
    written: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    heldout: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "heldout": self.heldout,
            "files": self.files,
            "count": len(self.written),
        }

    def lines(self) -> list[str]:
        """A trainer-readable report (the CLI prints it)."""
        lines = [f"导出 {len(self.written)} 条：{', '.join(self.files) or '无文件变更'}"]
        for item in self.written:
            lines.append(f"  + #{item['message_id']} {item['intent']}: {item['text']}")
        for item in self.duplicates:
            lines.append(
                f"  = 重复（未重复写入）#{item['message_id']} {item['intent']}: {item['text']}"
            )
        for item in self.heldout:
            lines.append(f"  ! 属于留出测试集，拒绝导出 #{item['message_id']}: {item['text']}")
        for item in self.conflicts:
            others = "；".join(
                f"{o['intent']}「{o['text']}」（{o['source']}）" for o in item["with"]
            )
            lines.append(
                f"  ✗ 冲突，留在收件箱 #{item['message_id']} {item['intent']}: {item['text']} "
                f"⇄ {others}"
            )
        return lines


def _write(path: Path, examples: dict[str, set[str]], note: str) -> None:
    lines = [
        f"# {note}",
        "# Written by `jmt nlu export` / POST /api/nlu/export from the trainers' NLU inbox",
        "# (masked resident messages). Sorted by intent, then text; edit with care.",
        'version: "3.1"',
        "nlu:",
    ]
    for intent in sorted(examples):
        lines.append(f"- intent: {intent}")
        lines.append("  examples: |")
        for example in sorted(examples[intent], key=lambda e: (plain(e), e)):
            lines.append(f"    - {example}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def who(user: User | None) -> str:
    if user is None:
        return f"{getpass.getuser()} (jmt nlu export)"
    return f"{officer_name(user)} ({user.username})"


def _provenance(
    nlu_dir: Path, user: User | None, written: list[dict[str, Any]], now: datetime
) -> None:
    path = nlu_dir / "SOURCES.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Where the examples came from\n"
    if PROVENANCE_HEADING not in text:
        text = text.rstrip("\n") + (
            f"\n\n{PROVENANCE_HEADING}\n\n"
            "`intents/inbox.yml` and `faq/inbox.yml`: masked resident messages curated in the "
            "NLU inbox; one line per export (UTC, trainer, examples, message ids).\n\n"
        )
    ids = ", ".join(f"#{item['message_id']}" for item in written)
    line = f"- {now:%Y-%m-%d %H:%M} UTC · {who(user)} · {len(written)} examples · messages {ids}\n"
    path.write_text(text.rstrip("\n") + "\n" + line, encoding="utf-8")


def export(
    *,
    session: Session,
    user: User | None,
    nlu_dir: Path | None = None,
    heldout: Path | None = None,
) -> ExportResult:
    """Write what trainers annotated into `nlu_dir` (default: the repository's nlu_data/)."""
    check_role(user)
    nlu_dir = nlu_dir or NLU_DATA
    heldout = heldout or HELDOUT
    now = utcnow()
    result = ExportResult()
    inbox_paths = {part: nlu_dir / rel for part, rel in INBOX_FILES.items()}
    # everything training reads, except our own files: key → [(intent, text, source)]
    known: dict[str, list[tuple[str, str, str]]] = {}
    for folder in ("intents", "faq"):
        for file in sorted((nlu_dir / folder).rglob("*.yml")):
            source = str(file.relative_to(nlu_dir))
            for intent, example in read_examples(file):
                text = plain(example)
                known.setdefault(normalise(text), []).append((intent, text, source))
    # the inbox files' current content, to merge into
    merged: dict[str, dict[str, set[str]]] = {part: {} for part in inbox_paths}
    for part, path in inbox_paths.items():
        for intent, example in read_examples(path):
            merged[part].setdefault(intent, set()).add(example)
    unseen = {normalise(plain(example)) for _, example in read_examples(heldout)}

    pending = list(
        session.execute(
            select(NluAnnotation)
            .where(NluAnnotation.status == "annotated", NluAnnotation.exported_at.is_(None))
            .order_by(NluAnnotation.id)
        ).scalars()
    )
    batch: dict[str, list[tuple[NluAnnotation, str]]] = {}
    for row in pending:
        example = markup(row.text, row.entities or [])
        batch.setdefault(normalise(plain(example)), []).append((row, example))

    exported: list[NluAnnotation] = []
    for key, group in batch.items():
        items = [
            {"message_id": row.message_id, "intent": row.intent, "text": plain(ex)}
            for row, ex in group
        ]
        if key in unseen:
            result.heldout.extend(items)
            continue
        intents_here = {row.intent for row, _ in group}
        others = [(i, t, s) for i, t, s in known.get(key, []) if i not in intents_here]
        if len(intents_here) > 1 or others:
            for item in items:
                clash = [
                    {
                        "intent": o["intent"],
                        "text": o["text"],
                        "source": f"收件箱 #{o['message_id']}",
                    }
                    for o in items
                    if o["intent"] != item["intent"]
                ]
                clash += [
                    {"intent": i, "text": t, "source": s}
                    for i, t, s in known.get(key, [])
                    if i != item["intent"]
                ]
                result.conflicts.append({**item, "with": clash})
            continue
        row, example = group[0]
        intent = str(row.intent)
        if key in known:  # already taught under this intent
            result.duplicates.extend(items)
        else:
            part = "faq" if intent.startswith("faq/") else "intents"
            merged[part].setdefault(intent, set()).add(example)
            result.written.append(items[0])
            result.duplicates.extend(items[1:])
            known[key] = [(intent, plain(example), str(INBOX_FILES[part]))]
        exported.extend(r for r, _ in group)

    for part, path in inbox_paths.items():
        if any(item["intent"].startswith("faq/") == (part == "faq") for item in result.written):
            note = (
                "FAQ paraphrases (faq/<topic>) from the NLU inbox"
                if part == "faq"
                else "Intent examples from the NLU inbox"
            )
            _write(path, merged[part], note)
            result.files.append(str(INBOX_FILES[part]))
    if result.written:
        _provenance(nlu_dir, user, result.written, now)
    for row in exported:
        row.exported_at = now
    audit(
        session,
        user,
        "nlu_export",
        "nlu",
        None,
        written=len(result.written),
        duplicates=len(result.duplicates),
        conflicts=len(result.conflicts),
        heldout=len(result.heldout),
        by=who(user),
    )
    return result
