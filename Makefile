# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run install dev node postgres image-tools test lint typecheck pytest bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The third-party MCP clients the tests drive (package.json); installed again only
# when the lock file changes.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# PostgreSQL's server binaries, which the store tests start a server of their own
# from (Debian's package); installed only when missing. Needs root or sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null; }

# podman and debootstrap, with which the image test builds the Dockerfile, and its base
# when no registry is reachable (tests/support/image.py); installed only when missing.
# Needs root or sudo.
image-tools:
	@{ command -v podman && command -v debootstrap; } >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq podman debootstrap >/dev/null; }

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

node: node_modules/.installed

run: install
	$(BIN)/sidecar serve

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev
	$(BIN)/mypy

pytest: dev node postgres image-tools
	$(BIN)/pytest

test: lint typecheck pytest

bench: dev
	$(BIN)/python -m tests.bench

# The long forms of the suites `make test` runs short: the load suite's SOAK_CALLS
# mixed calls at concurrency 64 (latencies and RSS printed), and the schemathesis
# fuzz for SOAK_SECONDS (random, every phase).
SOAK_SECONDS ?= 900
SOAK_CALLS ?= 10000
soak: dev node postgres
	SIDECAR_LOAD_CALLS=$(SOAK_CALLS) $(BIN)/pytest -q -s tests/e2e/test_load.py
	SIDECAR_FUZZ_SECONDS=$(SOAK_SECONDS) $(BIN)/pytest -q tests/e2e/test_openapi_fuzz.py

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
