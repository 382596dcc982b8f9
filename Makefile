# Every target creates and reuses .venv on its own; it reinstalls only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## the real nightly job, end to end, against the bundled emulator and sample data
	$(BIN)/aigw-feedback demo

test: $(STAMP)  ## the test suite
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff (lint + format check) and mypy --strict on pipeline/
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format pipeline tests bench
	$(BIN)/ruff check --fix pipeline tests bench

bench: $(STAMP)  ## benchmarks: each prints its figures and ratios against a baseline run side by side
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data
