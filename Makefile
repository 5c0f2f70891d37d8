# The two commands a newcomer needs: `make run` and `make test`. The other targets are the
# steps they are made of, and exactly what CI runs (.ci/run calls `make test`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test install install-dev lint typecheck layers format migrations-check ci bench fuzz chaos clean

run: install
	$(PY) -m config.embedded run

# The suite runs in TEST_WORKERS parallel pytest processes (pytest-xdist; a module's tests stay in one
# worker), each with a test database, channel prefix, Celery queue and MQTT topic of its own
# (tests/plugins/xdist_env.py). Most end-to-end tests wait on the processes they start, so two workers
# on two cores take about half the time of one. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: install-dev lint typecheck layers migrations-check
	$(PY) -m config.embedded test $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

ci: test

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamp files: a machine that already installed skips pip entirely, so `make run` starts in seconds.
$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy with django-stubs, the Channels and Celery stubs, over the whole project (pyproject.toml).
typecheck: install-dev
	$(VENV)/bin/mypy

# The layering contract (pyproject.toml [tool.importlinter]; docs/architecture.md).
layers: install-dev
	$(VENV)/bin/lint-imports

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrations-check: install-dev
	$(PY) manage.py makemigrations --check --dry-run

# With DATABASE_URL=postgres://… the latency runs on SQLite and PostgreSQL side by side in the recommended
# topology, and decision_throughput (PostgreSQL only) runs too (docs/performance.md).
ON_POSTGRES := $(findstring postgres,$(DATABASE_URL))
bench: install-dev
	$(PY) -m config.embedded exec $(PY) bench/approval_latency.py $(if $(ON_POSTGRES),--servers split daphne --dashboards 100 --dashboard-processes 3 --databases sqlite postgresql)
	$(PY) -m config.embedded exec $(PY) bench/relay_overhead.py
	$(PY) -m config.embedded exec $(PY) bench/sideband_decisions.py
	$(PY) -m config.embedded exec $(PY) bench/grant_lookup.py
	$(PY) -m config.embedded exec $(PY) bench/metrics_overhead.py
	$(if $(ON_POSTGRES),$(PY) -m config.embedded exec $(PY) bench/decision_throughput.py)

# Hostile input (tests/hostile) at full strength: at least 10,000 examples per surface (the `fuzz`
# Hypothesis profile; `make test` runs the bounded `ci` profile), the count per surface printed at the end.
# Its tests are spread over TEST_WORKERS workers one test at a time (each test is one surface).
fuzz: install-dev
	HYPOTHESIS_PROFILE=fuzz $(PY) -m config.embedded test tests/hostile -p no:cacheprovider -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist load)

# Faults under load (tests/chaos): kill -9 the worker, a web process, run_relay and run_bridge, and
# restart Redis, CHAOS_ROUNDS times (default 3); prints requests, faults, lost and doubled.
CHAOS_ROUNDS ?= 3
chaos: install-dev
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(PY) -m config.embedded test tests/chaos -p no:cacheprovider -q -s

clean:
	rm -rf $(VENV) var staticfiles
