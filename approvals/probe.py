"""Connect to a registered MCP server the way OpenAI will, list its tools, and say in plain words
what would go wrong. Network only: storing the result is services.probe_mcp_server's job.

What OpenAI is given is the `mcp` tool entry of McpServer.to_tool(): the URL, the `authorization`
(sent as `Authorization: Bearer …`) and the custom headers; no transport. So the probe is given
exactly that, and tries the URL as mcp_link does for the simulator too: Streamable HTTP, then
HTTP+SSE when the specification's backwards-compatibility rule calls for it; with the `initialize`
handshake only, offering mcp_link.OFFERED_PROTOCOL_VERSION (see mcp_link for why). The registry's
transport is not what OpenAI uses: it is noted when it disagrees with what answered.

Which listed tools OpenAI would import is mcp_link.rules, the same rules the simulator applies: the
probe names each tool OpenAI would refuse and why, and lists the others.
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import mcp_types
from mcp.shared.exceptions import MCPError
from mcp_types import UNSUPPORTED_PROTOCOL_VERSION

import mcp_link
from mcp_link import AUTO, SSE, TRANSPORT_NAMES, LinkError, rules

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 20.0
METADATA_TIMEOUT = 5.0
_RESOURCE_METADATA = re.compile(r'resource_metadata\s*=\s*"?([^",\s]+)"?', re.IGNORECASE)


def versions_offered() -> str:
    """Which MCP protocol versions the probe offers and accepts, and why, in a sentence."""
    return (
        f"the probe offered MCP {mcp_link.OFFERED_PROTOCOL_VERSION} in the initialize handshake and accepts "
        f"{', '.join(mcp_link.ACCEPTED_PROTOCOL_VERSIONS)} (the handshake versions of the mcp SDK); it does "
        "not try the 2026-07-28 server/discover era, which OpenAI's client is not known to speak"
    )


@dataclass
class ProbeResult:
    """What a probe found. `ok` means OpenAI could import every listed tool."""

    url: str
    transport: str = ""  # the transport the listing went over ("" if none answered)
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    protocol_version: str = ""
    server_name: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)  # every well-formed listed tool, see tool_definition()
    refused: list[rules.Refusal] = field(default_factory=list)  # the listed tools OpenAI would not import
    reached: bool = False  # the tools were listed (even if some are unusable)

    @property
    def imported(self) -> list[str]:
        """The names of the tools OpenAI would import, in the server's order."""
        refused = {r.name for r in self.refused}
        return [t["name"] for t in self.tools if t["name"] not in refused]

    def report(self) -> str:
        """The report in plain words: one line per problem, or what was found."""
        head = self.url
        if self.reached:
            names = ", ".join(self.imported) or "none"
            found = f"OpenAI would import {len(self.imported)} tool(s): {names}; MCP protocol {self.protocol_version}"
            head = f"{head} over {TRANSPORT_NAMES[self.transport]}: {found}"
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


def check_tool(definition: dict[str, Any]) -> list[str]:
    """Why OpenAI would refuse this tool, in plain words (empty: it would import it)."""
    return [f"tool {definition['name']!r}: {r}" for r in rules.refusals(definition["name"], definition["input_schema"])]


def _is_tls(failure: LinkError) -> bool:
    return any(
        isinstance(e, ssl.SSLError) or "SSL" in str(e) or "CERTIFICATE" in str(e).upper() for e in failure.chain()
    )


async def _oauth(challenge: str) -> str:
    """What to do about a server that wants OAuth (RFC 9728: a 401 whose `WWW-Authenticate: Bearer`
    names its protected resource metadata): which authorization server to get a token from."""
    found = _RESOURCE_METADATA.search(challenge)
    if not found:
        return ""
    metadata_url = found.group(1)
    where = f"its protected resource metadata ({metadata_url})"
    try:
        async with httpx2.AsyncClient(timeout=METADATA_TIMEOUT) as client:
            metadata = (await client.get(metadata_url)).raise_for_status().json()
        servers = [str(s) for s in metadata.get("authorization_servers") or []]
        scopes = [str(s) for s in metadata.get("scopes_supported") or []]
    except (httpx2.HTTPError, ValueError, AttributeError) as exc:
        where += f", which could not be read ({type(exc).__name__})"
    else:
        where += f" names the authorization server {', '.join(servers) or '(none)'}"
        if scopes:
            where += f" and the scopes {', '.join(scopes)}"
    return (
        "the server wants OAuth: it answered HTTP 401 with WWW-Authenticate: Bearer resource_metadata=…; "
        f"{where}. OpenAI's hosted MCP client does not sign in by itself: it sends the server's `authorization` "
        "as 'Authorization: Bearer …'. Get an OAuth access token for this server from that authorization "
        "server and register it as the server's authorization (not as a custom header); renew it before it expires"
    )


