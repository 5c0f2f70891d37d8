"""The relay on a plain `websockets` server: `python manage.py run_relay`.

The same relay as `RelayConsumer` (the same `relay.Relay`; this module is only its adapter),
without the ASGI server and Channels' per-message dispatch in the path of every audio frame:
a guest streams 50 frames a second, and at a few hundred guests that machinery, not the relay's
own work, is what fills a core (docs/performance.md). Decisions still arrive through the
channel layer, from any process, as they do for the consumer.

Serve it on its own port, or route /v1/realtime to it in front of Daphne.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from realtime_bridge import limits
from realtime_bridge.gate import MAX_CLIENT_MESSAGE_CHARS
from realtime_bridge.relay import DecisionChannel, Relay
from realtime_bridge.routing import origin_allowed

log = logging.getLogger(__name__)
PATH = "/v1/realtime"


def _process_request(connection: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path != PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "Not found\n")
    if not origin_allowed(request.headers.get("Origin")):
        return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed\n")
    address = connection.remote_address[0] if connection.remote_address else None
    if not limits.HANDSHAKES.allow(address):
        # Before the upgrade, with no database or Redis work (limits.py): HTTP 429, as OpenAI
        # answers too many requests, with the time after which a handshake is allowed again.
        response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS, limits.RATE_LIMITED_MESSAGE + "\n")
        response.headers["Retry-After"] = "60"
        return response
    return None


def _select_subprotocol(connection: ServerConnection, subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
    # Section 1.1: a browser that offered subprotocols must get one back; we take "realtime".
    return Subprotocol("realtime") if "realtime" in subprotocols else None


def _offered(headers: Headers) -> list[str]:
    return [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",") if p.strip()]


class _ServerSocket:
    """The guest's websockets connection as the relay sees it (relay.ClientSocket). Decisions
    come from the channel layer on a channel of the session's own (relay.DecisionChannel)."""

    send: Callable[[str | bytes], Awaitable[None]]

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        # The connection's own send: every frame upstream sends passes here.
        self.send = ws.send
        self.decisions = DecisionChannel()

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    async def join(self, group: str, relay: Relay) -> None:
        await self.decisions.join(group, relay)

    async def leave(self, group: str) -> None:
        await self.decisions.leave(group)


async def relay(ws: ServerConnection) -> None:
    """One guest's session, from handshake to close (relay.Relay)."""
    request = ws.request
    assert request is not None  # set once the handshake is done, before the handler runs
    session = Relay(_ServerSocket(ws), name="run_relay")
    headers = {k.lower(): v for k, v in request.headers.raw_items()}
    query = parse_qs(urlsplit(request.path).query)
    if not await session.open(headers=headers, subprotocols=_offered(request.headers), query=query):
        return
    try:
        await session.pump(ws)
    finally:
        await session.end(ws.close_code)


async def serve_relay(host: str, port: int, *, ready: asyncio.Event | None = None, reuse_port: bool = False) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation), then close every session cleanly.
    `reuse_port`: share the port with other processes (run_relay --workers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Only the main thread of a Unix process can take signals (ValueError/RuntimeError in a
        # test's server thread, NotImplementedError on Windows): there, cancellation stops it.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    async with serve(
        relay,
        host,
        port,
        process_request=_process_request,
        select_subprotocol=_select_subprotocol,
        max_size=MAX_CLIENT_MESSAGE_CHARS * 2,
        compression=None,  # realtime audio: no permessage-deflate, as the SDK connects
        ping_interval=20,
        reuse_port=reuse_port,
    ) as server:
        log.info(
            "run_relay: serving %s on ws://%s:%s (process %s, %s loop)",
            PATH,
            host,
            port,
            os.getpid(),
            type(loop).__module__.partition(".")[0],
        )
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()
