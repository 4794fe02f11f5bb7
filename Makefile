# YADTQ: `make run` starts a cluster from yadtq.yaml, `make test` runs the tests,
# `make bench` runs the benchmark (docs/BENCHMARKS.md).
# They install what they need (virtualenvs in .venv and .venv-bench, Kafka, Redis) on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= yadtq.yaml
PYTEST_ARGS ?=
CHAOS_ARGS ?=
FUZZ_EXAMPLES ?= 3000
# make test's coverage (docs/TESTING.md, "Coverage"): Python line and branch coverage of every test
# and of the processes they start, then the Lua scripts' lines; COVERAGE= (empty) runs without it.
COVERAGE ?= --cov --cov-report=term --cov-report=html
# One Redis key for the Lua coverage of the whole run, made here so that pytest-xdist's workers
# (and every process they start) count into it from their first import (tests/support/lua_coverage.py).
LUA_COVERAGE_KEY = t$$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n'):lua-coverage
# Test files run in 2 processes (pytest-xdist; a file stays in one): most integration tests wait
# on clusters, heartbeats and timeouts, so two overlap well on 2 cores. TEST_JOBS= runs them in one.
TEST_JOBS ?= -n 2 --dist loadfile
# make mutate-py: the Python files or folders to mutate (default: all of client/, worker_pool/,
# supervisor/, as set in setup.cfg [mutmut]), e.g. MUTATE_PATHS='client/store.py supervisor/'
MUTATE_PATHS ?=
MUTATE_CHILDREN ?= 2
# MUTATE_KEEP=1 keeps mutants/ (results of earlier narrowed runs are kept, the named ones rerun)
MUTATE_KEEP ?=
# make bench: its own virtualenv (YADTQ plus the anchors Celery and Huey, and matplotlib)
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
N ?= 10000
RUNS ?= 3
WORKERS ?= 1,2,4,8
SYSTEMS ?= limit,yadtq,celery,huey
SUBMIT ?= client,raw
NODES ?= 1
KAFKA_BROKERS ?= 1
BENCH_ARGS ?=
# make trace: where one idle round trip's time goes (bench/trace.py)
TRACE_N ?= 200
TRACE_WORKERS ?= 1
TRACE_ARGS ?=
# make mutate-lua: e.g. MUTATE_LUA_ARGS='--only retry.lua --jobs 1'
MUTATE_LUA_ARGS ?=

.PHONY: help install services services-down services-status run test test-brokers unit fuzz chaos lint format clean bench bench-install trace
.PHONY: mutate mutate-py mutate-lua

help:
	@echo "make run            install, start Kafka and Redis if needed, run the cluster from $(CONFIG)"
	@echo "make test           install, start Kafka and Redis if needed, run all tests"
	@echo "                    (with Python and Lua coverage: .coverage-data/html; COVERAGE= without it)"
	@echo "make unit           the unit tests only (no services needed)"
	@echo "make fuzz           the fuzz test with many more messages: FUZZ_EXAMPLES=3000 (make test runs 150)"
	@echo "make chaos          kill workers, the scheduler and the supervisor, restart Redis and Kafka, while tasks run;"
	@echo "                    CHAOS_ARGS='--tasks 20000 --supervisor-kills 3 --redis-restarts 1 --broker-restarts 1'"
	@echo "make mutate         mutation testing (docs/TESTING.md): make mutate-py (mutmut over client/, worker_pool/,"
	@echo "                    supervisor/; MUTATE_PATHS='client/store.py' narrows it), then make mutate-lua"
	@echo "                    (client/lua/*.lua; MUTATE_LUA_ARGS='--only retry.lua:18 --list')"
	@echo "make lint           ruff and mypy"
	@echo "make services       start local Kafka and Redis (idempotent); make services-down stops them;"
	@echo "                    KAFKA_BROKERS=3: a KRaft cluster of 3 brokers on the Kafka port and the 2 after it"
	@echo "make test-brokers   the tests that start a 3-broker Kafka cluster of their own (29092-29094)"
	@echo "make bench          benchmark YADTQ against raw kafka-python, Celery and Huey (docs/BENCHMARKS.md);"
	@echo "                    N=10000 RUNS=3 WORKERS=1,2,4,8 SYSTEMS=limit,yadtq,celery,huey BENCH_ARGS=..."
	@echo "                    SUBMIT=client,raw: YADTQ's tasks from its client and from plain kafka-python"
	@echo "                    NODES=2: also the same workers spread over 2 supervisors (nodes)"
	@echo "make trace          trace TRACE_N=200 idle round trips step by step (W=TRACE_WORKERS=1), then the raw"
	@echo "                    two-hop floor; TRACE_ARGS='--submit raw' produces the tasks with plain kafka-python"

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The dashboard's browser test drives Debian's chromium (installed once, if missing).
install: $(VENV)/.installed
	@scripts/browser.sh

