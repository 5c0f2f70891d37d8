"""The relay on a plain `websockets` server: `python manage.py run_relay`.

The same relay as `RelayConsumer` (the same `gate.RelayGate` and `session.UpstreamSession`),
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
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from approvals import events
from realtime_bridge import handlers, outbound, protocol
from realtime_bridge.client import UpstreamClosed
from realtime_bridge.gate import MAX_CLIENT_MESSAGE_CHARS, Refused, RelayGate, client_close_code
from realtime_bridge.routing import RelayOriginValidator

log = logging.getLogger(__name__)
PATH = "/v1/realtime"


def _origin_allowed(origin: str | None) -> bool:
    """The Channels relay's rule (RelayOriginValidator), so the two servers cannot drift apart:
    no Origin (SDKs, gateways) passes; a browser's must be one we serve."""
    validator = RelayOriginValidator(application=None)  # reads the settings now, as Channels does
    return validator.valid_origin(None if origin is None else urlparse(origin))


def _process_request(connection: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path != PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "Not found\n")
    if not _origin_allowed(request.headers.get("Origin")):
        return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed\n")
    return None


def _select_subprotocol(connection: ServerConnection, subprotocols: list[str]) -> str | None:
    # Section 1.1: a browser that offered subprotocols must get one back; we take "realtime".
    return "realtime" if "realtime" in subprotocols else None


def _offered(headers: Headers) -> list[str]:
    return [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",") if p.strip()]


async def relay(ws: ServerConnection) -> None:
    """One guest's session, from handshake to close."""
    gate = RelayGate()
    headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
    query = parse_qs(urlsplit(ws.request.path).query)
    try:
        token, model = await gate.admit(headers=headers, subprotocols=_offered(ws.request.headers), query=query)
        core = await gate.open_upstream(token, model)
    except Refused as refused:
        await ws.send(refused.event)
        await ws.close(refused.close_code, refused.reason)
        return
    layer = get_channel_layer()
    channel = await layer.new_channel("relay.")
    group = events.session_group(core.session_id)
    await layer.group_add(group, channel)

    async def decisions() -> None:
        # The consumer's relay_decision handler, for a process without consumers.
        while True:
            message = await layer.receive(channel)
            if message.get("type") == events.RELAY_DECISION:
                decision = outbound.from_nudge(message)
                if decision is not None:
                    await core.deliver(decision)
                else:
                    await core.drain_outbox()

    async def forward(frame: str, event: dict[str, Any] | None) -> None:
        await ws.send(gate.to_client(frame, event))

    async def upstream_to_client() -> None:
        closed = await core.read(passthrough=ws.send, forward=forward)
        code, note = client_close_code(closed.code)
        await ws.close(code, ": ".join(part for part in (note, closed.reason) if part))

    reader = asyncio.create_task(upstream_to_client())
    tasks = [asyncio.create_task(decisions()), reader]
    close_code: int | None = None
    try:
        async for message in ws:
            if isinstance(message, bytes):
                await core.upstream.send(message)  # OpenAI answers with invalid_event (section 1.1)
            elif protocol.is_plain_audio_append(message):
                await core.upstream.send(message)
            else:
                to_upstream, errors = await gate.from_client(message)
                for error in errors:
                    await ws.send(error)
                if to_upstream is not None:
                    await core.upstream.send(to_upstream)
    except ConnectionClosed:
        pass
    except UpstreamClosed:
        # Upstream went away under a send; the reader sees the same close and closes the guest
        # with upstream's code, as for an idle guest.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(reader), 5)
    except Exception:
        log.exception("run_relay: session %s failed", core.session_id)
        await ws.close(1011, "server_error")
    finally:
        close_code = ws.close_code
        for task in tasks:
            task.cancel()
        await core.stop(reason="client disconnected")
        with contextlib.suppress(Exception):
            await layer.group_discard(group, channel)
        await database_sync_to_async(handlers.close_session)(
            core.session_id, code=close_code, reason="The guest's session ended before a decision."
        )


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
