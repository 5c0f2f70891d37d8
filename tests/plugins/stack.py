"""The real Countersign processes for end-to-end tests: Daphne, a Celery worker and beat.

They run against the test database (the test must use `transactional_db`, so that what it
writes is committed and visible to them) and the Redis of REDIS_URL, with this run's channel
prefix and Celery queue, so that parallel runs on one Redis never hear each other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.plugins.processes import PYTHON, ServerProcess, free_port


def test_database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    host = s["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


def django_env(**extra: str) -> dict[str, str]:
    """Environment for a Django process of this test run."""
    from django.conf import settings

    env = {
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CHANNELS_PREFIX": settings.CHANNELS_PREFIX,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "SECRET_KEY": settings.SECRET_KEY,
        # The test's own key: the processes must read the credentials the test stored.
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "DEBUG": "False",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        # `make run` (config.embedded) binds the relay and the gateway on 8001 and 8002 by default:
        # a port of its own for each, so that two test runs on one machine never meet there.
        "RELAY_PORT": str(free_port()),
        "GATEWAY_PORT": str(free_port()),
    }
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SIMULATOR_API_KEY"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


class Stack:
    """Starts and stops the processes of one end-to-end test."""

    def __init__(self, **env: str) -> None:
        self.env = django_env(**env)
        # prometheus_client's multiprocess mode, as config/embedded.py sets it for `make run`: every
        # process of this stack writes its metrics here, and /metrics adds them up. Fresh per stack.
        self.metrics_dir = tempfile.mkdtemp(prefix="countersign-metrics-")
        self.env.setdefault("PROMETHEUS_MULTIPROC_DIR", self.metrics_dir)
        self.processes: list[ServerProcess] = []

    def web(self, port: int | None = None, **env: str) -> ServerProcess:
        port = port or free_port()
        proc = ServerProcess(
            # As the Procfile runs it: Daphne with the relay's close codes, reasons and limits.
            [PYTHON, "-m", "config.daphne_server", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            port=port,
            env={**self.env, **env},
            name="daphne",
        )
        proc.url = f"http://127.0.0.1:{port}"
        return self._start(proc)

    def relay(self, port: int | None = None, *args: str, **env: str) -> ServerProcess:
        """`run_relay` as the Procfile's `relay` process; `proc.url` is its http:// base (the
        SDK's base_url is `proc.url + "/v1"`)."""
        port = port or free_port()
        argv = [PYTHON, "manage.py", "run_relay", "--host", "127.0.0.1", "--port", str(port), *args]
        proc = ServerProcess(argv, port=port, env={**self.env, **env}, name="run_relay", ready_log="serving")
        proc.url = f"http://127.0.0.1:{port}"
        return self._start(proc)

    def worker(self, **env: str) -> ServerProcess:
        argv = [PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2"]
        argv += ["--without-gossip", "--without-mingle", "--pool", "prefork", "-n", f"test-{free_port()}@%h"]
        # Ready once it consumes: on a loaded machine a worker takes seconds to start, and a test's
        # deadline of one or two seconds must not be spent waiting for it.
        return self._start(ServerProcess(argv, env={**self.env, **env}, name="celery-worker", ready_log=" ready."))

    def beat(self, schedule: Path, **env: str) -> ServerProcess:
        argv = [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO", "--schedule", str(schedule)]
        return self._start(ServerProcess(argv, env={**self.env, **env}, name="celery-beat"))

    def run(
        self, argv: list[str], *, name: str, port: int | None = None, ready_log: str | None = None, **env: str
    ) -> ServerProcess:
        """Any other process of this run (a relay, a bridge, a unit's command) with its environment."""
        return self._start(ServerProcess(argv, port=port, env={**self.env, **env}, name=name, ready_log=ready_log))

    def _start(self, proc: ServerProcess) -> ServerProcess:
        self.processes.append(proc)
        return proc.start()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


@pytest.fixture
def stack(transactional_db: None, request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = Stack()
    yield s
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    s.stop()
    if failed:
        for proc in s.processes:
            print(f"\n===== {proc.name} ({proc.log_path}) =====\n{proc.output()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
