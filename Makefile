# raftchaos: every target sets itself up idempotently (virtualenv, packages, Toxiproxy).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := .bin
TOXIPROXY_VERSION := v2.5.0
TOXIPROXY := $(BIN)/toxiproxy-server
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all setup test lint unit integration suites chaos bench clean-runs clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The real Toxiproxy server, pinned; go.mod of v2.5.0 asks for Go 1.17, so no toolchain download.
$(TOXIPROXY):
	@mkdir -p $(BIN)
	GOBIN=$(CURDIR)/$(BIN)/gobin GOFLAGS=-mod=mod go install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	mv $(BIN)/gobin/server $(TOXIPROXY) && rmdir $(BIN)/gobin

setup: $(STAMP) $(TOXIPROXY)

lint: setup
	$(VENV)/bin/ruff check nodes harness faults reports suites tests benchmarks
	$(VENV)/bin/mypy nodes
	$(VENV)/bin/lint-imports

unit: setup
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest tests/integration -q $(PYTEST_ARGS)

suites: setup
	$(PY) -m pytest suites -q $(PYTEST_ARGS)

# The project's own tests, then the chaos suites on the local backend.
test: lint
	$(PY) -m pytest tests suites -q -m 'not docker' $(PYTEST_ARGS)

# The main job: the chaos suites on the local-process backend, with the rich report.
chaos: setup
	$(PY) -m pytest suites -q --backend local $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/node_throughput.py

clean-runs:
	rm -rf .raftchaos/runs

clean:
	rm -rf $(VENV) $(BIN) .raftchaos
