"""A tiny scripted upstream on 127.0.0.1 (a real `websockets` server) standing in for OpenAI,
and a client of the relay built on the real ASGI app (routing, origin check, auth)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from websockets.asyncio.server import ServerConnection, serve

from approvals import services
from tests.conftest import allow_starting_sessions

UPSTREAM_KEY = "sk-upstream-server-key"


class FakeUpstream:
    """Accepts the relay's upstream connection, records every frame it receives, and sends
    what a test tells it to. Sends `session.created` first, like OpenAI."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.requests: list[Any] = []
        self.received: list[str | bytes] = []
        self.arrived = asyncio.Event()
        self.closed: list[tuple[int | None, str | None]] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        self.requests.append(ws.request)
        await ws.send(
            json.dumps(
                {
                    "type": "session.created",
                    "event_id": "event_1",
                    "session": {"id": "sess_fake123", "object": "realtime.session", "type": "realtime", "tools": []},
                }
            )
        )
        try:
            async for frame in ws:
                self.received.append(frame)
                self.arrived.set()
        finally:
            self.closed.append((ws.close_code, ws.close_reason))

    async def send(self, event: dict[str, Any]) -> None:
        await self.connections[-1].send(json.dumps(event))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(f) for f in self.received if isinstance(f, str)]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("type") == kind]

    async def wait_for(self, predicate, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while True:
                found = [e for e in self.events() if predicate(e)]
                if found:
                    return found
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def upstream(settings):
    fake = FakeUpstream()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        settings.OPENAI_BASE_URL = f"http://127.0.0.1:{port}/v1"
        settings.OPENAI_API_KEY = UPSTREAM_KEY
        yield fake


class RelayClient:
    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm
        self.frames: list[dict[str, Any]] = []

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        event = json.loads(await self.comm.receive_from(timeout))
        self.frames.append(event)
        return event

    async def recv_until(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout)
                if event.get("type") == kind:
                    return event

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.comm.send_to(text_data=event if isinstance(event, str) else json.dumps(event))


async def open_relay(
    token: str | None, *, model: str | None = "gpt-realtime", subprotocols: list[str] | None = None, headers=None
) -> tuple[WebsocketCommunicator, bool, Any]:
    from config.asgi import application

    path = "/v1/realtime" + (f"?model={model}" if model else "")
    hdrs = list(headers or [])
    if token is not None and subprotocols is None:
        hdrs.append((b"authorization", f"Bearer {token}".encode()))
    comm = WebsocketCommunicator(application, path, headers=hdrs, subprotocols=subprotocols)
    connected, subprotocol = await comm.connect(timeout=10)
    return comm, connected, subprotocol


@pytest.fixture
def client_token(db):
    token, plaintext = services.issue_token(label="Room 1204", metadata={"room": "1204", "guest": "Ms. Lane"})
    return token, plaintext


@pytest.fixture
async def relay(upstream, client_token):
    """A connected relay client whose upstream is `upstream`, after session.created."""
    comm, connected, _ = await open_relay(client_token[1])
    assert connected
    rc = RelayClient(comm)
    created = await rc.recv_until("session.created")
    assert created["session"]["id"] == "sess_fake123"
    yield rc
    await comm.disconnect()


async def db(fn, *args, **kwargs):
    return await database_sync_to_async(fn)(*args, **kwargs)


@pytest.fixture
def alice(alice):
    """Alice may start sessions here: these tests mint browser-call secrets and start runs as her."""
    return allow_starting_sessions(alice)
