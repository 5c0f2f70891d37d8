"""The Celery app. Configuration comes from Django settings (the CELERY_ namespace); the broker
connection and transport are the outage-proof ones of config/broker.py."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("countersign", amqp="config.broker:BrokerAMQP")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Kept referenced, never used nor closed, in a prefork child (see below).
_inherited_pools: list[object] = []


@worker_process_init.connect
def _forget_inherited_database_pools(**kwargs: object) -> None:
    """A forked pool child must not share the connection pool (config/database.py) its parent may
    have opened: its connections' sockets are the parent's, and its worker threads did not
    survive the fork. Closing it would send on those sockets, so it is only put aside, kept
    referenced so that no finaliser closes it; the child opens a pool of its own on first use."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    pools: dict[str, object] = getattr(DatabaseWrapper, "_connection_pools", {})  # Django 5.1+: per alias
    _inherited_pools.extend(pools.values())
    pools.clear()
