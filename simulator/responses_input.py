"""The request side of `POST /v1/responses` (REALTIME_PROTOCOL.md section 9): its `input` items and its
`mcp` tools, checked and normalised as the API does, and tools as a response echoes them back.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from simulator.http_common import ApiError


def new_item_id(prefix: str) -> str:
    # Section 9: Responses ids are a prefix plus 48 hex digits (mcpl_682d4379df08…, mcpr_…, resp_…).
    return f"{prefix}_{secrets.token_hex(24)}"


def input_items(raw: Any) -> list[dict[str, Any]]:
    """Normalise `input` (a string, or a list of items and easy messages) into a list of items."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list):
        raise ApiError(
            400, "Invalid type for 'input': expected a string or an array of items.", code="invalid_type", param="input"
        )
    items = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ApiError(
                400, f"Invalid type for 'input[{i}]': expected an object.", code="invalid_type", param=f"input[{i}]"
            )
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                content = [
                    {"type": "input_text" if item.get("role") != "assistant" else "output_text", "text": content}
                ]
            items.append({**item, "type": "message", "content": content or []})
        elif kind == "mcp_approval_response":
            if not isinstance(item.get("approval_request_id"), str) or not isinstance(item.get("approve"), bool):
                raise ApiError(
                    400,
                    f"Invalid 'input[{i}]': mcp_approval_response needs 'approval_request_id' and a boolean 'approve'.",
                    code="invalid_value",
                    param=f"input[{i}]",
                )
            items.append({**item, "id": item.get("id") or new_item_id("mcpa")})
        elif kind in ("mcp_list_tools", "mcp_approval_request", "mcp_call", "item_reference"):
            if not isinstance(item.get("id"), str):
                raise ApiError(
                    400,
                    f"Missing required parameter: 'input[{i}].id'.",
                    code="missing_required_parameter",
                    param=f"input[{i}].id",
                )
            items.append(item)
        else:
            raise ApiError(
                400,
                f"Invalid value for 'input[{i}].type': {kind!r} is not supported by the simulator.",
                code="invalid_value",
                param=f"input[{i}].type",
            )
    return items


def message_text(item: dict[str, Any]) -> str:
    return " ".join(part.get("text", "") for part in item.get("content") or [] if isinstance(part, dict))


def mcp_tools(raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ApiError(400, "Invalid type for 'tools': expected an array.", code="invalid_type", param="tools")
    tools: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "mcp":
            raise ApiError(
                400,
                f"Invalid value for 'tools[{i}].type': the simulator serves only 'mcp' tools.",
                code="invalid_value",
                param=f"tools[{i}].type",
            )
        label = tool.get("server_label")
        if not isinstance(label, str) or not label:
            raise ApiError(
                400,
                f"Missing required parameter: 'tools[{i}].server_label'.",
                code="missing_required_parameter",
                param=f"tools[{i}].server_label",
            )
        if label in tools:
            raise ApiError(
                400,
                f"Duplicate server_label {label!r} in tools.",
                code="invalid_value",
                param=f"tools[{i}].server_label",
            )
        if tool.get("server_url") and tool.get("connector_id"):
            raise ApiError(
                400, "Provide only one of 'server_url' or 'connector_id'.", code="invalid_value", param=f"tools[{i}]"
            )
        if not tool.get("server_url") and not tool.get("connector_id"):
            raise ApiError(
                400,
                f"Missing required parameter: 'tools[{i}].server_url'.",
                code="missing_required_parameter",
                param=f"tools[{i}].server_url",
            )
        headers = {k.lower() for k in tool.get("headers") or {}}
        if tool.get("authorization") and "authorization" in headers:
            raise ApiError(
                400,
                "Provide only one of 'authorization' or 'headers.Authorization'.",
                code="invalid_value",
                param=f"tools[{i}]",
            )
        tools[label] = tool
    return tools


def echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Section 9: header values are never stored and the path of server_url is dropped from echoed objects."""
    echoed = {k: v for k, v in tool.items() if k != "authorization"}
    if echoed.get("headers"):
        echoed["headers"] = None
    if echoed.get("server_url"):
        parts = urlsplit(echoed["server_url"])
        echoed["server_url"] = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    echoed.setdefault("allowed_tools", None)
    echoed.setdefault("require_approval", None)
    echoed.setdefault("server_description", None)
    return echoed
