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
HELDOUT = REPO_ROOT / "tests" / "nlu" / "heldout.yml"
REPORTS = REPO_ROOT / "reports"
