"""Suite-wide fixtures: personas, the in-memory channel layer for unit tests, a network guard,
and a test database name of its own per run (so two runs on one PostgreSQL never collide)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = [
    "tests.plugins.hotel",
    "tests.plugins.redis_server",
    "tests.plugins.simulator",
    "tests.plugins.stack",
    "tests.plugins.upstream",
]


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = f"test_countersign_{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _end_stray_connections(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end connections that threads of the tests (a
    server in a thread, a thread that raised) left open; else PostgreSQL refuses the drop and
    each run leaves a database behind."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


_real_connect = socket.socket.connect


def _guarded_connect(self: Any, address: Any) -> None:
    # Tests never reach the network (STYLE.md 3.6): only loopback and Unix sockets.
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = str(address[0])
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise ConnectionRefusedError(f"tests may not reach the network ({host})")
    _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _sqlite_flush_under_the_flush_permit() -> None:
    """On SQLite a transactional test's flush is DELETE FROM every table, which the audit
    tables' triggers refuse (audit migration 0002) unless the flush permit is held: hold it
    while the flush runs. (PostgreSQL's flush is a TRUNCATE, which row triggers do not see.)"""
    from collections.abc import Iterable

    from django.db import transaction
    from django.db.backends.sqlite3 import base  # first: operations alone is a circular import
    from django.db.backends.sqlite3.operations import DatabaseOperations

    from audit.purging import FLUSH_SCOPE, PERMIT_TABLE

    def execute_sql_flush(self: DatabaseOperations, sql_list: Iterable[str]) -> None:
        with transaction.atomic(using=self.connection.alias), self.connection.cursor() as cursor:
            # A test that migrated back before the triggers has neither them nor the permit table.
            permit = PERMIT_TABLE in self.connection.introspection.table_names(cursor)
            if permit:
                cursor.execute(f"INSERT INTO {PERMIT_TABLE} (scope) VALUES (%s)", [FLUSH_SCOPE])
            for sql in sql_list:
                cursor.execute(sql)
            if permit:
                cursor.execute(f"DELETE FROM {PERMIT_TABLE} WHERE scope = %s", [FLUSH_SCOPE])

    assert base.DatabaseWrapper.ops_class is DatabaseOperations
    DatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign,assignment]


@pytest.fixture(autouse=True, scope="session")
def _network_guard() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _channel_layer(request: pytest.FixtureRequest, settings: Any) -> Iterator[None]:
    """Unit tests get the in-memory layer; tests marked `real_redis` or `e2e` keep Redis."""
    from channels.layers import channel_layers

    if not (request.node.get_closest_marker("real_redis") or request.node.get_closest_marker("e2e")):
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture(autouse=True, scope="session")
def _clean_redis_prefix() -> Iterator[None]:
    """Remove what this run left on Redis (tasks published by unit tests, layer keys), when it
    ran under a prefix of its own (`make test` sets one per run)."""
    yield
    from django.conf import settings

    prefix = settings.CHANNELS_PREFIX
    if not prefix.startswith("cstest"):
        return
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass


@pytest.fixture
def password() -> str:
    return "correct horse battery staple"


@pytest.fixture
def alice(django_user_model, password):
    """Alice: front-desk staff, decides requests."""
    return django_user_model.objects.create_user(
        "alice", "alice@example.org", password, is_staff=True, first_name="Alice"
    )


@pytest.fixture
def bob(django_user_model, password):
    """Bob: duty manager, staff."""
    return django_user_model.objects.create_user("bob", "bob@example.org", password, is_staff=True, first_name="Bob")


@pytest.fixture
def charlie(django_user_model, password):
    """Charlie: a logged-in user who is not staff (an outsider)."""
    return django_user_model.objects.create_user("charlie", "charlie@example.org", password, first_name="Charlie")


def allow_starting_sessions(user):
    """Give `user` the permission to start sessions from a login (a browser call's client
    secret, a Responses run): approvals.start_session. Returns the user."""
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(content_type__app_label="approvals", codename="start_session"))
    return user


@pytest.fixture
def admin_user(django_user_model, password):
    return django_user_model.objects.create_superuser("root", "root@example.org", password)