async def _cause(failure: LinkError, url: str) -> str:
    """Why the probe failed, in plain words, with what to check."""
    where = urlsplit(url).netloc
    exc, status, chain = failure.innermost, failure.status, failure.chain()
    if failure.fallback is not None and status is not None:
        sse = failure.fallback
        if sse.credentials_rejected:
            return await _cause(sse, url)  # the HTTP+SSE endpoint is there and wants other credentials
        inner = sse.innermost
        got = f"answered {sse.status}" if sse.status else f"gave no event stream ({type(inner).__name__}: {inner})"
        return (
            f"this URL is no MCP endpoint: the Streamable HTTP POST answered HTTP {status.status} {status.reason}, "
            f"and the HTTP+SSE GET that the MCP specification says to try next {got}: check the path"
        )
    if status is not None and status.status == 401 and (oauth := await _oauth(status.www_authenticate)):
        return oauth
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
            f"the server negotiated an MCP protocol version this client does not support ({exc}); {versions_offered()}"
        )
    if status is not None:
        return f"the server answered HTTP {status.status} {status.reason}"
    if isinstance(exc, MCPError) and exc.code == UNSUPPORTED_PROTOCOL_VERSION:
        return (
            f"the server refused the initialize handshake as an unsupported protocol version ({exc.message}): "
            "it serves only the 2026-07-28 era (server/discover), which OpenAI's client is not known to speak; "
            f"{versions_offered()}"
        )
    if isinstance(exc, MCPError):
        return f"the server answered with an MCP error {exc.code}: {exc.message}"
    return f"the server gave no usable MCP answer ({type(exc).__name__}: {exc})"


def _judge(result: ProbeResult, listing: mcp_link.Listing) -> None:
    """The listed tools, judged by mcp_link.rules, into problems in plain words."""
    kept, result.refused = rules.importable(listing, tool_definition)
    listed = len(listing.tools) + len(listing.malformed)
    if not listed:
        result.problems.append(
            "the server lists no tools: OpenAI would import nothing from it (mcp_list_tools.completed with no tools)"
        )
    elif result.refused:
        result.problems.append(
            f"OpenAI would refuse {len(result.refused)} of the server's {listed} tools and import the other "
            f"{len(kept)}"
            + (" (mcp_list_tools.completed with no tools from this server)" if not kept else "")
            + "; whether OpenAI applies these rules to MCP tools is unverified (docs/registry.md)"
        )
        result.problems += [str(r) for r in result.refused]
    names = [t["name"] for t in result.tools]
    for name in sorted({n for n in names if names.count(n) > 1}):
        result.problems.append(f"tool {name!r} is listed more than once")


async def probe(*, url: str, authorization: str, headers: dict[str, str], transport: str = AUTO) -> ProbeResult:
    """Probe one server as OpenAI is given it: the URL, the authorization and the headers. `transport`
    is the registry's (the gateway's upstream transport); OpenAI never sees it, so it only adds a note
    when it disagrees with the one that answered. Never raises for a server problem: the result's
    `problems` say what is wrong. Logs carry the URL and the causes only, never a header value."""
    result = ProbeResult(url=url)
    sent = mcp_link.request_headers(authorization=authorization, headers=headers)
    try:
        listing = await mcp_link.list_tools(url, transport=AUTO, headers=sent, time_limit=PROBE_TIMEOUT)
    except LinkError as failure:
        cause = await _cause(failure, url)
        logger.info("probe of %s failed: %s", url, cause)
        result.problems.append(cause)
        result.notes.append(versions_offered())
        return result
    result.reached, result.transport = True, listing.transport
    result.protocol_version, result.server_name = listing.protocol_version, listing.server_name
    result.tools = [tool_definition(t) for t in listing.tools]
    _judge(result, listing)
    result.notes.append(f"{versions_offered()}; the server chose {listing.protocol_version}")
    if listing.transport == SSE:
        result.notes.append(
            "this URL is an HTTP+SSE endpoint: its Streamable HTTP POST got a 4xx, so, as the MCP specification's "
            "backwards-compatibility rule says, the probe fell back to HTTP+SSE. OpenAI documents support for both "
            "transports but not how it chooses (unverified): prefer the server's Streamable HTTP URL if it has one"
        )
    configured = mcp_link.detect_transport(url, transport)
    if configured not in (AUTO, listing.transport):
        result.notes.append(
            f"the registry names {TRANSPORT_NAMES[configured]}, but OpenAI is given the URL alone and this URL "
            f"answers {TRANSPORT_NAMES[listing.transport]}; the registry's transport is what Countersign's gateway "
            "uses upstream"
        )
    result.ok = not result.problems
    return result
