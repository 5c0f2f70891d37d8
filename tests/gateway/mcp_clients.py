"""The official `mcp` Python client, as a test drives it against the gateway."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx2
import mcp_types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client


def http(token: str | None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10, read=180))


async def list_tools(url: str, token: str | None) -> list[str]:
    async with Client(streamable_http_client(url, http_client=http(token)), cache=None) as client:
        return [t.name for t in (await client.list_tools()).tools]


async def call(url: str, token: str | None, name: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
    async with Client(streamable_http_client(url, http_client=http(token)), cache=None) as client:
        return await client.call_tool(name, arguments)


def text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


class HeldCall(threading.Thread):
    """A client's tools/call in a thread of its own, recording the progress notifications it
    gets while it waits for staff."""

    def __init__(self, url: str, token: str, tool: str, arguments: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.tool, self.arguments = url, token, tool, arguments
        self.progress: list[tuple[float, str | None]] = []
        self.result: mcp_types.CallToolResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = asyncio.run(asyncio.wait_for(self._call(), 200))
        except BaseException as exc:
            self.error = exc

    async def _call(self) -> mcp_types.CallToolResult:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            self.progress.append((progress, message))

        async with Client(streamable_http_client(self.url, http_client=http(self.token)), cache=None) as client:
            return await client.call_tool(self.tool, self.arguments, progress_callback=on_progress)

    def outcome(self, timeout: float = 200) -> mcp_types.CallToolResult:
        self.join(timeout)
        assert not self.is_alive(), "the client's call did not return"
        assert self.error is None, repr(self.error)
        assert self.result is not None
        return self.result
