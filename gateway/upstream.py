"""The gateway's side of the real MCP servers: one live MCP client connection per registered
server (its URL, transport and stored credentials), kept open and shared by the calls, so that a
proxied `tools/call` costs one request upstream, not a handshake each time.

A connection is keyed by everything that shapes it (URL, transport, headers): an admin who
changes the server's credentials gets a fresh one on the next call; the old one is closed. A
connection that died (the server restarted and forgot its MCP session) is dropped, and a call
that failed before it could reach the server (no connection, a 404 for a forgotten session) is
tried once more on a new one. Nothing else is retried: a tool call must not run twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx2
import mcp_types
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

import mcp_link

logger = logging.getLogger(__name__)

# The gateway names itself to the servers it calls (their logs then say who called).
USER_AGENT = "countersign-gateway/1.0"
CONNECT_TIMEOUT = 10.0
CALL_TIMEOUT = 120.0
MAX_PAGES = 100


@dataclass(frozen=True)
class Target:
    """Where and how to reach a server, as stored in the registry (secrets inside)."""

    label: str
    url: str
    transport: str
    headers: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        blob = json.dumps([self.url, self.transport, list(self.headers)])
        return hashlib.sha256(blob.encode()).hexdigest()


class UpstreamError(Exception):
    """The real server could not be reached or failed; the message is in plain words."""


class _Connection:
    """One MCP client connection, held open by its own task (anyio's cancel scopes must be left
    by the task that entered them)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.client: Client | None = None
        self.statuses: list[int] = []
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._error: BaseException | None = None
        self.alive = False
        self._task = asyncio.create_task(self._hold(), name=f"gateway-upstream-{target.label}")

    async def _hold(self) -> None:
        async def remember(response: httpx2.Response) -> None:
            if response.status_code >= 400:
                self.statuses.append(response.status_code)

        def factory(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(
                headers={"User-Agent": USER_AGENT, **(headers or {})},
                timeout=timeout or httpx2.Timeout(CONNECT_TIMEOUT, read=CALL_TIMEOUT),
                auth=auth,
                event_hooks={"response": [remember]},
            )

        headers = dict(self.target.headers)
        try:
            if self.target.transport == mcp_link.SSE:
                stream: Any = sse_client(
                    self.target.url, headers=headers, timeout=CONNECT_TIMEOUT, httpx_client_factory=factory
                )
            else:
                stream = streamable_http_client(self.target.url, http_client=factory(headers))
            async with Client(stream, cache=None) as client:
                self.client = client
                self.alive = True
                self._ready.set()
                await self._closing.wait()
        except (Exception, BaseExceptionGroup) as exc:
            self._error = exc
        finally:
            self.alive = False
            self._ready.set()

    async def ready(self) -> Client:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await self._ready.wait()
        if self.client is None or not self.alive:
            raise UpstreamError(_cause(self._error, self.statuses))
        return self.client

    async def close(self) -> None:
        self._closing.set()
        try:
            async with asyncio.timeout(5):
                await self._task
        except TimeoutError:
            self._task.cancel()


def _innermost(exc: BaseException | None) -> BaseException | None:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _cause(exc: BaseException | None, statuses: list[int]) -> str:
    if statuses:
        status = statuses[-1]
        if status in (401, 403):
            return f"the MCP server refused Countersign's stored credentials (HTTP {status})"
        return f"the MCP server answered HTTP {status}"
    inner = _innermost(exc)
    if isinstance(inner, httpx2.ConnectError | ConnectionError):
        return "the MCP server is unreachable"
    if isinstance(inner, TimeoutError | httpx2.TimeoutException):
        return "the MCP server did not answer in time"
    return f"the MCP server gave no usable answer ({type(inner).__name__})"


class Pool:
    """The open connections of this gateway process, one per target."""

    def __init__(self) -> None:
        self._connections: dict[str, _Connection] = {}
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    async def _get(self, target: Target) -> _Connection:
        async with self._lock:
            found = self._connections.get(target.label)
            if found is not None and found.alive and found.target.key == target.key:
                return found
            if found is not None:
                # Changed credentials or a dead connection: a new one, and the old one closed.
                self._connections.pop(target.label, None)
                task = asyncio.create_task(found.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            conn = _Connection(target)
            self._connections[target.label] = conn
            return conn

    async def _drop(self, conn: _Connection) -> None:
        async with self._lock:
            if self._connections.get(conn.target.label) is conn:
                del self._connections[conn.target.label]
        await conn.close()

    async def list_tools(self, target: Target) -> list[mcp_types.Tool]:
        conn = await self._get(target)
        try:
            client = await conn.ready()
            tools: list[mcp_types.Tool] = []
            cursor: str | None = None
            async with asyncio.timeout(CALL_TIMEOUT):
                for _ in range(MAX_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
            return tools
        except (Exception, BaseExceptionGroup) as exc:
            await self._drop(conn)
            raise exc if isinstance(exc, UpstreamError) else UpstreamError(_cause(exc, conn.statuses)) from exc

    async def call_tool(self, target: Target, name: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Run `tools/call` once. Retried on a new connection only when the first never reached
        the server (no connection, or the server no longer knew the MCP session)."""
        for attempt in (1, 2):
            conn = await self._get(target)
            try:
                client = await conn.ready()
            except UpstreamError:
                await self._drop(conn)
                if attempt == 2:
                    raise
                continue
            seen = len(conn.statuses)
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    return await client.call_tool(name, arguments)
            except (Exception, BaseExceptionGroup) as exc:
                inner = _innermost(exc)
                forgotten = 404 in conn.statuses[seen:]
                if isinstance(inner, MCPError) and not forgotten:
                    raise inner from None  # the server's own JSON-RPC error: the connection is fine
                await self._drop(conn)
                if attempt == 1 and forgotten:
                    logger.info("gateway: %s forgot the MCP session; reconnecting", target.label)
                    continue
                raise UpstreamError(_cause(exc, conn.statuses[seen:])) from exc
        raise UpstreamError("the MCP server could not be reached")

    async def close(self) -> None:
        async with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
