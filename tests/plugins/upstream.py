"""A scripted stand-in for OpenAI's Realtime WebSocket, on 127.0.0.1 in a thread of the test
process, for tests whose relay runs in real Daphne processes. It records exactly what reached
"OpenAI", which is what the race and crash tests must count. Protocol-faithful flows use the
simulator instead (tests/plugins/simulator.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve


class ThreadedUpstream:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        self.sessions: list[ServerConnection] = []
        self.received: list[tuple[int, dict[str, Any]]] = []  # (session index, event)
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        # max_size=None: OpenAI takes audio appends of about 15 MiB, and so must its stand-in.
        async with serve(self._handler, "127.0.0.1", 0, max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _handler(self, ws: ServerConnection) -> None:
        with self.lock:
            index = len(self.sessions)
            self.sessions.append(ws)
        await ws.send(
            json.dumps({"type": "session.created", "event_id": "event_0", "session": {"id": f"sess_{index}"}})
        )
        async for frame in ws:
            if isinstance(frame, str):
                with self.lock:
                    self.received.append((index, json.loads(frame)))

    def start(self) -> ThreadedUpstream:
        self.thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def send(self, session: int, event: dict[str, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(self.sessions[session].send(json.dumps(event)), self.loop)
        future.result(5)

    def close(self, session: int, code: int, reason: str) -> None:
        """Close a session from upstream's side, as OpenAI does on a restart (1012)."""
        future = asyncio.run_coroutine_threadsafe(self.sessions[session].close(code, reason), self.loop)
        future.result(5)

    def request_approval(self, session: int, approval_id: str, *, tool: str = "unlock_door") -> None:
        item = {
            "id": approval_id,
            "type": "mcp_approval_request",
            "server_label": "hotel",
            "name": tool,
            "arguments": '{"room":"1204"}',
        }
        self.send(session, {"type": "conversation.item.done", "event_id": f"event_{approval_id}", "item": item})

    def approval_responses(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                e["item"]
                for _, e in self.received
                if e.get("type") == "conversation.item.create" and e["item"].get("type") == "mcp_approval_response"
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; upstream received: {self.received}")
            time.sleep(0.02)


@pytest.fixture
def threaded_upstream() -> Iterator[ThreadedUpstream]:
    upstream = ThreadedUpstream().start()
    yield upstream
    upstream.stop()
