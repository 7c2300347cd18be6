# ServicePulse developer commands. `make up` and `make test` work on a fresh machine:
# they install what is missing (Debian packages, a virtualenv, the Kafka jars) first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SP := $(VENV)/bin/servicepulse
APT_PACKAGES := prometheus prometheus-alertmanager kcat chromium
PYTEST_ARGS ?=

.PHONY: help setup deps-system deps-python deps-kafka up demo down status test test-fast test-busy reliability reliability-long lint format typecheck ci bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | column -t -s $$'\t'

setup: deps-system deps-python deps-kafka  ## install everything (Debian packages, venv, Kafka jars)

deps-system:  ## Debian packages: Prometheus (+promtool), Alertmanager, kcat, Chromium (web tests)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v java >/dev/null || { echo "a JDK 17+ is required (java not on PATH)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required (mvn not on PATH)"; exit 1; }

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

deps-python: $(VENV)/.installed  ## virtualenv with the project and its dev tools

deps-kafka: deps-python  ## Apache Kafka broker jars from Maven Central into ~/.cache/servicepulse
	$(SP) kafka fetch

up: setup  ## start the local stack with demo traffic (Kafka, processors, API, Prometheus, simulator)
	$(SP) up --demo

demo: up

down:  ## stop the local stack
	$(SP) down

status:  ## what runs where
	$(SP) status

test: setup  ## the whole test suite against a real Kafka broker and a real Prometheus
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: deps-python  ## unit tests only: no broker, nothing marked slow (under 60 s)
	$(VENV)/bin/pytest -m "not integration and not reliability and not slow" $(PYTEST_ARGS)

test-busy: setup  ## make test beside 4 CPU burners, BUSY_ARGS="--runs 3" (stops at the first failure)
	$(PY) scripts/busy_test.py --pytest-args "$(PYTEST_ARGS)" $(BUSY_ARGS)

reliability: setup  ## reliability suite, short form (~4-6 min): faults, bad input, 2-minute soak, overload
	$(VENV)/bin/pytest -m reliability tests/reliability $(PYTEST_ARGS)

reliability-long: setup  ## reliability suite, long form (~16-20 min): 10-minute soak, bigger streams, more faults
	SERVICEPULSE_RELIABILITY=long $(VENV)/bin/pytest -m reliability tests/reliability $(PYTEST_ARGS)

lint: deps-python  ## ruff, formatting, import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(SP) dashboards check

format: deps-python
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: deps-python  ## mypy strict on every package (contract ... api, dashboards, servicepulse, bench)
	$(VENV)/bin/mypy

ci: setup lint typecheck test  ## what .ci/run does

bench: setup  ## benchmarks (see docs/BENCHMARKS.md); adds the benchmark-only peer (Quix Streams)
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	$(SP) bench

clean:
	rm -rf $(VENV) .servicepulse .pytest_cache .mypy_cache .ruff_cache
