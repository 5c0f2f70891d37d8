"""Small real MCP servers for the simulator's tests, run by uvicorn in a thread of the test process.

They speak MCP with the official SDK (Streamable HTTP at /mcp, HTTP+SSE at /sse), like the hotel
server does, but cover what the hotel does not: a server with zero tools, a tool that fails, and a
record of every call and every request header so a test can see what the simulator really sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import mcp_types
import pytest
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.plugins.processes import ThreadServer as _ThreadServer
from tests.plugins.processes import free_port

DESK_KEY = "desk-key-123"


@dataclass
class DeskState:
    """What the front-desk server saw: each tools/call and the headers of each HTTP request."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bell_rings: int = 0


def _desk_server(state: DeskState) -> MCPServer:
    mcp = MCPServer("front-desk")

    @mcp.tool(annotations=mcp_types.ToolAnnotations(read_only_hint=True))
    def get_status(room: str) -> str:
        """Read a room's status."""
        state.calls.append(("get_status", {"room": room}))
        return f"Room {room} is clean and vacant."

    @mcp.tool(annotations=mcp_types.ToolAnnotations(read_only_hint=False))
    def ring_bell(room: str, times: int = 1) -> str:
        """Ring the bell of a room (changes state)."""
        state.calls.append(("ring_bell", {"room": room, "times": times}))
        state.bell_rings += times
        return f"Rang room {room} {times} time(s)."

    @mcp.tool()
    def jam_printer(reason: str) -> str:
        """Always fails (no annotations at all)."""
        state.calls.append(("jam_printer", {"reason": reason}))
        raise ValueError(f"printer jammed: {reason}")

    return mcp


class _KeyCheck:
    """401 unless X-API-Key is right (the hotel server does the same); records request headers."""

    def __init__(self, app: ASGIApp, state: DeskState, key: str | None) -> None:
        self.app, self.state, self.key = app, state, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.state.headers.append(headers)
            if self.key is not None and headers.get("x-api-key") != self.key:
                body = json.dumps({"error": "invalid or missing X-API-Key"}).encode()
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _app(mcp: MCPServer, state: DeskState, key: str | None) -> ASGIApp:
    app = mcp.streamable_http_app()
    app.router.routes.extend(mcp.sse_app().routes)
    return _KeyCheck(app, state, key)


@dataclass
class McpServers:
    """URLs of the test servers. `desk` needs X-API-Key: DESK_KEY; `empty` lists no tools."""

    desk_base: str
    empty_base: str
    down_base: str
    desk: DeskState

    @property
    def desk_mcp(self) -> str:
        return f"{self.desk_base}/mcp"

    @property
    def desk_sse(self) -> str:
        return f"{self.desk_base}/sse"

    def desk_tool(self, label: str = "desk", *, sse: bool = False, **fields: Any) -> dict[str, Any]:
        """An `mcp` tool object for the desk server, with the right key unless `headers` is given."""
        tool: dict[str, Any] = {
            "type": "mcp",
            "server_label": label,
            "server_url": self.desk_sse if sse else self.desk_mcp,
            "headers": {"X-API-Key": DESK_KEY},
        }
        tool.update(fields)
        return tool


@pytest.fixture(scope="session")
def _mcp_servers_running() -> Iterator[McpServers]:
    desk_state = DeskState()
    empty_state = DeskState()
    with (
        _ThreadServer(_app(_desk_server(desk_state), desk_state, DESK_KEY)) as desk,
        _ThreadServer(_app(MCPServer("empty"), empty_state, None)) as empty,
    ):
        yield McpServers(
            desk_base=f"http://127.0.0.1:{desk.port}",
            empty_base=f"http://127.0.0.1:{empty.port}",
            down_base=f"http://127.0.0.1:{free_port()}",
            desk=desk_state,
        )


@pytest.fixture
def mcp_servers(_mcp_servers_running: McpServers) -> McpServers:
    """The servers, with the desk's record cleared for this test."""
    desk = _mcp_servers_running.desk
    desk.calls.clear()
    desk.headers.clear()
    desk.bell_rings = 0
    return _mcp_servers_running
