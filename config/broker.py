"""Celery's Redis broker, made to outlive a Redis outage (config/celery.py wires it in).

Two faults of Celery 5.7 / kombu 5.7 with Redis, each fixed at its narrowest point:

- A worker that holds unacknowledged messages (every countdown task: the deadlines) when Redis
  goes away dies with `Unrecoverable error: AttributeError("'NoneType' object has no attribute
  'hostname'")`. On connection loss the consumer first `collect()`s the broker connection, which
  detaches the transport from it (`transport.client = None`); closing the channel there fails
  half-way (its pending BRPOP read raises ConnectionError), so the `close()` that follows closes
  it again, and the channel's QoS then tries to restore the unacknowledged messages through a new
  Redis client built from `transport.client.hostname`. `Channel._connparams` below reports a
  detached transport as the connection error it is, which the consumer already ignores; the
  messages stay in Redis's unacked set and come back after `visibility_timeout`, as after a
  crash (and if Redis lost them, the beat sweep still fires every deadline).
- A worker reconnects with kombu's default backoff, 2 s more after each failure, up to 30 s
  apart: after a minute's outage it could stay away half a minute after Redis returned, and
  deadlines are due within seconds. `BrokerConnection` retries every second or two instead
  (BROKER_RECONNECT_MAX_SECONDS), forever (CELERY_BROKER_CONNECTION_MAX_RETRIES = None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.app.amqp import AMQP
from django.conf import settings
from kombu import Connection
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        # A private method of kombu's, missing from its stubs.
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]
        return params


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the Channel above (CELERY_BROKER_TRANSPORT)."""

    Channel = Channel


class BrokerConnection(Connection):
    """A kombu Connection whose reconnection attempts are at most BROKER_RECONNECT_MAX_SECONDS
    apart, for callers (the worker's consumer) that leave the intervals to the default."""

    def _ensure_connection(
        self,
        errback: Callable[..., Any] | None = None,
        max_retries: int | None = None,
        interval_start: float = 0.5,
        interval_step: float = 0.5,
        interval_max: float | None = None,
        callback: Callable[..., Any] | None = None,
        reraise_as_library_errors: bool = True,
        timeout: float | None = None,
    ) -> Any:
        if interval_max is None:
            interval_max = float(settings.BROKER_RECONNECT_MAX_SECONDS)
        # kombu takes float intervals; its stubs say int.
        intervals: dict[str, Any] = {
            "interval_start": min(interval_start, interval_max),
            "interval_step": interval_step,
            "interval_max": interval_max,
            "timeout": timeout,
        }
        return super()._ensure_connection(
            errback,
            max_retries,
            callback=callback,
            reraise_as_library_errors=reraise_as_library_errors,
            **intervals,
        )


class BrokerAMQP(AMQP):
    """Celery's AMQP helper, making its connections with BrokerConnection."""

    Connection = BrokerConnection
