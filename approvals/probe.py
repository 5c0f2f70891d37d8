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

import logging
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import jsonschema
import mcp_types
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

import mcp_link
from mcp_link import SSE, STREAMABLE_HTTP, TRANSPORT_NAMES, LinkError

logger = logging.getLogger(__name__)

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


async def _list(url: str, transport: str, headers: dict[str, str]) -> mcp_link.Listing:
    return await mcp_link.list_tools(url, transport=transport, headers=headers, time_limit=PROBE_TIMEOUT)


def _is_tls(failure: LinkError) -> bool:
    return any(
        isinstance(e, ssl.SSLError) or "SSL" in str(e) or "CERTIFICATE" in str(e).upper() for e in failure.chain()
    )


def _is_network(failure: LinkError) -> bool:
    """Nothing usable answered at all: no point trying the other transport."""
    if failure.credentials_rejected:
        return True
    return _is_tls(failure) or any(
        isinstance(e, httpx2.ConnectError | ConnectionError | TimeoutError | httpx2.TimeoutException)
        for e in failure.chain()
    )


def _cause(failure: LinkError, url: str) -> str:
    """Why the probe failed, in plain words, with what to check."""
    where = urlsplit(url).netloc
    exc, status, chain = failure.innermost, failure.status, failure.chain()
    if status is not None and failure.credentials_rejected:
        return (
            f"the server rejected the credentials (HTTP {status.status} {status.reason}): "
            "check the authorization and the custom headers (e.g. X-API-Key)"
        )
    if _is_tls(failure):
        return f"the TLS handshake with {where} failed ({exc}): check the certificate, or http:// vs https://"
    if any(isinstance(e, TimeoutError | httpx2.TimeoutException) for e in chain):
        return f"{where} did not answer within {PROBE_TIMEOUT:.0f} seconds"
    if any(isinstance(e, httpx2.ConnectError | ConnectionError) for e in chain):
        return f"the server is unreachable: nothing accepts connections at {where} ({exc})"
    if isinstance(exc, RuntimeError) and "protocol version" in str(exc):
        return (
            f"the server negotiated an MCP protocol version this client does not support ({exc}); "
            f"supported: {', '.join(HANDSHAKE_PROTOCOL_VERSIONS)}"
        )
    if status is not None:
        return f"the server answered HTTP {status.status} {status.reason}"
    if isinstance(exc, MCPError):
        return f"the server answered with an MCP error {exc.code}: {exc.message}"
    return f"the server gave no usable MCP answer ({type(exc).__name__}: {exc})"


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
    transport = mcp_link.detect_transport(url, transport)
    result = ProbeResult(url=url, transport=transport)
    sent = mcp_link.request_headers(authorization=authorization, headers=headers)
    try:
        listing = await _list(url, transport, sent)
    except LinkError as failure:
        cause = _cause(failure, url)
        logger.info("probe of %s over %s failed: %s", url, transport, cause)
        if not _is_network(failure):
            other = SSE if transport == STREAMABLE_HTTP else STREAMABLE_HTTP
            try:
                await _list(url, other, sent)
            except LinkError:
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
    result.protocol_version, result.server_name = listing.protocol_version, listing.server_name
    result.tools = [tool_definition(t) for t in listing.tools]
    if not result.tools:
        result.problems.append("the server lists no tools: OpenAI would import nothing from it")
    names = [t["name"] for t in result.tools]
    for name in sorted({n for n in names if names.count(n) > 1}):
        result.problems.append(f"tool {name!r} is listed more than once")
    for definition in result.tools:
        result.problems.extend(check_tool(definition))
    result.ok = not result.problems
    return result
