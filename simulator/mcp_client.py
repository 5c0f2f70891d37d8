"""A real MCP client for the simulator: list a server's tools, decide approval, call a tool.

Used by the Realtime sessions (simulator/listing.py, simulator/turns.py) and by the Responses API side
(simulator/responses_api.py). Every function takes the `mcp` tool object exactly as the client configured
it (REALTIME_PROTOCOL.md section 3.1). The connection itself (transport, headers, timeouts, the failure
found) is mcp_link's, which Countersign's own probe of MCP servers uses too.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx2
import mcp_types
from mcp.shared.exceptions import MCPError

import mcp_link
from mcp_link import rules
from simulator import egress

logger = logging.getLogger(__name__)

# One listing or one tools/call may take this long before the simulator gives up on the server.
LIST_TIMEOUT = 15.0
CALL_TIMEOUT = 60.0


class McpListError(Exception):
    """Tool listing failed; the message says why in plain words (shown in logs and error events)."""


def request_headers(tool_cfg: dict[str, Any]) -> dict[str, str]:
    """Headers sent on every request to the server: `authorization` as a Bearer token, plus `headers`."""
    return mcp_link.request_headers(authorization=tool_cfg.get("authorization"), headers=tool_cfg.get("headers"))


def _server_url(tool_cfg: dict[str, Any]) -> str:
    url = tool_cfg.get("server_url")
    if not url:
        # connector_id and tunnel_id name OpenAI-hosted infrastructure that does not exist offline.
        what = "connector_id" if tool_cfg.get("connector_id") else "tunnel_id" if tool_cfg.get("tunnel_id") else ""
        raise McpListError(f"the simulator cannot reach a {what or 'server without server_url'} offline")
    try:
        egress.check(str(url))  # as OpenAI: no private hosts when asked (simulator/egress.py)
    except egress.EgressRefused as exc:
        raise McpListError(str(exc)) from None
    return str(url)


def _cause(failure: mcp_link.LinkError) -> str:
    """Plain words for why talking to the server failed."""
    if failure.status is not None:
        s = failure.status
        if failure.credentials_rejected:
            return f"the server rejected the credentials (HTTP {s.status} {s.reason})"
        return f"the server answered HTTP {s.status} {s.reason}"
    exc = failure.innermost
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


def _names_given(tool_cfg: dict[str, Any]) -> list[str] | None:
    """The tool names `allowed_tools` gives (its list, or its filter's tool_names), if any."""
    allowed = tool_cfg.get("allowed_tools")
    if isinstance(allowed, list):
        return [str(n) for n in allowed]
    if isinstance(allowed, dict) and allowed.get("tool_names") is not None:
        return [str(n) for n in allowed["tool_names"]]
    return None


async def list_tools(tool_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The server's tools OpenAI would import, in Realtime item shape (list_tools_explained)."""
    return (await list_tools_explained(tool_cfg))[0]


async def list_tools_explained(tool_cfg: dict[str, Any]) -> tuple[list[dict[str, Any]], list[rules.Refusal]]:
    """The server's tools OpenAI would import, in Realtime item shape, after the `allowed_tools` filter,
    and the listed tools left out as refused.

    Tools that mcp_link.rules refuses (the rules Countersign's probe applies too) are left out and the
    others kept [INFERRED, docs/simulator.md "Listing"]. An empty result is a completed listing with no
    tools: a server that lists none, a server whose every tool is refused, or an `allowed_tools` filter
    that matches none of the importable tools. Raises McpListError when the server is unreachable,
    rejects the credentials, answers with nothing usable, or `allowed_tools` names none of the tools
    the server lists (REALTIME_PROTOCOL.md section 4: bad allowed_tools names fail the listing).
    """
    url = _server_url(tool_cfg)
    try:
        listing = await mcp_link.list_tools(
            url,
            transport=mcp_link.AUTO,
            headers=request_headers(tool_cfg),
            time_limit=LIST_TIMEOUT,
            read_timeout=CALL_TIMEOUT,
        )
    except mcp_link.LinkError as failure:
        logger.info("listing %s failed: %r", url, failure.exc)
        raise McpListError(_cause(failure)) from failure.exc
    importable, refused = rules.importable(listing, _realtime_tool)
    for refusal in refused:
        logger.info("listing %s: left out %s", url, refusal)
    listed = [t.name for t in listing.tools] + [m.name for m in listing.malformed]
    names = _names_given(tool_cfg)
    if names is not None and listed and not set(names) & set(listed):
        raise McpListError(f"none of the server's tools ({', '.join(listed)}) is in allowed_tools")
    return [t for t in importable if _allowed(tool_cfg, t)], refused


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
    try:
        url = _server_url(tool_cfg)
    except McpListError as exc:
        return None, {"type": "http_error", "code": 502, "message": str(exc)}
    try:
        result = await mcp_link.call_tool(
            url,
            transport=mcp_link.AUTO,
            headers=request_headers(tool_cfg),
            name=name,
            arguments=args,
            time_limit=CALL_TIMEOUT,
        )
    except mcp_link.LinkError as failure:
        logger.info("tools/call %s on %s failed: %r", name, url, failure.exc)
        if failure.status is not None:
            return None, {"type": "http_error", "code": failure.status.status, "message": str(failure.status)}
        if isinstance(failure.exc, MCPError):
            return None, {"type": "protocol_error", "code": failure.exc.code, "message": failure.exc.message}
        return None, {"type": "http_error", "code": 502, "message": _cause(failure)}
    if result.is_error:
        return None, {"type": "tool_execution_error", "message": mcp_link.output_text(result) or "The tool failed."}
    return mcp_link.output_text(result), None
