"""Connect to a registered MCP server the way OpenAI will, list its tools, and say in plain words
what would go wrong. Network only: storing the result is services.probe_mcp_server's job.

The connection uses the official `mcp` client with the server's own credentials, sent as OpenAI
sends them (`authorization` as `Authorization: Bearer …`, plus every custom header), over the
transport the registry names (Streamable HTTP, or HTTP+SSE; "auto" picks SSE for a path ending in
/sse, as the simulator does). When that fails for a reason other than the network or the
credentials, the other transport is tried too, so that "this is an SSE endpoint" can be said.

The checks on the listed tools are the ones the Realtime API applies to function-like tools
(REALTIME_PROTOCOL.md section 3/4): a name of 1-64 letters, digits, `_` or `-`, and an input
schema that is a valid JSON Schema for an object. MCP itself allows more (dots, slashes, 128
characters), which is why a server can pass its own tests and still fail at session start.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import jsonschema
import mcp_types
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

logger = logging.getLogger(__name__)

STREAMABLE_HTTP = "streamable_http"
SSE = "sse"
TRANSPORT_NAMES = {STREAMABLE_HTTP: "Streamable HTTP", SSE: "HTTP+SSE"}
CONNECT_TIMEOUT = 5.0
PROBE_TIMEOUT = 20.0
# OpenAI function-tool names; MCP allows more (SEP-986: dots, slashes, up to 128 characters).
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ProbeResult:
    """What a probe found. `ok` means OpenAI could import every listed tool."""

    url: str
    transport: str  # the one configured (or detected from the URL)
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    protocol_version: str = ""
    server_name: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)  # definitions, see tool_definition()
    reached: bool = False  # the tools were listed (even if some are unusable)

    def report(self) -> str:
        """The report in plain words: one line per problem, or what was found."""
        head = f"{self.url} over {TRANSPORT_NAMES[self.transport]}"
        if self.reached:
            names = ", ".join(t["name"] for t in self.tools) or "none"
            found = f"{len(self.tools)} tool(s): {names}; MCP protocol {self.protocol_version}"
            head = f"{head}: {found}"
        lines = [("OK: " if self.ok else "FAILED: ") + head]
        lines += [f"- {problem}" for problem in self.problems]
        lines += [f"- note: {note}" for note in self.notes]
        return "\n".join(lines)


class _HttpStatus(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason


def request_headers(*, authorization: str, headers: dict[str, str]) -> dict[str, str]:
    """What OpenAI sends on every request: the custom headers, plus the bearer token."""
    sent = {str(k): str(v) for k, v in (headers or {}).items()}
    if authorization:
        sent["Authorization"] = f"Bearer {authorization}"
    return sent


def detect_transport(url: str, configured: str) -> str:
    if configured in (STREAMABLE_HTTP, SSE):
        return configured
    return SSE if urlsplit(url).path.rstrip("/").endswith("/sse") else STREAMABLE_HTTP


def tool_definition(tool: mcp_types.Tool) -> dict[str, Any]:
    """The parts of a tool that decide what a call does, as stored and hashed for drift."""
    annotations = (
        tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True) if tool.annotations else None
    )
    return {
        "name": tool.name,
        "description": tool.description or "",
        "input_schema": tool.input_schema,
        "annotations": annotations,
    }


@asynccontextmanager
async def _connect(
    url: str, transport: str, headers: dict[str, str], statuses: list[_HttpStatus]
) -> AsyncIterator[Client]:
    async def remember_status(response: httpx2.Response) -> None:
        # The MCP transports turn an HTTP error into a generic error; keep the status for the cause.
        if response.status_code >= 400:
            statuses.append(_HttpStatus(response.status_code, response.reason_phrase))

    def http_client(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(CONNECT_TIMEOUT, read=PROBE_TIMEOUT),
            auth=auth,
            event_hooks={"response": [remember_status]},
        )

    if transport == SSE:
        stream = sse_client(url, headers=headers, timeout=CONNECT_TIMEOUT, httpx_client_factory=http_client)
    else:
        stream = streamable_http_client(url, http_client=http_client(headers))
    async with Client(stream, cache=None) as client:
        yield client


async def _list(url: str, transport: str, headers: dict[str, str]) -> tuple[list[mcp_types.Tool], str, str]:
    statuses: list[_HttpStatus] = []
    try:
        async with asyncio.timeout(PROBE_TIMEOUT), _connect(url, transport, headers, statuses) as client:
            tools: list[mcp_types.Tool] = []
            cursor: str | None = None
            for _ in range(100):  # a server that pages forever must not hang the probe
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            name = client.server_info.name if client.server_info else ""
            return tools, client.protocol_version, name
    except (Exception, BaseExceptionGroup) as exc:
        raise _Failure(exc, statuses) from exc


class _Failure(Exception):
    def __init__(self, exc: BaseException, statuses: list[_HttpStatus]) -> None:
        super().__init__(repr(exc))
        self.exc = _innermost(exc)
        self.status = statuses[0] if statuses else None

    def _chain(self) -> list[BaseException]:
        chain, exc = [], self.exc
        while exc is not None and len(chain) < 10:
            chain.append(exc)
            exc = exc.__cause__ or exc.__context__
        return chain

    @property
    def is_tls(self) -> bool:
        return any(
            isinstance(e, ssl.SSLError) or "SSL" in str(e) or "CERTIFICATE" in str(e).upper() for e in self._chain()
        )

    @property
    def is_network(self) -> bool:
        """Nothing usable answered at all: no point trying the other transport."""
        if self.status is not None and self.status.status in (401, 403):
            return True
        return self.is_tls or any(
            isinstance(e, httpx2.ConnectError | ConnectionError | TimeoutError | httpx2.TimeoutException)
            for e in self._chain()
        )

    def cause(self, url: str) -> str:
        where = urlsplit(url).netloc
        if self.status is not None and self.status.status in (401, 403):
            return (
                f"the server rejected the credentials (HTTP {self.status.status} {self.status.reason}): "
                "check the authorization and the custom headers (e.g. X-API-Key)"
            )
        if self.is_tls:
            return f"the TLS handshake with {where} failed ({self.exc}): check the certificate, or http:// vs https://"
        if any(isinstance(e, TimeoutError | httpx2.TimeoutException) for e in self._chain()):
            return f"{where} did not answer within {PROBE_TIMEOUT:.0f} seconds"
        if any(isinstance(e, httpx2.ConnectError | ConnectionError) for e in self._chain()):
            return f"the server is unreachable: nothing accepts connections at {where} ({self.exc})"
        if isinstance(self.exc, RuntimeError) and "protocol version" in str(self.exc):
            return (
                f"the server negotiated an MCP protocol version this client does not support ({self.exc}); "
                f"supported: {', '.join(HANDSHAKE_PROTOCOL_VERSIONS)}"
            )
        if self.status is not None:
            return f"the server answered HTTP {self.status.status} {self.status.reason}"
        if isinstance(self.exc, MCPError):
            return f"the server answered with an MCP error {self.exc.code}: {self.exc.message}"
        return f"the server gave no usable MCP answer ({type(self.exc).__name__}: {self.exc})"


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def check_tool(definition: dict[str, Any]) -> list[str]:
    """Why the Realtime API would refuse this tool, in plain words (empty: it would accept it)."""
    name = definition["name"]
    problems = []
    if not TOOL_NAME.match(name):
        problems.append(
            f"tool {name!r}: the name must be 1-64 letters, digits, '_' or '-' for the Realtime API "
            "(rename it on the server)"
        )
    schema = definition["input_schema"]
    if not isinstance(schema, dict) or schema.get("type") != "object":
        problems.append(f'tool {name!r}: the input schema must be a JSON Schema with "type": "object"')
    else:
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            problems.append(f"tool {name!r}: the input schema is not valid JSON Schema at {path}: {exc.message}")
    return problems


async def probe(*, url: str, transport: str, authorization: str, headers: dict[str, str]) -> ProbeResult:
    """Probe one server. Never raises for a server problem: the result's `problems` say what is wrong.
    Logs carry the URL and the causes only, never a header value."""
    transport = detect_transport(url, transport)
    result = ProbeResult(url=url, transport=transport)
    sent = request_headers(authorization=authorization, headers=headers)
    try:
        tools, result.protocol_version, result.server_name = await _list(url, transport, sent)
    except _Failure as failure:
        cause = failure.cause(url)
        logger.info("probe of %s over %s failed: %s", url, transport, cause)
        if not failure.is_network:
            other = SSE if transport == STREAMABLE_HTTP else STREAMABLE_HTTP
            try:
                await _list(url, other, sent)
            except _Failure:
                pass
            else:
                cause = (
                    f"wrong transport: this URL is a {TRANSPORT_NAMES[other]} endpoint, but the server is "
                    f"configured as {TRANSPORT_NAMES[transport]} (set the transport to {TRANSPORT_NAMES[other]}, "
                    f"or use the server's {TRANSPORT_NAMES[transport]} URL)"
                )
        result.problems.append(cause)
        return result
    result.reached = True
    result.tools = [tool_definition(t) for t in tools]
    if not result.tools:
        result.problems.append("the server lists no tools: OpenAI would import nothing from it")
    names = [t["name"] for t in result.tools]
    for name in sorted({n for n in names if names.count(n) > 1}):
        result.problems.append(f"tool {name!r} is listed more than once")
    for definition in result.tools:
        result.problems.extend(check_tool(definition))
    result.ok = not result.problems
    return result
