# Two commands on a fresh machine:  `make run` (the whole DVC pipeline on the embedded synthetic
# data) and `make test` (lint + every test, as CI runs it). Both create .venv and install
# everything first. `make test-fast` is the inner loop: it skips the slow and integration tiers.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp

.PHONY: run test test-fast test-all lint install server clean-outputs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,team,onnx]'
	@$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# A team MLflow tracking server on an embedded PostgreSQL (Ctrl-C stops it cleanly).
# Options: make server SERVER_ARGS="--host 0.0.0.0 --port 5000 --artifacts-destination s3://b/p"
server: $(STAMP)
	$(BIN)/ddhpose server $(SERVER_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration"

test-all: test

clean-outputs:
	rm -rf data/raw data/processed models/*.pt reports/predictions
