# The two set-up commands: `make demo` and `make test`. Both create .venv on first use.
# `make package` builds each Cloud Function's deploy package (standard library only, no venv).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench package clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "salesmesh needs Python 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/salesmesh demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 --dist loadfile

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/forecast.py
	$(BIN)/python bench/mesh.py
	$(BIN)/python bench/serve.py --runs 2
	$(BIN)/python bench/rollout.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/gate.py

package:
	$(PYTHON) functions/build.py

clean:
	rm -rf $(VENV) build .salesmesh .pytest_cache .mypy_cache .ruff_cache
