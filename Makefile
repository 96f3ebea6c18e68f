# The two commands: `make run` starts the whole system locally, `make test` runs every test.
# Both create .venv from a fresh clone.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run demo test lint bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/agentops local up

# With `make run` up in another terminal: the scenario, with a live timeline.
demo: $(STAMP)
	$(VENV)/bin/agentops local demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	scripts/ensure-chromium
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

bench: $(STAMP)
	$(PY) -m bench.webhook_load

clean:
	rm -rf $(VENV) .agentops .pytest_cache
