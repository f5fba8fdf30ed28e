"""Where the Rasa project's pieces live, relative to the repository root."""

from __future__ import annotations

from casework.settings import REPO_ROOT

BOT = REPO_ROOT / "bot"
CONFIG = BOT / "config.yml"
DOMAIN = BOT / "domain"
ENDPOINTS = BOT / "endpoints.yml"
CREDENTIALS = BOT / "credentials.yml"
MODELS = BOT / "models"
TEST_STORIES = BOT / "tests"
TRIAGE = BOT / "triage.yml"
NLU_DATA = REPO_ROOT / "nlu_data"
# What training reads: trainers' NLU data and the dialogue data. tests/nlu is never read.
TRAINING_DATA = [NLU_DATA / "intents", NLU_DATA / "faq", NLU_DATA / "entities", BOT / "data"]
JIEBA_DICT = NLU_DATA / "jieba"
# Our own Rasa components: a change to their code must retrain, like a change to the data.
NLU_COMPONENTS = REPO_ROOT / "jmt" / "nlu"
# Evaluation sets (jmt/evalsets.py): every *.yml here, never trained on.
EVALUATION_SETS = REPO_ROOT / "tests" / "nlu"
HELDOUT = EVALUATION_SETS / "heldout.yml"
BLIND = EVALUATION_SETS / "blind.yml"  # written by authors who never saw nlu_data/
REPORTS = REPO_ROOT / "reports"
