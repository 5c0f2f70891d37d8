"""Isolation of the suite's parallel workers (`make test` runs pytest-xdist's `-n`): loaded with
`-p` (pyproject.toml), so that it runs before Django reads its settings in the worker.

Each run already has names of its own on the shared services (config/embedded.py sets the
channel prefix and the Celery queue per run; tests/conftest.py names the test database after
the process). Two workers of one run share that run's environment, so each worker's names get
its id appended here: its own channel groups and Celery queue on Redis, its own MQTT topic.
The test database is already per worker (named after the worker's process)."""

from __future__ import annotations

import os
from typing import Any

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

if WORKER:
    for name in ("CHANNELS_PREFIX", "CELERY_QUEUE"):
        if os.environ.get(name):
            os.environ[name] = f"{os.environ[name]}{WORKER}"
    if os.environ.get("MQTT_URL"):
        os.environ["MQTT_URL"] = f"{os.environ['MQTT_URL'].rstrip('/')}-{WORKER}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker hands the examples its hostile tests ran to the controller (the table below)."""
    from tests.hostile import surfaces

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["hostile_examples"] = dict(surfaces.COUNTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    from tests.hostile import surfaces

    surfaces.COUNTS.update(getattr(node, "workeroutput", {}).get("hostile_examples", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The examples run per hostile surface (tests/hostile/surfaces.py), in one or many workers."""
    from tests.hostile import surfaces

    if WORKER or not surfaces.COUNTS:
        return
    terminalreporter.section("hostile input: examples run per surface")
    for line in surfaces.table():
        terminalreporter.write_line(line)
