"""A real MCP client for the simulator: list a server's tools, decide approval, call a tool.

Used by the Realtime sessions (simulator/listing.py, simulator/turns.py) and by the Responses API side
(simulator/responses_api.py).
Every function takes the `mcp` tool object exactly as the client configured it
(REALTIME_PROTOCOL.md section 3.1) and speaks MCP over the network with the official `mcp` SDK:
Streamable HTTP, or the older HTTP+SSE transport when the URL's path ends in `/sse`.

Reference: https://modelcontextprotocol.io/specification/2025-06-18/basic/transports
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx2
import mcp_types
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

logger = logging.getLogger(__name__)

# One listing or one tools/call may take this long before the simulator gives up on the server.
LIST_TIMEOUT = 15.0
CALL_TIMEOUT = 60.0
CONNECT_TIMEOUT = 5.0


class McpListError(Exception):
    """Tool listing failed; the message says why in plain words (shown in logs and error events)."""


class _HttpStatus(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason


def request_headers(tool_cfg: dict[str, Any]) -> dict[str, str]:
    """Headers sent on every request to the server: `authorization` as a Bearer token, plus `headers`."""
    headers = {str(k): str(v) for k, v in (tool_cfg.get("headers") or {}).items()}
    if tool_cfg.get("authorization"):
        headers["Authorization"] = f"Bearer {tool_cfg['authorization']}"
    return headers


def uses_sse(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith("/sse")


@asynccontextmanager
async def _connect(tool_cfg: dict[str, Any], statuses: list[_HttpStatus]) -> AsyncIterator[Client]:
    url = tool_cfg.get("server_url")
    if not url:
        # connector_id and tunnel_id name OpenAI-hosted infrastructure that does not exist offline.
        what = "connector_id" if tool_cfg.get("connector_id") else "tunnel_id" if tool_cfg.get("tunnel_id") else ""
        raise McpListError(f"the simulator cannot reach a {what or 'server without server_url'} offline")
    headers = request_headers(tool_cfg)

    async def remember_status(response: httpx2.Response) -> None:
        # The MCP transports turn an HTTP error into a generic JSON-RPC error; keep the status for the cause.
        if response.status_code >= 400:
            statuses.append(_HttpStatus(response.status_code, response.reason_phrase))

    def http_client(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(CONNECT_TIMEOUT, read=CALL_TIMEOUT),
            auth=auth,
            event_hooks={"response": [remember_status]},
        )

    if uses_sse(url):
        transport = sse_client(url, headers=headers, timeout=CONNECT_TIMEOUT, httpx_client_factory=http_client)
    else:
        transport = streamable_http_client(url, http_client=http_client(headers))
    async with Client(transport, cache=None) as client:
        yield client


def _cause(exc: BaseException, statuses: list[_HttpStatus]) -> str:
    """Plain words for why talking to the server failed."""
    if statuses:
        s = statuses[0]
        if s.status in (401, 403):
            return f"the server rejected the credentials (HTTP {s.status} {s.reason})"
        return f"the server answered HTTP {s.status} {s.reason}"
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpListError):
        return str(exc)
    if isinstance(exc, httpx2.ConnectError | ConnectionError):
        return f"the server is unreachable ({exc or type(exc).__name__})"
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return "the server did not answer in time"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"the server answered HTTP {exc.response.status_code}"
    if isinstance(exc, MCPError):
        return f"the server answered with an MCP error {exc.code}: {exc.message}"
    return f"the server gave no usable MCP answer ({type(exc).__name__}: {exc})"


def _realtime_tool(tool: mcp_types.Tool) -> dict[str, Any]:
    # Realtime mcp_list_tools item shape (section 4); OpenAI reports the MCP readOnlyHint as `read_only`.
    annotations = None
    if tool.annotations is not None:
        annotations = {"read_only": bool(tool.annotations.read_only_hint)}
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "annotations": annotations,
    }


def _allowed(tool_cfg: dict[str, Any], tool: dict[str, Any]) -> bool:
    # Section 3.1: allowed_tools is a list of names, or a filter {tool_names, read_only}, or null.
    allowed = tool_cfg.get("allowed_tools")
    if allowed is None:
        return True
    if isinstance(allowed, list):
        return tool["name"] in allowed
    return _matches(allowed, tool)


def _matches(flt: dict[str, Any], tool: dict[str, Any]) -> bool:
    """An MCP tool filter: every condition given must hold (an empty filter matches nothing)."""
    names = flt.get("tool_names")
    read_only = flt.get("read_only")
    if names is None and read_only is None:
        return False
    if names is not None and tool["name"] not in names:
        return False
    return read_only is None or is_read_only(tool) == read_only


def is_read_only(tool: dict[str, Any]) -> bool:
    annotations = tool.get("annotations") or {}
    return bool(annotations.get("read_only", annotations.get("readOnlyHint", False)))


async def list_tools(tool_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The server's tools in Realtime item shape, after the `allowed_tools` filter.

    Raises McpListError when the server is unreachable, rejects the credentials, or answers with
    nothing usable (no tools at all, or none left after `allowed_tools`).
    """
    statuses: list[_HttpStatus] = []
    try:
        async with asyncio.timeout(LIST_TIMEOUT), _connect(tool_cfg, statuses) as client:
            tools: list[mcp_types.Tool] = []
            cursor: str | None = None
            for _ in range(100):  # a server that pages forever must not hang the session
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
    except McpListError:
        raise
    except (Exception, BaseExceptionGroup) as exc:
        logger.info("listing %s failed: %r", tool_cfg.get("server_url"), exc)
        raise McpListError(_cause(exc, statuses)) from exc
    if not tools:
        raise McpListError("the server lists no tools")
    listed = [_realtime_tool(t) for t in tools]
    kept = [t for t in listed if _allowed(tool_cfg, t)]
    if not kept:
        # Section 4: bad allowed_tools names are a documented cause of mcp_list_tools.failed.
        raise McpListError(f"none of the server's tools ({', '.join(t['name'] for t in listed)}) is in allowed_tools")
    return kept


