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

# checkov in a virtualenv of its own: it pins an HCL parser that shadows python-hcl2
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): tests/terraform/requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r tests/terraform/requirements-checkov.txt
	@touch $(CHECKOV_STAMP)

demo: $(STAMP)
	$(BIN)/salesmesh demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The two virtualenvs install side by side (each mostly waits on pip), then lint, then pytest:
# three workers (most tests wait on servers, emulators and canaries), a file at a time each, in
# the order tests/conftest.py gives (slowest first; xdist's own reorder would put the long
# one-test files last, where a worker runs them alone)
test:
	$(MAKE) --no-print-directory -j2 $(STAMP) $(CHECKOV_STAMP)
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder

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
	$(BIN)/python bench/functions.py

package:
	$(PYTHON) functions/build.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build .salesmesh .pytest_cache .mypy_cache .ruff_cache
