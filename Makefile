# The two commands a newcomer needs (see README.md); each installs what it needs first.
PY := .venv/bin/python

.PHONY: demo test bootstrap lint typecheck unit integration e2e fault bench

demo:            ## run the whole loop locally: Kafka, SQLite, four services, mail + chat sinks, a short demo
	@bash deploy/local/bootstrap.sh
	$(PY) -m deploy.local.demo

test:            ## lint, types and the whole suite (unit, integration on real Kafka + PostgreSQL, end to end)
	@bash deploy/local/bootstrap.sh test
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -ra -q --durations=10

lint:
	$(PY) -m ruff format --check . && $(PY) -m ruff check .

typecheck:
	$(PY) -m mypy

unit:
	$(PY) -m pytest -q tests/unit

integration:
	$(PY) -m pytest -q tests/integration

e2e:
	$(PY) -m pytest -q tests/e2e

fault:           ## the crash tests alone (SIGKILL mid-work and restart; part of make test too)
	$(PY) -m pytest -ra -q tests/integration/test_router_broker.py tests/integration/test_sla_broker.py -k sigkill
