"""Reach a remote MCP server the way OpenAI does: list its tools, call one.

Shared by Countersign's "Test connection" probe (approvals/probe.py) and the offline OpenAI
simulator (simulator/mcp_client.py), which may not import each other. It imports only the official
`mcp` SDK (with the `mcp_types` and `httpx2` packages the SDK is built on) and the standard library.

What OpenAI sends (REALTIME_PROTOCOL.md section 3.1): the tool's `headers`, plus `authorization` as
`Authorization: Bearer …`, over Streamable HTTP, or over the older HTTP+SSE transport ("auto" picks
it for a URL whose path ends in /sse). A failure is raised as LinkError with what was found: the
exception, the innermost one of its groups, and the first HTTP error status the server answered
(the MCP transports turn that into a generic error, which alone cannot say "wrong credentials").

Reference: https://modelcontextprotocol.io/specification/2025-06-18/basic/transports
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
import mcp_types
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

STREAMABLE_HTTP = "streamable_http"
SSE = "sse"
TRANSPORT_NAMES = {STREAMABLE_HTTP: "Streamable HTTP", SSE: "HTTP+SSE"}
CONNECT_TIMEOUT = 5.0
# A server that pages its tool list forever must not hang the caller.
MAX_PAGES = 100


def request_headers(*, authorization: str | None, headers: Mapping[str, Any] | None) -> dict[str, str]:
    """What OpenAI sends on every request: the custom headers, plus the bearer token."""
    sent = {str(k): str(v) for k, v in (headers or {}).items()}
    if authorization:
        sent["Authorization"] = f"Bearer {authorization}"
    return sent


def detect_transport(url: str, configured: str = "auto") -> str:
    """The transport to use: the configured one, or for "auto" SSE when the path ends in /sse."""
    if configured in (STREAMABLE_HTTP, SSE):
        return configured
    return SSE if urlsplit(url).path.rstrip("/").endswith("/sse") else STREAMABLE_HTTP


class HttpStatus(Exception):
    """An HTTP error status the server answered."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason


class LinkError(Exception):
    """Talking to the server failed. `exc` is what was raised, `innermost` the first leaf of its
    exception groups, `status` the first HTTP error status the server answered (if any)."""

    def __init__(self, exc: BaseException, statuses: list[HttpStatus]) -> None:
        super().__init__(repr(exc))
        self.exc = exc
        self.innermost = exc
        while isinstance(self.innermost, BaseExceptionGroup) and self.innermost.exceptions:
            self.innermost = self.innermost.exceptions[0]
        self.status = statuses[0] if statuses else None

    @property
    def credentials_rejected(self) -> bool:
        return self.status is not None and self.status.status in (401, 403)

    def chain(self) -> list[BaseException]:
        """The innermost exception and its causes (at most 10), for a diagnosis by any of them."""
        chain: list[BaseException] = []
        exc: BaseException | None = self.innermost
        while exc is not None and len(chain) < 10:
            chain.append(exc)
            exc = exc.__cause__ or exc.__context__
        return chain


@asynccontextmanager
async def _connect(
    url: str, transport: str, headers: dict[str, str], read_timeout: float, statuses: list[HttpStatus]
) -> AsyncIterator[Client]:
    async def remember_status(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            statuses.append(HttpStatus(response.status_code, response.reason_phrase))

    def http_client(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(CONNECT_TIMEOUT, read=read_timeout),
            auth=auth,
            event_hooks={"response": [remember_status]},
        )

    if transport == SSE:
        stream = sse_client(url, headers=headers, timeout=CONNECT_TIMEOUT, httpx_client_factory=http_client)
    else:
        stream = streamable_http_client(url, http_client=http_client(headers))
    async with Client(stream, cache=None) as client:
        yield client


@dataclass(frozen=True)
class Listing:
    tools: list[mcp_types.Tool]
    protocol_version: str
    server_name: str


async def list_tools(
    url: str, *, transport: str, headers: dict[str, str], time_limit: float, read_timeout: float | None = None
) -> Listing:
    """Connect, initialize and list every tool (all pages), all within `time_limit` seconds.
    `transport` is STREAMABLE_HTTP or SSE (see detect_transport); `headers` go on every request
    (see request_headers); `read_timeout` bounds one HTTP read (default: `time_limit`).
    Raises LinkError for any failure."""
    statuses: list[HttpStatus] = []
    try:
        async with (
            asyncio.timeout(time_limit),
            _connect(url, transport, headers, read_timeout or time_limit, statuses) as client,
        ):
            tools: list[mcp_types.Tool] = []
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            name = client.server_info.name if client.server_info else ""
            return Listing(tools, client.protocol_version, name)
    except (Exception, BaseExceptionGroup) as exc:
        raise LinkError(exc, statuses) from exc


async def call_tool(
    url: str,
    *,
    transport: str,
    headers: dict[str, str],
    name: str,
    arguments: dict[str, Any],
    time_limit: float,
    read_timeout: float | None = None,
) -> mcp_types.CallToolResult:
    """Connect, initialize and run `tools/call` once, within `time_limit` seconds. A tool that reports
    its own failure is a result (`is_error`), not an exception. Raises LinkError for any failure."""
    statuses: list[HttpStatus] = []
    try:
        async with (
            asyncio.timeout(time_limit),
            _connect(url, transport, headers, read_timeout or time_limit, statuses) as client,
        ):
            return await client.call_tool(name, arguments)
    except (Exception, BaseExceptionGroup) as exc:
        raise LinkError(exc, statuses) from exc
