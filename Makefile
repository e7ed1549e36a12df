# Two commands do all set-up on a fresh machine with Python 3.11 and make:
#   make run    install into .venv, migrate the SQLite database under var/, load the demo, serve
#               the broker with the demo sources and the self-care app (sign-ins are printed)
#   make test   install into .venv, run ruff, mypy --strict and pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo test lint typecheck pytest install clean bench fuzz soak

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

# The benchmarks of tests/benchmarks; each prints its figures and rewrites its own section of
# docs/performance.md: the audit log beside pymerkle, enforced release against a bare
# passthrough, token issuance against the oidc-provider npm package (needs node and npm;
# installed under var/bench), decision latency with 1,000,000 consents. pymerkle and py-spy
# (which profiles the broker) are benchmark-only tools, not project dependencies. Set
# BROKER_TEST_POSTGRES_URL to include PostgreSQL; BENCH_SECONDS (default 10) is the time of
# each measured cell. Takes about half an hour.
bench: $(STAMP)
	$(BIN)/python -c 'import pymerkle' 2>/dev/null || $(BIN)/python -m pip install --quiet 'pymerkle==7.0.0'
	test -x $(BIN)/py-spy || $(BIN)/python -m pip install --quiet 'py-spy==0.4.3'
	$(BIN)/python -m tests.benchmarks.bench_log --write docs/performance.md
	$(BIN)/python -m tests.benchmarks.bench_release --write --profile
	$(BIN)/python -m tests.benchmarks.bench_tokens --write --profile
	$(BIN)/python -m tests.benchmarks.bench_decisions --write

# The demo stack under a steady mixed load for 10 minutes (SOAK_SECONDS to change): fails on any
# error, any release without its log entry, or growing memory; rewrites the soak section of
# docs/performance.md.
soak: $(STAMP)
	$(BIN)/python -m tests.benchmarks.soak --write

# Schemathesis over the broker's OpenAPI with 500 examples per operation and caller, instead of
# CI's few (tests/broker/api/test_openapi_fuzz.py). Takes several minutes.
fuzz: $(STAMP)
	BROKER_FUZZ_EXAMPLES=500 $(BIN)/python -m pytest tests/broker/api/test_openapi_fuzz.py -s -q

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .hypothesis
