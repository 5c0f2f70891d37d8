"""Reach a remote MCP server the way OpenAI does: list its tools, call one.

Shared by Countersign's "Test connection" probe (approvals/probe.py) and the offline OpenAI
simulator (simulator/mcp_client.py), which may not import each other; `mcp_link.rules` holds the one
rule set for which listed tools OpenAI would import. It imports only the official `mcp` SDK (with the
`mcp_types`, `httpx2`, `pydantic` and `jsonschema` packages the SDK is built on) and the standard
library.

What OpenAI is given is the tool's `server_url` alone (REALTIME_PROTOCOL.md section 3.1): no transport.
It sends the tool's `headers`, plus `authorization` as `Authorization: Bearer …`. With AUTO (the
default) the URL is tried as a client following the MCP specification's backwards-compatibility rule
does: Streamable HTTP first (POST `initialize`); when that POST gets a 4xx other than 401/403, the
older HTTP+SSE transport (GET an event stream) on the same URL. Verified: OpenAI documents support for
both transports, and a third-party capture (openai/openai-agents-python#1608) shows the Realtime API
POSTing to the URL first. Unverified: how OpenAI chooses between them (docs/registry.md).

The protocol version: OpenAI's hosted client is a handshake-era client (the capture shows
`mcp-protocol-version: 2024-11-05`); nothing says it speaks the 2026-07-28 `server/discover` era. So
the connection uses the `initialize` handshake only (the SDK's mode "legacy"): it offers
OFFERED_PROTOCOL_VERSION, the SDK's newest handshake version, and accepts any of
ACCEPTED_PROTOCOL_VERSIONS (the SDK's HANDSHAKE_PROTOCOL_VERSIONS); Listing.protocol_version is the one
the server chose.

A failure is raised as LinkError with what was found: the exception, the innermost one of its groups,
and the first HTTP error status the server answered, with its `WWW-Authenticate` header (the MCP
transports turn that into a generic error, which alone cannot say "wrong credentials").

Reference: https://modelcontextprotocol.io/specification/2025-11-25/basic/transports#backwards-compatibility
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp_types
import pydantic
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

STREAMABLE_HTTP = "streamable_http"
SSE = "sse"
# Streamable HTTP, else HTTP+SSE, as the specification's backwards-compatibility rule says.
AUTO = "auto"
TRANSPORT_NAMES = {STREAMABLE_HTTP: "Streamable HTTP", SSE: "HTTP+SSE", AUTO: "Streamable HTTP, else HTTP+SSE"}
OFFERED_PROTOCOL_VERSION = LATEST_HANDSHAKE_VERSION
ACCEPTED_PROTOCOL_VERSIONS = HANDSHAKE_PROTOCOL_VERSIONS
CONNECT_TIMEOUT = 5.0
# A server that pages its tool list forever must not hang the caller.
MAX_PAGES = 100


def request_headers(*, authorization: str | None, headers: Mapping[str, Any] | None) -> dict[str, str]:
    """What OpenAI sends on every request: the custom headers, plus the bearer token."""
    sent = {str(k): str(v) for k, v in (headers or {}).items()}
    if authorization:
        sent["Authorization"] = f"Bearer {authorization}"
    return sent


def detect_transport(url: str, configured: str = AUTO) -> str:
    """The transport to use: STREAMABLE_HTTP or SSE when one is configured, else AUTO (try both,
    as the specification says; the URL's path decides nothing)."""
    return configured if configured in (STREAMABLE_HTTP, SSE) else AUTO


class HttpStatus(Exception):
    """An HTTP error status the server answered, with its `WWW-Authenticate` header (if any)."""

    def __init__(self, status: int, reason: str, www_authenticate: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason
        self.www_authenticate = www_authenticate


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
        # With AUTO: the transport this failure happened on, and the HTTP+SSE attempt that followed
        # a Streamable HTTP failure (when the specification's rule called for one).
        self.transport = ""
        self.fallback: LinkError | None = None

    @property
    def credentials_rejected(self) -> bool:
        return self.status is not None and self.status.status in (401, 403)

    @property
    def calls_for_sse(self) -> bool:
        """The specification's rule: a 4xx to the Streamable HTTP POST means "try HTTP+SSE"
        (401/403 are about credentials, which the other transport would reject as well)."""
        return self.status is not None and 400 <= self.status.status < 500 and not self.credentials_rejected

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
            challenge = response.headers.get("www-authenticate", "")
            statuses.append(HttpStatus(response.status_code, response.reason_phrase, challenge))

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
    # The initialize handshake only ("legacy"), as OpenAI's hosted client speaks it (see above).
    async with Client(stream, cache=None, mode="legacy") as client:
        yield client


@dataclass(frozen=True)
class Malformed:
    """A listed tool the SDK's types refuse (e.g. an input schema whose "type" is not "object"):
    its name (or `#n` for a nameless one), its raw JSON, and why, in plain words."""

    name: str
    raw: Any
    reason: str


@dataclass(frozen=True)
class Listing:
    tools: list[mcp_types.Tool]
    protocol_version: str
    server_name: str
    transport: str = STREAMABLE_HTTP  # the one the listing went over
    malformed: list[Malformed] = field(default_factory=list)


def _plain(error: pydantic.ValidationError) -> str:
    """One tool's validation errors (as validated inside a `tools/list` result) in a line, not a
    pydantic dump."""
    said = []
    for e in error.errors()[:3]:
        loc = tuple(e["loc"])[2:] if tuple(e["loc"])[:1] == ("tools",) else tuple(e["loc"])
        if loc == ("inputSchema", "type"):
            said.append(f'its inputSchema has "type": {json.dumps(e["input"])}, not "object"')
        else:
            said.append(f"{'.'.join(str(part) for part in loc) or 'the tool'}: {e['msg']}")
    return "; ".join(said)


async def _raw_page(client: Client, cursor: str | None) -> dict[str, Any]:
    """One `tools/list` page as JSON, unvalidated, for a listing the SDK's types refuse as a whole
    because of one tool. The SDK (2.3) has no public call for an unvalidated result: this sends the
    request exactly as ClientSession.send_request does (its stamp, its dispatcher)."""
    session = client.session
    data: dict[str, Any] = {"method": "tools/list", "params": {"cursor": cursor} if cursor else {}}
    opts: Any = {}
    session._stamp(data, opts)
    raw = await session._dispatcher.send_raw_request("tools/list", data.get("params"), opts)
    return raw if isinstance(raw, dict) else {}


async def _page(client: Client, cursor: str | None, malformed: list[Malformed]) -> tuple[list[mcp_types.Tool], Any]:
    try:
        page = await client.list_tools(cursor=cursor)
        return list(page.tools), page.next_cursor
    except pydantic.ValidationError:
        raw = await _raw_page(client, cursor)
    tools = []
    for n, entry in enumerate(raw.get("tools") or []):
        try:
            # Each tool alone, by the same types the SDK applies to the whole result.
            methods.validate_server_result("tools/list", client.protocol_version, {"tools": [entry]})
            tools.append(mcp_types.Tool.model_validate(entry))
        except pydantic.ValidationError as exc:
            name = entry.get("name") if isinstance(entry, dict) else None
            malformed.append(Malformed(name if isinstance(name, str) else f"#{n}", entry, _plain(exc)))
    return tools, raw.get("nextCursor")


async def _list_over(
    url: str, transport: str, headers: dict[str, str], time_limit: float, read_timeout: float | None
) -> Listing:
    statuses: list[HttpStatus] = []
    try:
        async with (
            asyncio.timeout(time_limit),
            _connect(url, transport, headers, read_timeout or time_limit, statuses) as client,
        ):
            tools: list[mcp_types.Tool] = []
            malformed: list[Malformed] = []
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                page, cursor = await _page(client, cursor, malformed)
                tools.extend(page)
                if not cursor or not isinstance(cursor, str):
                    break
            name = client.server_info.name if client.server_info else ""
            return Listing(tools, client.protocol_version, name, transport, malformed)
    except (Exception, BaseExceptionGroup) as exc:
        failure = LinkError(exc, statuses)
        failure.transport = transport
        raise failure from exc


async def list_tools(
    url: str, *, transport: str = AUTO, headers: dict[str, str], time_limit: float, read_timeout: float | None = None
) -> Listing:
    """Connect, initialize and list every tool (all pages), within `time_limit` seconds per
    transport tried. `transport` is AUTO (Streamable HTTP, else HTTP+SSE, as OpenAI is given only
    the URL), STREAMABLE_HTTP or SSE; `headers` go on every request (see request_headers);
    `read_timeout` bounds one HTTP read (default: `time_limit`). Tools the SDK's types refuse are
    left out of `tools` and named in `malformed`. Raises LinkError for any failure: with AUTO, the
    Streamable HTTP one, with the HTTP+SSE attempt in its `fallback`."""
    if transport != AUTO:
        return await _list_over(url, transport, headers, time_limit, read_timeout)
    try:
        return await _list_over(url, STREAMABLE_HTTP, headers, time_limit, read_timeout)
    except LinkError as failure:
        if not failure.calls_for_sse:
            raise
        try:
            return await _list_over(url, SSE, headers, time_limit, read_timeout)
        except LinkError as sse_failure:
            failure.fallback = sse_failure
            raise failure from None


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
    """Connect, initialize and run `tools/call` once, within `time_limit` seconds. `transport` as for
    list_tools (AUTO tries Streamable HTTP, and HTTP+SSE when the specification's rule says so). A tool
    that reports its own failure is a result (`is_error`), not an exception. Raises LinkError for any
    failure."""
    if transport == AUTO:
        try:
            return await call_tool(
                url,
                transport=STREAMABLE_HTTP,
                headers=headers,
                name=name,
                arguments=arguments,
                time_limit=time_limit,
                read_timeout=read_timeout,
            )
        except LinkError as failure:
            if not failure.calls_for_sse:
                raise
            transport = SSE
    statuses: list[HttpStatus] = []
    try:
        async with (
            asyncio.timeout(time_limit),
            _connect(url, transport, headers, read_timeout or time_limit, statuses) as client,
        ):
            return await client.call_tool(name, arguments)
    except (Exception, BaseExceptionGroup) as exc:
        raise LinkError(exc, statuses) from exc


def output_text(result: mcp_types.CallToolResult) -> str:
    """A tool result's content as text: text blocks as they are, other blocks as JSON, and the
    structured content when there is no block (what the simulator reports and the gateway records)."""
    parts = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            parts.append(json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True)))
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)
