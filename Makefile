# YADTQ: `make run` starts a cluster from yadtq.yaml, `make test` runs the tests.
# Both install what they need (a virtualenv in .venv, Kafka, Redis) on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= yadtq.yaml
PYTEST_ARGS ?=
CHAOS_ARGS ?=

.PHONY: help install services services-down services-status run test unit chaos lint format clean

help:
	@echo "make run            install, start Kafka and Redis if needed, run the cluster from $(CONFIG)"
	@echo "make test           install, start Kafka and Redis if needed, run all tests"
	@echo "make unit           the unit tests only (no services needed)"
	@echo "make chaos          kill workers and the scheduler while tasks run; CHAOS_ARGS='--tasks 20000'"
	@echo "make lint           ruff and mypy"
	@echo "make services       start local Kafka and Redis (idempotent); make services-down stops them"

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

services: install
	@eval "$$($(PY) scripts/addresses.py $(CONFIG))" && scripts/services.sh up

services-down:
	@scripts/services.sh down

services-status: install
	@eval "$$($(PY) scripts/addresses.py $(CONFIG))" && scripts/services.sh status

run: services
	$(PY) -m supervisor $(CONFIG)

test: services
	$(PY) -m pytest $(PYTEST_ARGS)

chaos: services
	$(PY) -m scripts.chaos --config $(CONFIG) $(CHAOS_ARGS)

unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check client worker_pool supervisor tests scripts
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix client worker_pool supervisor tests scripts

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
