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

from channels.layers import BaseChannelLayer, get_channel_layer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from approvals import events
from realtime_bridge.gate import MAX_CLIENT_MESSAGE_CHARS
from realtime_bridge.relay import Relay
from realtime_bridge.routing import origin_allowed

log = logging.getLogger(__name__)
PATH = "/v1/realtime"


def _process_request(connection: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path != PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "Not found\n")
    if not origin_allowed(request.headers.get("Origin")):
        return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed\n")
    return None


def _select_subprotocol(connection: ServerConnection, subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
    # Section 1.1: a browser that offered subprotocols must get one back; we take "realtime".
    return Subprotocol("realtime") if "realtime" in subprotocols else None


def _offered(headers: Headers) -> list[str]:
    return [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",") if p.strip()]


class _ServerSocket:
    """The guest's websockets connection as the relay sees it (relay.ClientSocket). Decisions
    come from the channel layer, on a channel of the session's own: a process without consumers
    has nobody to dispatch them."""

    send: Callable[[str | bytes], Awaitable[None]]

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        # The connection's own send: every frame upstream sends passes here.
        self.send = ws.send
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.listener: asyncio.Task[None] | None = None

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    async def join(self, group: str, relay: Relay) -> None:
        if self.layer is None:
            raise RuntimeError("run_relay needs a channel layer (CHANNEL_LAYERS) to receive decisions")
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(group, self.channel)
        self.listener = asyncio.create_task(self._listen(self.layer, self.channel, relay))

    @staticmethod
    async def _listen(layer: BaseChannelLayer, channel: str, relay: Relay) -> None:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == events.RELAY_DECISION:
                await relay.on_decision(message)
            elif message.get("type") == events.RELAY_STOP:
                await relay.on_stop(message)

    async def leave(self, group: str) -> None:
        if self.listener is not None:
            # Awaited: the channel layer unsubscribes in the cancelled receive().
            self.listener.cancel()
            with contextlib.suppress(BaseException):
                await self.listener
        if self.layer is not None and self.channel is not None:
            await self.layer.group_discard(group, self.channel)


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