def requires_approval(tool_cfg: dict[str, Any], tool: dict[str, Any]) -> bool:
    """Section 3.1: "always" | "never" | {always: filter, never: filter} | null (treated as "always").

    [INFERRED, section "Uncertain" 8] A tool matching `always` needs approval, even if it also matches
    `never` (asking is the safe side). A tool matching neither follows the other key: with only `always`
    given the rest need none, with only `never` given the rest need approval, with both they need approval.
    """
    policy = tool_cfg.get("require_approval")
    if policy is None or policy == "always":
        return True
    if policy == "never":
        return False
    always = policy.get("always")
    never = policy.get("never")
    if always is not None and _matches(always, tool):
        return True
    if never is not None and _matches(never, tool):
        return False
    return not (always is not None and never is None)


def _output_text(result: mcp_types.CallToolResult) -> str:
    parts = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            parts.append(json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True)))
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


async def call_tool(tool_cfg: dict[str, Any], name: str, arguments: str) -> tuple[str | None, dict[str, Any] | None]:
    """Run `tools/call` on the real server: (output text, None), or (None, error in Realtime shape).

    Errors follow section 7.1: the tool said isError → tool_execution_error; the server answered a JSON-RPC
    error → protocol_error with its code; HTTP failure or no answer → http_error.
    """
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return None, {"type": "protocol_error", "code": -32602, "message": f"Invalid arguments: {exc}"}
    if not isinstance(args, dict):
        return None, {"type": "protocol_error", "code": -32602, "message": "Invalid arguments: expected an object"}
    statuses: list[_HttpStatus] = []
    try:
        async with asyncio.timeout(CALL_TIMEOUT), _connect(tool_cfg, statuses) as client:
            result = await client.call_tool(name, args)
    except (Exception, BaseExceptionGroup) as exc:
        logger.info("tools/call %s on %s failed: %r", name, tool_cfg.get("server_url"), exc)
        if statuses:
            return None, {"type": "http_error", "code": statuses[0].status, "message": str(statuses[0])}
        if isinstance(exc, MCPError):
            return None, {"type": "protocol_error", "code": exc.code, "message": exc.message}
        return None, {"type": "http_error", "code": 502, "message": _cause(exc, statuses)}
    if result.is_error:
        return None, {"type": "tool_execution_error", "message": _output_text(result) or "The tool failed."}
    return _output_text(result), None
