# Lookalike: `make run` starts the demo, `make test` runs the whole suite. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install system-deps run-deps run test stop worker bench bench-quick clean

install: $(VENV)/.installed

## Debian packages: Fashion-MNIST, Chromium + driver (browser tests), Redis; only what is missing.
system-deps:
	bash .ci/system-deps

$(VENV)/.installed: requirements.txt devtools/pg_trgm_embedded.py
	test -x $(VENV)/bin/pip || $(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(PY) -m devtools.pg_trgm_embedded  # keyword search's typo fallback needs pg_trgm; the embedded server lacks it
	touch $@

## Debian packages the demo needs (python3-venv, Fashion-MNIST, Redis); the browser is for tests only.
run-deps:
	bash .ci/system-deps --no-browser

## The demo: database, broker, Fashion-MNIST catalogue, Celery workers and beat, default model, web server.
run: run-deps install
	$(PY) -m devtools.demo

## The whole suite on real PostgreSQL + pgvector and real Redis.
test: system-deps install
	$(PY) -m devtools.demo --check-services
	$(PY) manage.py test

## Stop the embedded PostgreSQL server started by `make run` / `make test`.
stop:
	$(PY) -m devtools.demo --stop

## Celery workers: embeddings (a process per core, at most 4: config/celery.py) and training (one
## process on every core). In production run each where it belongs; see docker-compose.yml.
worker: install
	trap 'kill 0' INT TERM; \
	$(VENV)/bin/celery -A config worker -Q embeddings -c $$($(PY) -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))') -n embeddings@%h -l info & \
	$(VENV)/bin/celery -A config worker -Q training -c 1 -n training@%h -l info & \
	wait

bench-quick: install
	$(PY) -m bench.retrieval --quick
	$(PY) bench/setup_data.py --quick
	$(PY) bench/indexing.py --quick
	$(PY) bench/search.py --quick
	$(PY) bench/load.py --quick

## Benchmarks (minutes to hours on a laptop CPU): see README "Benchmarks". Uses its own database under var/bench-*.
bench: install
	$(PY) -m bench.retrieval
	$(PY) bench/setup_data.py
	$(PY) bench/indexing.py
	$(PY) bench/search.py
	$(PY) bench/load.py

clean:
	rm -rf var/test-media var/test-models
