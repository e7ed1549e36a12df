# Two commands do all set-up on a fresh machine with Python 3.11 and make:
#   make run    install into .venv, migrate the SQLite database under var/, load the demo, serve
#   make test   install into .venv, run ruff, mypy --strict and pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/broker db upgrade
	$(BIN)/broker catalogue load --demo
	$(BIN)/broker serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .hypothesis
