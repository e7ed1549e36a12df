# Two commands do all set-up on a fresh machine with Python 3.11 and make:
#   make run    install into .venv, migrate the SQLite database under var/, load the demo, serve
#               the broker with the demo sources and the self-care app (sign-ins are printed)
#   make test   install into .venv, run ruff, mypy --strict and pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo test lint typecheck pytest install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/broker db upgrade
	$(BIN)/broker catalogue load --demo
	$(BIN)/broker demo serve

# The whole story over real HTTP on free ports, step by step; non-zero exit if a step fails.
demo: $(STAMP)
	$(BIN)/broker demo walk

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

# The audit log benchmark beside pymerkle (a benchmark-only tool, not a project dependency);
# prints the figures and rewrites docs/performance.md. Set BROKER_TEST_POSTGRES_URL to include
# PostgreSQL. Takes a few minutes.
bench: $(STAMP)
	$(BIN)/python -c 'import pymerkle' 2>/dev/null || $(BIN)/python -m pip install --quiet 'pymerkle==7.0.0'
	$(BIN)/python -m tests.benchmarks.bench_log --write docs/performance.md

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .hypothesis
