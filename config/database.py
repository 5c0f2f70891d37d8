"""DATABASES["default"] from DATABASE_URL (config/settings.py), kept here to say why it is built so.

- SQLite (no DATABASE_URL): Daphne, the worker and beat share one file: WAL lets readers run
  beside the one writer, IMMEDIATE takes the write lock up front (no deadlock on lock upgrade),
  and the timeout makes a writer wait instead of failing with "database is locked".
- PostgreSQL: a connection pool per process (psycopg_pool, Django's `pool` option). Under ASGI
  every request runs its sync code on a thread of its own (Django's ThreadSensitiveContext), and
  a persistent connection (CONN_MAX_AGE > 0) stays with the thread that opened it: 8 staff
  deciding through three Daphne processes held 69 connections, and 32 ran PostgreSQL out of
  them ("too many clients", docs/performance.md). With the pool a request borrows a connection
  and gives it back when Django closes it at the request's end. `pool_max_size` 0 turns the pool
  off (persistent connections for `conn_max_age` seconds instead, as a WSGI deployment would).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}


def database_settings(
    url: str | None, var_dir: Path, *, conn_max_age: int, pool_max_size: int, pool_timeout: int
) -> dict[str, Any]:
    if not url:
        database: dict[str, Any] = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(var_dir / "db.sqlite3")}
    else:
        database = dict(dj_database_url.parse(url, conn_max_age=conn_max_age))
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["OPTIONS"] = dict(SQLITE_OPTIONS)
        # A file, not SQLite's in-memory default, so that the processes an end-to-end test
        # starts (Daphne, the worker) share the test database.
        database["TEST"] = {"NAME": str(var_dir / f"test-db-{os.getpid()}.sqlite3")}
    elif database["ENGINE"] == "django.db.backends.postgresql" and pool_max_size > 0:
        database["CONN_MAX_AGE"] = 0  # Django refuses a pool with persistent connections
        database.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": pool_max_size, "timeout": pool_timeout}
    return database
