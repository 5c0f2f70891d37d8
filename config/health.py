"""GET /healthz: is each part that a decision travels through up?

200 only when the database answers, the channel layer carries a message through Redis and
back, and a Celery worker answers a ping; otherwise 503 with the failing part named. With every
part up but the loop behind (outbox backlog, late deadlines; observability/health.py), 200 with
status "degraded" and the reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

CHECK_TIMEOUT = 3.0
RECONNECTABLE = (RedisConnectionError, OperationalError, OSError)


def _check_database() -> str:
    # Run in a thread of its own (thread_sensitive=False below), with a connection of its own,
    # closed after: on Daphne every database_sync_to_async of every consumer queues on one
    # shared thread, and a health check waiting in that queue behind a flood of handshakes
    # answered 503 while the database was fine (issue 16.5).
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()
    return "ok"


async def _check_redis() -> str:
    # A layer of its own, with its own connection, closed after: the process's shared layer
    # carries every consumer's subscriptions, and a round trip queued behind a flood of them
    # said "Redis is down" while Redis was fine (issue 16.5).
    if get_channel_layer() is None:
        raise RuntimeError("no channel layer configured")
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    try:
        channel = await layer.new_channel()
        token = f"{time.monotonic_ns()}"
        await layer.send(channel, {"type": "healthz.ping", "token": token})
        message = await layer.receive(channel)
    finally:
        flush = getattr(layer, "flush", None)
        if flush is not None:
            with contextlib.suppress(Exception):
                await flush()
    if message.get("token") != token:
        raise RuntimeError("channel layer returned a different message")
    return "ok"


def _check_celery() -> str:
    from config.celery import app

    # limit=1: return as soon as one worker answers instead of waiting the whole timeout.
    replies = app.control.ping(timeout=1.5, limit=1)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping")
    return "ok"


async def _twice(check: Callable[[], Awaitable[str]]) -> str:
    # A pooled connection that Redis closed while it was away (a restart) fails its first use;
    # the second attempt reconnects. A part that is down fails both.
    try:
        return await check()
    except RECONNECTABLE:
        return await check()


async def _run(check: Callable[[], Awaitable[str]]) -> dict[str, object]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(_twice(check), timeout=CHECK_TIMEOUT)
        result: dict[str, object] = {"status": "ok"}
    except TimeoutError:
        result = {"status": "error", "error": f"no answer within {CHECK_TIMEOUT:.0f} s"}
    except Exception as exc:  # the point of a health check: report any failure, never raise
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    database, redis, celery = await asyncio.gather(
        _run(sync_to_async(_check_database, thread_sensitive=False)),
        _run(_check_redis),
        # thread_sensitive=False: the ping blocks for up to 1.5 s and must not hold the
        # thread that serves every other sync view.
        _run(sync_to_async(_check_celery, thread_sensitive=False)),
    )
    parts = {"database": database, "redis": redis, "celery": celery}
    failing = [name for name, part in parts.items() if part["status"] != "ok"]
    body = {"status": "ok" if not failing else "error", "failing": failing, **parts}
    # --- degraded (ops) ---
    # Every part answers, but the loop is behind: 200 with status "degraded" and the reasons, not
    # 503. The backlog and the deadlines are shared by every web process: a 503 would make the
    # load balancer drop all of them at once, which helps no one; a monitor alerts on the status.
    degraded = await _degraded() if database["status"] == "ok" else []
    body["degraded"] = degraded
    if degraded and not failing:
        body["status"] = "degraded"
    # --- end degraded ---
    return JsonResponse(body, status=200 if not failing else 503)


async def _degraded() -> list[str]:
    from observability.health import degraded_reasons

    try:
        return await asyncio.wait_for(sync_to_async(degraded_reasons)(), timeout=CHECK_TIMEOUT)
    except Exception as exc:  # never fail the health check over its own extra
        return [f"degraded check failed: {type(exc).__name__}: {exc}"]