$(BENCH_VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -q --upgrade pip
	$(BENCH_PY) -m pip install -q -e '.[bench]'
	@touch $@

bench-install: $(BENCH_VENV)/.installed

services: install
	@eval "$$($(PY) scripts/addresses.py $(CONFIG))" && YADTQ_KAFKA_BROKERS=$(KAFKA_BROKERS) scripts/services.sh up

services-down:
	@scripts/services.sh down

services-status: install
	@eval "$$($(PY) scripts/addresses.py $(CONFIG))" && scripts/services.sh status

run: services
	$(PY) -m supervisor $(CONFIG)

bench: services bench-install
	$(BENCH_PY) -m bench --n $(N) --runs $(RUNS) --workers $(WORKERS) --systems $(SYSTEMS) --submit $(SUBMIT) --nodes $(NODES) --out bench/results $(BENCH_ARGS)

trace: services bench-install
	$(BENCH_PY) -m bench.trace --n $(TRACE_N) --workers $(TRACE_WORKERS) --out bench/results $(TRACE_ARGS)

test: services
	rm -rf .coverage-data
	YADTQ_LUA_COVERAGE=$(if $(COVERAGE),$(LUA_COVERAGE_KEY),) $(PY) -m pytest -m 'not brokers' $(TEST_JOBS) $(COVERAGE) $(PYTEST_ARGS)

# Tests that start a Kafka cluster of three brokers of their own (29092-29094); .ci/run runs them too.
test-brokers: services
	$(PY) -m pytest -m brokers $(PYTEST_ARGS)

fuzz: services
	YADTQ_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) YADTQ_FUZZ_WAIT=300 $(PY) -m pytest tests/integration/test_fuzz.py $(PYTEST_ARGS)

chaos: services
	$(PY) -m scripts.chaos --config $(CONFIG) $(CHAOS_ARGS)

mutate-lua: services
	$(PY) -m scripts.mutate_lua $(MUTATE_LUA_ARGS)

unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

mutate: mutate-py mutate-lua

# A fresh run unless MUTATE_KEEP=1 (mutants/ removed first): the score is of the code and tests as they are.

mutate-py: services
	$(if $(MUTATE_KEEP),,rm -rf mutants &&) mkdir -p mutants
	@start=$$(date +%s); \
	names=$$($(PY) scripts/mutation_score.py --names $(MUTATE_PATHS)); \
	$(VENV)/bin/mutmut run --max-children $(MUTATE_CHILDREN) $$names > mutants/run.log 2>&1 \
	  || { tail -n 40 mutants/run.log; exit 1; }; \
	$(PY) scripts/mutation_score.py $(MUTATE_PATHS); \
	echo "mutate-py: $$(( $$(date +%s) - start )) s wall (log: mutants/run.log)"

lint: install
	$(VENV)/bin/ruff check client worker_pool supervisor bench tests scripts
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix client worker_pool supervisor bench tests scripts

clean:
	rm -rf $(VENV) $(BENCH_VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage-data
