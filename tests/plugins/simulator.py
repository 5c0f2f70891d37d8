"""Fixtures for tests: the Realtime simulator as a real process, and a client that checks every frame.

    async def test_something(simulator_factory):
        sim = simulator_factory(approval_profile="held")       # one process per knob set, per test session
        async with sim.connect() as rt:                        # a raw WebSocket on /v1/realtime?model=…
            await rt.send({"type": "session.update", ...})
            events = await rt.recv_until("session.updated")

Every server event any of these helpers receives is validated against the openai SDK's own
`RealtimeServerEvent` union in strict mode (`validate_server_event`), and may carry no field the
SDK's models lack unless REALTIME_PROTOCOL.md documents it (`DOCUMENTED_EXTRAS`). Tests that drive
the official SDK client read frames through `sdk_recv`, which applies the same check.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode

from simulator.validation import validate_server_event
from tests.plugins.processes import PYTHON, ServerProcess, free_port

SIMULATOR_API_KEY = "sk-sim-test-0123456789abcdef"


class _PingCountingConnection(ClientConnection):
    """Counts the server's WebSocket PINGs (section 1.1), which websockets answers on its own."""

    pings = 0

    def process_event(self, event: Any) -> None:
        if self.response is not None and getattr(event, "opcode", None) is Opcode.PING:
            self.pings += 1
        super().process_event(event)


@dataclass
class RealtimeTestClient:
    """A raw WebSocket to the simulator; every frame received is validated (see module docstring)."""

    ws: _PingCountingConnection
    received: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), "the server sent a binary frame"
        data = json.loads(raw)
        validate_server_event(data)
        self.received.append(data)
        return data

    async def recv_until(self, type_: str, timeout: float = 10, **match: Any) -> list[dict[str, Any]]:
        """Events up to and including the first of `type_` (whose fields equal `match`, if given)."""
        got = []
        async with asyncio.timeout(timeout):
            while True:
                got.append(await self.recv(timeout))
                if got[-1]["type"] == type_ and all(got[-1].get(k) == v for k, v in match.items()):
                    return got

    async def update_session(self, **session: Any) -> dict[str, Any]:
        """session.update; returns the session.updated event."""
        await self.send({"type": "session.update", "session": {"type": "realtime", **session}})
        return (await self.recv_until("session.updated"))[-1]

    async def add_user_text(self, text: str) -> dict[str, Any]:
        """A user message item; returns its conversation.item.done event."""
        content = [{"type": "input_text", "text": text}]
        await self.send(
            {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": content}}
        )
        return (await self.recv_until("conversation.item.done"))[-1]

    async def listings(self, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        """Events until `count` MCP servers finished listing: failed, or completed with their item done
        (the two arrive in either order, section 4)."""
        got: list[dict[str, Any]] = []
        completed: set[str] = set()
        items: set[str] = set()
        failed: set[str] = set()
        async with asyncio.timeout(timeout):
            while len(failed | (completed & items)) < count:
                event = await self.recv(timeout)
                got.append(event)
                if event["type"] == "mcp_list_tools.completed":
                    completed.add(event["item_id"])
                elif event["type"] == "mcp_list_tools.failed":
                    failed.add(event["item_id"])
                elif event["type"] == "conversation.item.done" and event["item"]["type"] == "mcp_list_tools":
                    items.add(event["item"]["id"])
        return got

    async def expect_silence(self, seconds: float = 0.3) -> None:
        try:
            event = await self.recv(timeout=seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected no event, got {event}")

    async def closed(self, timeout: float = 10) -> tuple[int | None, str | None]:
        """Read (and validate) until the server closes; returns the close code and reason."""
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.recv(timeout)
            except ConnectionClosed:
                pass
        return self.ws.close_code, self.ws.close_reason


async def sdk_recv(connection: Any, timeout: float = 10) -> Any:
    """Next event of an openai SDK realtime connection, validated like RealtimeTestClient.recv."""
    raw = await asyncio.wait_for(connection.recv_bytes(), timeout)
    validate_server_event(json.loads(raw))
    return connection.parse_event(raw)


@dataclass
class Simulator:
    port: int
    api_key: str
    knobs: dict[str, Any]
    process: ServerProcess

    @property
    def base_url(self) -> str:
        """What `AsyncOpenAI(base_url=...)` takes."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @asynccontextmanager
    async def connect(
        self,
        query: str = "model=gpt-realtime",
        *,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        subprotocols: list[str] | None = None,
        authorize: bool = True,
    ) -> AsyncIterator[RealtimeTestClient]:
        """A raw WebSocket; by default authorized with `Authorization: Bearer <api_key>`."""
        all_headers = {"Authorization": f"Bearer {api_key or self.api_key}"} if authorize else {}
        all_headers.update(headers or {})
        async with connect(
            f"{self.ws_url}?{query}" if query else self.ws_url,
            additional_headers=all_headers,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            create_connection=_PingCountingConnection,
            max_size=None,
        ) as ws:
            yield RealtimeTestClient(ws)  # type: ignore[arg-type]


def _argv(port: int, api_key: str, knobs: dict[str, Any]) -> list[str]:
    # Every event the simulator sends in the suite is checked against the SDK's types before it
    # leaves (simulator/validation.py); ServerProcess fails the run if one was not valid.
    argv = [PYTHON, "-m", "simulator", "--port", str(port), "--api-key", api_key, "--validate-events"]
    for name, value in knobs.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            argv += [flag, str(value)]
    return argv


@pytest.fixture(scope="session")
def _simulators() -> Iterator[dict[tuple[tuple[str, Any], ...], Simulator]]:
    started: dict[tuple[tuple[str, Any], ...], Simulator] = {}
    yield started
    for sim in started.values():
        sim.process.stop()


@pytest.fixture
def simulator_factory(
    _simulators: dict[tuple[tuple[str, Any], ...], Simulator],
) -> Callable[..., Simulator]:
    """`simulator_factory(**knobs)`: a running `python -m simulator` with those knobs (simulator/config.py).

    Processes are shared by every test asking for the same knobs, so sessions must not be assumed empty
    of other tests' calls; each WebSocket session is its own anyway.
    """

    def start(**knobs: Any) -> Simulator:
        key = tuple(sorted(knobs.items()))
        if key not in _simulators:
            port = free_port()
            process = ServerProcess(
                _argv(port, SIMULATOR_API_KEY, knobs),
                port=port,
                name="simulator",
                timeout=30,
                fail_on="INVALID SERVER EVENT",
            )
            _simulators[key] = Simulator(port=port, api_key=SIMULATOR_API_KEY, knobs=knobs, process=process.start())
        return _simulators[key]

    return start


@pytest.fixture
def simulator(simulator_factory: Callable[..., Simulator]) -> Simulator:
    """The simulator with default knobs."""
    return simulator_factory()
