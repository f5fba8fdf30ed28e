"""`rasa data validate`, strict: any warning fails, except utterances that code sends.

Rasa warns about every response no story or rule mentions, but many of ours are sent by
custom actions (`dispatcher.utter_message(response=...)`) or asked by forms
(`utter_ask_<slot>`). Those are allowed only when the code really uses them; every other
warning fails the check.
"""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from actions.fallback import AFFIRMABLE_INTENTS
from actions.forms import FRAUD_RESPONSE_KEYS, LEGAL_RESPONSE_KEYS
from jmt import paths
from jmt.train import rasa_bin

UNUSED = re.compile(r"The utterance '(utter_[\w/]+)' is not used in any story or rule")
WARNING = re.compile(r"UserWarning: (.*)")
RASA_BUILT_INS = {"utter_default", "utter_ask_rephrase"}  # used by Rasa's fallback actions
# Rasa 3.6 merges the retrieval intent found in the NLU data (faq/<topic>) into a domain
# that already declares it and then reports that merge as a duplicate; nothing is wrong.
KNOWN_FALSE_ALARMS = {
    "The following duplicated intents have been found across multiple domain files: faq"
}


def utterances_sent_by_code() -> set[str]:
    source = "\n".join(
        p.read_text(encoding="utf-8") for p in (paths.REPO_ROOT / "actions").glob("*.py")
    )
    sent = set(re.findall(r"\"(utter_\w+)\"", source))
    sent |= {f"utter_dissuade_{key}" for key in [*FRAUD_RESPONSE_KEYS.values(), "general"]}
    sent |= {f"utter_legal_guidance_{key}" for key in [*LEGAL_RESPONSE_KEYS.values(), "general"]}
    sent |= {f"utter_ask_affirmation_{intent}" for intent in AFFIRMABLE_INTENTS}
    return sent | RASA_BUILT_INS


def form_questions() -> set[str]:
    questions = set()
    for file in paths.DOMAIN.glob("*.yml"):
        forms = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("forms") or {}
        for form, spec in forms.items():
            for slot in spec.get("required_slots", []):
                questions |= {f"utter_ask_{slot}", f"utter_ask_{form}_{slot}"}
    return questions


def main() -> None:
    command = [
        rasa_bin(),
        "data",
        "validate",
        "--config",
        str(paths.CONFIG),
        "--domain",
        str(paths.DOMAIN),
        "--data",
        *map(str, paths.TRAINING_DATA),
    ]
    result = subprocess.run(command, cwd=paths.REPO_ROOT, capture_output=True, text=True)
    output = result.stdout + result.stderr
    allowed = utterances_sent_by_code() | form_questions()
    problems = []
    for line in output.splitlines():
        warning = WARNING.search(line)
        if not warning or "DeprecationWarning" in line:
            continue
        unused = UNUSED.search(line)
        if (unused and unused.group(1) in allowed) or warning.group(
            1
        ).strip() in KNOWN_FALSE_ALARMS:
            continue
        problems.append(warning.group(1))
    if result.returncode != 0:
        sys.stderr.write(output)
        sys.exit(f"rasa data validate failed (exit {result.returncode})")
    if problems:
        sys.exit("rasa data validate warned:\n  " + "\n  ".join(problems))
    sys.stdout.write("rasa data validate: no problems\n")


if __name__ == "__main__":
    main()
