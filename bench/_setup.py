"""Shared set-up of the benchmarks: a scratch database, and the real processes of a run.

Run them through `make bench` (or `python -m config.embedded exec python bench/<name>.py`), so
that REDIS_URL points at a Redis (the embedded one when unset). The database is a scratch
SQLite file unless DATABASE_URL is set.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from tests.plugins.processes import PYTHON, ServerProcess, free_port  # noqa: E402

__all__ = [
    "BASE_DIR",
    "PYTHON",
    "ServerProcess",
    "asgi_server",
    "bench_env",
    "free_port",
    "percentile",
    "setup_django",
]


def asgi_server(kind: str, port: int, env: dict[str, str]) -> ServerProcess:
    """Countersign on one process: Daphne (what `make run` uses), uvicorn, or (relay only)
    `manage.py run_relay`, the relay on a plain websockets server (on uvloop, its default;
    `run_relay-asyncio`: on asyncio's own loop; `run_relay-N`: N worker processes)."""
    if kind.startswith("run_relay"):
        variant = kind.removeprefix("run_relay").removeprefix("-")
        loop = "asyncio" if variant == "asyncio" else "auto"
        workers = variant if variant.isdigit() else "1"
        argv = [PYTHON, "manage.py", "run_relay", "--port", str(port), "--loop", loop, "--workers", workers]
    elif kind == "daphne":
        argv = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    else:
        argv = [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--ws", "websockets", "--no-access-log", "--log-level", "warning", "--lifespan", "off"]
    return ServerProcess(argv, port=port, env=env, name=kind)


def bench_env(**extra: str) -> dict[str, str]:
    scratch = Path(tempfile.mkdtemp(prefix="countersign-bench-"))
    env = {
        "COUNTERSIGN_VAR_DIR": str(scratch),
        "SECRET_KEY": "bench-" + os.urandom(16).hex(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CHANNELS_PREFIX": f"csbench{os.getpid()}",
        "CELERY_QUEUE": f"csbench{os.getpid()}",
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        # A fresh key for the scratch database's MCP credentials (required outside demo mode).
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        # Hundreds of sessions on one token from one address: the relay's limits would refuse
        # them (realtime_bridge/limits.py); a benchmark measures the relay, not its limits.
        "RELAY_MAX_SESSIONS_PER_TOKEN": "0",
        "RELAY_HANDSHAKES_PER_MINUTE_PER_ADDRESS": "0",
    }
    url = os.environ.get("DATABASE_URL")
    if not url:
        env["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    else:
        # A scratch database beside the configured one: a benchmark never writes into a real one.
        import psycopg

        base, _, _ = url.rpartition("/")
        name = f"countersign_bench_{os.getpid()}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = f"{base}/{name}"

        def drop() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        atexit.register(drop)
    env.update(extra)
    os.environ.update(env)
    return {**os.environ}


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=BASE_DIR, check=True, env=os.environ)
    import django

    django.setup()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
