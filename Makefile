# Every target creates and reuses .venv on its own; it reinstalls only when pyproject.toml or
# requirements.lock changes. The exact versions come from requirements.lock (`make lock` remakes it).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint format bench screenshots lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)  ## the real nightly job, end to end, against the bundled emulator and sample data
	$(BIN)/aigw-feedback demo

test: $(STAMP)  ## the fast suite, two workers (~75 s on 2 cores): everything but the real-process tests
	$(BIN)/python -m pytest -m "not slow" -n 2

test-all: $(STAMP)  ## the whole suite, slow real-process tests included (what CI runs)
	EXTRACT_EXAMPLES=40 FULL_EXAMPLES=1 $(BIN)/python -m pytest -n 2

lint: $(STAMP)  ## ruff (lint + format check) and mypy --strict on pipeline/
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format pipeline tests bench
	$(BIN)/ruff check --fix pipeline tests bench

bench: $(STAMP)  ## benchmarks: each prints its figures and ratios against a baseline run side by side
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

screenshots: $(STAMP)  ## a week of demo runs, then report.html and the runs page in headless Chromium at 1400 and 390 px, into screenshots/
	$(BIN)/python bench/screenshots.py --out screenshots

lock: $(STAMP)  ## pin the exact versions of pyproject.toml's ranges into requirements.lock
	@test -x $(BIN)/pip-compile || $(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data
