# raftchaos: every target sets itself up idempotently (virtualenv, packages, Toxiproxy).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := .bin
TOXIPROXY_VERSION := v2.12.0
TOXIPROXY_BUILD := $(BIN)/toxiproxy-server-$(TOXIPROXY_VERSION)
TOXIPROXY := $(BIN)/toxiproxy-server
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
RUNS ?= 10
HOG ?= 0
BUDGET_S ?= 1200
DURATION_S ?= 30
SEEDS ?=
MASTER_SEED ?=

.PHONY: all setup docker-setup docker-clean test test-local test-docker lint unit integration suites chaos nightly stability bench bench-etcd etcd-setup clean-runs clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The real Toxiproxy server, pinned and built under a version-stamped name (a new pin builds anew,
# an unchanged one never rebuilds); toxiproxy-server links to it. The module proxy lists versions
# only up to v2.5.0 but serves v2.12.0 by exact version; its go.mod asks for Go 1.23. The ldflags
# stamp the version its API reports (the history records it), instead of the default "git".
$(TOXIPROXY_BUILD):
	@mkdir -p $(BIN)
	GOBIN=$(CURDIR)/$(BIN)/gobin GOFLAGS=-mod=mod go install \
		-ldflags "-X github.com/Shopify/toxiproxy/v2.Version=$(TOXIPROXY_VERSION)" \
		github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	mv $(BIN)/gobin/server $@ && rmdir $(BIN)/gobin

$(TOXIPROXY): $(TOXIPROXY_BUILD)
	ln -sfn $(notdir $(TOXIPROXY_BUILD)) $@

setup: $(STAMP) $(TOXIPROXY)

lint: setup
	$(VENV)/bin/ruff check nodes harness faults reports suites tests benchmarks
	$(VENV)/bin/mypy nodes harness faults reports suites
	$(VENV)/bin/lint-imports

unit: setup
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

integration: setup etcd-setup
	$(PY) -m pytest tests/integration -q $(PYTEST_ARGS)

suites: setup
	$(PY) -m pytest suites -q $(PYTEST_ARGS)

# The Docker daemon (as root: installs docker.io and starts dockerd) and the three images, plus the etcd
# image (the base image and the host's /usr/bin/etcd) where etcd-setup installed etcd; idempotent.
docker-setup: setup etcd-setup
	$(PY) -m harness.docker setup

# Every raftchaos-labelled Docker leftover of dead runs, and local processes of dead runs.
docker-clean: setup
	$(VENV)/bin/raftchaos clean

# The project's own tests and the chaos suites on the local backend, then on Docker: the Docker tests and
# the suites' docker_subset on --backend docker. Without a daemon that can be started (not root, no apt),
# docker-setup says why and the Docker tests skip with that reason.
test: lint test-local test-docker

# The etcd subset: the recovery suite against a real 3-member etcd (--system etcd; skipped with the
# reason where etcd-setup could not install it).
test-local: setup etcd-setup
	$(PY) -m pytest tests suites -q -m 'not docker' $(PYTEST_ARGS)
	$(PY) -m pytest suites -q --system etcd -m 'recovery and not kuduraft_only' $(PYTEST_ARGS)

test-docker: setup
	@rc=0; $(PY) -m harness.docker setup || rc=$$?; \
	if [ $$rc -eq 3 ]; then \
	  $(PY) -m pytest tests/docker -q -rs -m docker $(PYTEST_ARGS) && \
	  echo "no Docker daemon here: the suites' docker_subset is skipped"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; \
	else \
	  $(PY) -m pytest tests/docker -q -m docker $(PYTEST_ARGS) && \
	  $(PY) -m pytest suites -q --backend docker -m docker_subset $(PYTEST_ARGS); \
	fi

# The main job: the chaos suites on the local-process backend, with the rich report; every run directory
# (history, verdicts, report.html) is kept so the summary links each test's HTML report. Strict: a test
# whose verdict is unknown (the harness could not exercise or observe it) fails the nightly run.
chaos: setup
	$(PY) -m pytest suites -q --backend local --keep-runs --raftchaos-strict $(PYTEST_ARGS)

# The nightly exploration (CI's nightly job, after `make chaos`): the nemesis families in turn over seeds
# drawn from one printed master seed, schedules DURATION_S long, until BUDGET_S of wall clock is used
# (SEEDS caps the number of runs; MASTER_SEED replays the seed choice). Each run is a strict pytest run
# of suites/test_nemesis.py; the end shows runs per family and verdict and the replay command of every
# run that was not valid. Exit 0 all valid, 1 any invalid, 2 only unknowns.
nightly: setup
	$(PY) benchmarks/nightly.py --budget-s $(BUDGET_S) --duration-s $(DURATION_S) $(if $(SEEDS),--seeds $(SEEDS)) \
	  $(if $(MASTER_SEED),--master-seed $(MASTER_SEED)) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

# A benchmark, not a CI step: `pytest suites` RUNS times (HOG=1: with a busy loop pinned to one CPU),
# per-test pass / fail / unknown / skipped counts and the seeds of every failure and unknown.
stability: setup
	$(PY) benchmarks/suite_stability.py --runs $(RUNS) $(if $(filter 1,$(HOG)),--hog) -- $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/node_throughput.py

# Debian's etcd-server (3.4.x) for the side-by-side benchmark and the etcd suites; non-fatal:
# without root or apt the benchmark says etcd is missing and exits 3. Its systemd unit is unused.
etcd-setup:
	@command -v etcd >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server; } || \
	  echo "etcd-setup: could not install etcd-server (needs root and apt-get); etcd benchmarks will skip"

bench-etcd: setup etcd-setup
	$(PY) benchmarks/node_vs_etcd.py

clean-runs:
	rm -rf .raftchaos/runs

clean:
	rm -rf $(VENV) $(BIN) .raftchaos
