"""Validating and merging session and response configuration (REALTIME_PROTOCOL.md sections 1.4, 3).

Pure functions, no I/O: a rejected update raises InvalidRequest, which the session turns into one
`error` event while the update is discarded as a whole (section 1.4).
"""

from __future__ import annotations

import copy
from typing import Any

import pydantic
from openai.types.realtime import RealtimeResponseCreateParams, RealtimeSessionCreateRequest
from openai.types.realtime.realtime_tools_config_union import Mcp

CONNECTORS = (
    "connector_dropbox",
    "connector_gmail",
    "connector_googlecalendar",
    "connector_googledrive",
    "connector_microsoftteams",
    "connector_outlookcalendar",
    "connector_outlookemail",
    "connector_sharepoint",
)
SESSION_FIELDS = frozenset(RealtimeSessionCreateRequest.model_fields)
RESPONSE_FIELDS = frozenset(RealtimeResponseCreateParams.model_fields)
# Read-only fields of an effective session that a stored config (client secret, SIP accept) may carry.
READ_ONLY_SESSION_FIELDS = frozenset({"object", "id", "expires_at", "client_secret"})
_SOURCES = ("server_url", "connector_id", "tunnel_id")


class InvalidRequest(Exception):
    """A client event the API would reject: becomes one `error` event (section 2.1); nothing changes."""

    def __init__(self, message: str, *, code: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


def _check_types(model: type[pydantic.BaseModel], data: dict[str, Any], path: str) -> None:
    """Type-check with the SDK's own model, so shapes match what the SDK would send."""
    try:
        model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"][:1])
        # Reference: the live API's own wording, e.g. "Invalid type for 'session.instructions'" [CAPTURE].
        raise InvalidRequest(
            f"Invalid value for '{path}.{loc}': {first['msg']}.", code="invalid_value", param=f"{path}.{loc}"
        ) from None


def _unknown(data: dict[str, Any], known: frozenset[str], path: str) -> None:
    for key in data:
        if key not in known:
            # Section 2.1: `unknown_parameter`, param e.g. `session.bogus_field` [CAPTURE].
            raise InvalidRequest(f"Unknown parameter: '{path}.{key}'.", code="unknown_parameter", param=f"{path}.{key}")


def resolve_tools(
    tools: Any, definitions: dict[str, dict[str, Any]], path: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Check a `tools` array (section 3.1). Returns (the array as the client sent it, the full definition of
    each mcp tool by label, with label reuse applied).

    Label reuse: a tool `{"type":"mcp","server_label":"x"}` without a url or connector takes the definition
    stored for "x" earlier in this session; fields it does give override the stored ones [INFERRED].
    """
    if not isinstance(tools, list):
        raise InvalidRequest(f"Invalid type for '{path}': expected an array.", code="invalid_type", param=path)
    resolved: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        where = f"{path}[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"Invalid type for '{where}': expected an object.", code="invalid_type", param=where)
        if tool.get("type") != "mcp":
            continue  # function tools are accepted; the scripted model never calls them
        _check_types(Mcp, tool, where)
        label = tool.get("server_label")
        if not isinstance(label, str) or not label:
            raise InvalidRequest(
                f"Missing required parameter: '{where}.server_label'.",
                code="missing_required_parameter",
                param=f"{where}.server_label",
            )
        # The failures below are the ones the Realtime MCP guide names; their codes are not documented
        # (section 3.1), so they use the generic codes seen on the wire.
        if label in resolved:
            raise InvalidRequest(
                f"Duplicate server_label '{label}' in '{path}': each MCP server needs its own label.",
                code="invalid_value",
                param=f"{where}.server_label",
            )
        given = [s for s in _SOURCES if tool.get(s)]
        if len(given) > 1:
            raise InvalidRequest(
                f"Only one of server_url, connector_id or tunnel_id may be set for server_label '{label}'.",
                code="invalid_value",
                param=f"{where}.{given[1]}",
            )
        if given:
            definition = copy.deepcopy(tool)
        elif label in definitions:
            definition = {**copy.deepcopy(definitions[label]), **copy.deepcopy(tool)}
        else:
            raise InvalidRequest(
                f"Missing required parameter: '{where}.server_url' (or connector_id): server_label '{label}' "
                "has not been defined in this session.",
                code="missing_required_parameter",
                param=f"{where}.server_url",
            )
        connector = definition.get("connector_id")
        if connector is not None and connector not in CONNECTORS:
            raise InvalidRequest(
                f"Invalid value: '{connector}'. Supported values are: {', '.join(CONNECTORS)}.",
                code="invalid_value",
                param=f"{where}.connector_id",
            )
        headers = definition.get("headers") or {}
        has_auth_header = isinstance(headers, dict) and any(k.lower() == "authorization" for k in headers)
        if has_auth_header and connector is not None:
            raise InvalidRequest(
                f"Connectors do not accept headers.Authorization (server_label '{label}'); use 'authorization'.",
                code="invalid_value",
                param=f"{where}.headers",
            )
        if has_auth_header and definition.get("authorization"):
            raise InvalidRequest(
                f"Set either 'authorization' or headers.Authorization for server_label '{label}', not both.",
                code="invalid_value",
                param=f"{where}.authorization",
            )
        resolved[label] = definition
    return tools, resolved


def merge_session(
    current: dict[str, Any],
    update: Any,
    definitions: dict[str, dict[str, Any]],
    *,
    path: str = "session",
    stored: bool = False,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]] | None]:
    """Section 1.4: the effective session after `update`, and the mcp definitions if `tools` was given.

    Top-level fields replace the current ones; `tools` is replaced as a whole (`[]` clears it). Nested
    objects (`audio`) merge key by key, so `{"audio":{"output":{"voice":"cedar"}}}` keeps the input
    settings [INFERRED: the SDK docstring says only fields that are present are updated].
    `stored=True` is for a config that was already accepted elsewhere (client secret, SIP accept).
    """
    if not isinstance(update, dict):
        raise InvalidRequest(f"Invalid type for '{path}': expected an object.", code="invalid_type", param=path)
    if stored:
        # A client secret's or SIP accept's session is an effective session: skip its read-only fields.
        update = {k: v for k, v in update.items() if k not in READ_ONLY_SESSION_FIELDS}
    _unknown(update, SESSION_FIELDS, path)
    if update.get("type", "realtime") != "realtime":
        raise InvalidRequest(
            f"Invalid value: '{update['type']}'. This connection only supports 'realtime' sessions.",
            code="invalid_value",
            param=f"{path}.type",
        )
    resolved = None
    if "tools" in update:
        _, resolved = resolve_tools(update["tools"], definitions, f"{path}.tools")
    _check_types(RealtimeSessionCreateRequest, {**update, "type": "realtime"}, path)
    _check_noise_reduction(update, path)
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "tool_choice":
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged, resolved


def _check_noise_reduction(update: dict[str, Any], path: str) -> None:
    """openai 3.60: "When you supply a `noise_reduction` object, you must set `type` to `near_field`
    or `far_field`" (null turns it off). The SDK's type leaves `type` optional, so it is checked here."""
    audio = update.get("audio")
    audio_input = audio.get("input") if isinstance(audio, dict) else None
    reduction = audio_input.get("noise_reduction") if isinstance(audio_input, dict) else None
    if isinstance(reduction, dict) and reduction.get("type") is None:
        param = f"{path}.audio.input.noise_reduction.type"
        raise InvalidRequest(f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("type", old.get("type")) != old.get("type"):
            # Another member of a union (turn_detection server_vad -> semantic_vad, as agents-js
            # sends): its fields replace the old member's, which it may not even have.
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(old, dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_response(body: Any, definitions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
    """Validate a `response.create` body; returns its mcp definitions by label if it has `tools`."""
    if not isinstance(body, dict):
        raise InvalidRequest("Invalid type for 'response': expected an object.", code="invalid_type", param="response")
    _unknown(body, RESPONSE_FIELDS, "response")
    resolved = None
    if "tools" in body:
        _, resolved = resolve_tools(body["tools"], definitions, "response.tools")
    checked = dict(body)
    if isinstance(body.get("input"), list):
        # `{"type":"item_reference","id":…}` entries are valid input (the SDK's "with references" params)
        # but not ConversationItems; the session resolves them against the conversation.
        checked["input"] = [i for i in body["input"] if not (isinstance(i, dict) and i.get("type") == "item_reference")]
    _check_types(RealtimeResponseCreateParams, checked, "response")
    conversation = body.get("conversation", "auto")
    if conversation not in ("auto", "none", None):
        raise InvalidRequest(
            f"Invalid value: '{conversation}'. Supported values are: 'auto' and 'none'.",
            code="invalid_value",
            param="response.conversation",
        )
    return resolved
