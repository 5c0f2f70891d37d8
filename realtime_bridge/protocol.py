"""The Realtime wire protocol as the relay needs it: reading a frame's type cheaply, checking
what a client may send, scrubbing what goes back to it, and building the relay's own events.

Pure Python, no Django. Event shapes come from the openai SDK's own types
(`openai.types.realtime`); nothing here re-declares what the SDK already types.
Reference: ../shared/docs/REALTIME_PROTOCOL.md (sections cited inline).
"""

from __future__ import annotations

import json
import re
import secrets
from itertools import accumulate
from typing import Any, Literal

from openai.types.realtime import (
    ConversationItemCreateEvent,
    RealtimeErrorEvent,
    RealtimeMcpApprovalRequest,
    RealtimeMcpApprovalResponse,
    RealtimeMcpToolCall,
    RealtimeResponseCreateParams,
    ResponseCreateEvent,
)
from openai.types.realtime.realtime_error import RealtimeError

# --- Reading the type -----------------------------------------------------------------------

# The audio append a client streams 50 times a second, in the exact compact form the SDKs
# send. A frame that starts with this prefix, ends with '"}' and holds exactly 8 double quotes
# is that two-key object and nothing else: the audio value contains no quote, hence no escape
# that could end it early, and there is no room for a second "type" key (Python's json keeps
# the last duplicate, another parser the first, so a smuggled key must not be possible).
_AUDIO_APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'

# Server frames come from OpenAI (trusted); the high-volume ones are passed on after reading
# the type alone. A nested item's "type" could come first in the text, but item types
# ("message", "mcp_call", ...) are never event types, so a match below cannot mislead.
_TYPE_RE = re.compile(r'"type"\s*:\s*"([a-z_.]+)"')
SERVER_PASSTHROUGH = frozenset(
    {
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_text.delta",
        "response.mcp_call_arguments.delta",
        "response.function_call_arguments.delta",
        "conversation.item.input_audio_transcription.delta",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "rate_limits.updated",
        "response.content_part.added",
        "response.output_audio.done",
    }
)


def is_plain_audio_append(text: str) -> bool:
    """True for a client audio append that may go upstream untouched (see _AUDIO_APPEND_PREFIX)."""
    return text.startswith(_AUDIO_APPEND_PREFIX) and text.endswith('"}') and text.count('"') == 8


def sniff_server_type(text: str) -> str | None:
    """The type of a server frame if it is one the relay passes on without parsing."""
    match = _TYPE_RE.search(text, 0, 160)
    if match and match.group(1) in SERVER_PASSTHROUGH:
        return match.group(1)
    return None


# A JSON string (escapes included); the other characters of valid JSON that are not brackets.
_JSON_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_SCALARS = str.maketrans("", "", "0123456789+-.eE truefalsn,:\t\r\n")
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nested_deeper_than(text: str, limit: int) -> bool:
    """True when the JSON text opens more than `limit` arrays or objects inside each other,
    counted without parsing it (brackets inside strings do not count). The usual event has
    fewer brackets than the limit and costs two counts; otherwise the work is done in C (the
    regex engine, `str.translate`, `itertools.accumulate`), never by a Python loop per character,
    and costs less than parsing the same text would."""
    if text.count("[") + text.count("{") <= limit:
        return False
    structure = _JSON_STRING_RE.sub("", text).translate(_JSON_SCALARS)
    brackets = _NOT_BRACKET_RE.sub("", structure)  # anything invalid JSON left behind
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


# --- Events the relay sends -------------------------------------------------------------------


def new_event_id() -> str:
    return "event_cs" + secrets.token_urlsafe(14).replace("-", "a").replace("_", "b")[:19]


def error_event(
    message: str, *, code: str | None = None, param: str | None = None, client_event_id: str | None = None
) -> str:
    """An `error` event in OpenAI's shape (section 2.1); it does not close the socket."""
    event = RealtimeErrorEvent(
        type="error",
        event_id=new_event_id(),
        error=RealtimeError(
            type="invalid_request_error", code=code, message=message, param=param, event_id=client_event_id
        ),
    )
    return event.model_dump_json()


def approval_response_event(*, approval_request_id: str, approve: bool, reason: str) -> str:
    """The `conversation.item.create` that answers an approval request (section 5.2).

    The item id is short (the 32-character limit, section 2) and `previous_item_id` is left
    out on purpose: the item is appended, so a client that deleted the request item from its
    conversation cannot make the answer fail with an unknown previous item.
    """
    item = RealtimeMcpApprovalResponse(
        type="mcp_approval_response",
        id="cs" + secrets.token_hex(10),
        approval_request_id=approval_request_id,
        approve=approve,
        reason=reason or None,
    )
    event = ConversationItemCreateEvent(type="conversation.item.create", event_id=new_event_id(), item=item)
    return event.model_dump_json(exclude_none=True)


def response_create_event(
    *, instructions: str | None = None, tool_choice: Literal["none"] | None = None, event_id: str | None = None
) -> str:
    """A response the relay asks for: the follow-up, so that the model tells the guest what
    happened (section 5.1), or the holding line (realtime_bridge/holding.py). `instructions`
    replace the session's for this one response only; `tool_choice` "none" keeps it to words.
    Reference: https://platform.openai.com/docs/api-reference/realtime-client-events/response/create"""
    response = None
    if instructions is not None or tool_choice is not None:
        response = RealtimeResponseCreateParams(instructions=instructions, tool_choice=tool_choice)
    event = ResponseCreateEvent(type="response.create", event_id=event_id or new_event_id(), response=response)
    return event.model_dump_json(exclude_none=True)


# --- Items the relay reads --------------------------------------------------------------------


def parse_approval_request(item: dict[str, Any]) -> RealtimeMcpApprovalRequest:
    return RealtimeMcpApprovalRequest.model_validate(item)


def parse_mcp_call(item: dict[str, Any]) -> RealtimeMcpToolCall:
    return RealtimeMcpToolCall.model_validate(item)


def message_text(item: dict[str, Any]) -> str:
    """The text or transcript of a message item, joined; "" when it has none (yet)."""
    parts = []
    for part in item.get("content") or []:
        if not isinstance(part, dict):
            continue
        text = part.get("text") or part.get("transcript")
        if isinstance(text, str) and text.strip():
            parts.append(text.strip())
    return " ".join(parts)


# --- What a client may send -------------------------------------------------------------------

# Item types only the server (or, for approvals, the console itself) may put in a conversation.
SERVER_ONLY_ITEM_TYPES = frozenset({"mcp_approval_response", "mcp_approval_request", "mcp_call", "mcp_list_tools"})


class Refusal(Exception):
    """A client event the relay will not pass upstream; `message` goes back in an error event."""

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


def split_tools(tools: Any, registered_labels: frozenset[str] = frozenset()) -> tuple[list[Any], list[str]]:
    """A client's tools without its `mcp` entries, and the labels of the removed entries that name
    no registered server (an entry for a registered label is dropped silently: the registry's own
    entry, with its URL, credentials and compiled policy, is put in its place)."""
    if not isinstance(tools, list):
        return tools, []
    kept, unknown = [], []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            label = tool.get("server_label")
            if label not in registered_labels:
                unknown.append(str(label or ""))
        else:
            kept.append(tool)
    return kept, unknown


def _unknown_labels_refusal(unknown: list[str], where: str) -> Refusal:
    names = ", ".join(repr(label) for label in unknown)
    return Refusal(
        f"MCP servers are configured by Countersign; {names} is not a registered server_label and was ignored.",
        code="mcp_tool_not_allowed",
        param=f"{where}.tools",
    )


def sanitize_client_event(
    event: dict[str, Any], registered_tools: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[Refusal]]:
    """Check and rewrite one parsed client event before it goes upstream.

    Returns the event to send and the refusals to report. Raises Refusal when nothing of the
    event may pass. A client can never approve its own request, nor add an MCP server or a
    header of its own (DESIGN.md): its `mcp` tools are dropped (the rest of its update passes)
    and the registered servers are put in their place. An `mcp` tool that names a registered
    server (agents-js's `hostedMcpTool` with that `serverLabel`) is the client asking for that
    server: it is served from the registry without a word, whatever URL, headers or
    require_approval the client gave (docs/agents-js.md). Any other label is refused.
    """
    kind = event.get("type")
    refusals: list[Refusal] = []
    labels = frozenset(str(t.get("server_label")) for t in registered_tools if t.get("type") == "mcp")
    if kind in ("session.update", "response.create"):
        where = "session" if kind == "session.update" else "response"
        body = event.get(where)
        if isinstance(body, dict) and "tools" in body:
            kept, unknown = split_tools(body["tools"], labels)
            if unknown:
                refusals.append(_unknown_labels_refusal(unknown, where))
            # section 3.2: a session's tools array is replaced as a whole, so the registered
            # servers go in with every update; a response's only when it named MCP servers.
            if isinstance(kept, list) and (kind == "session.update" or len(kept) != len(body["tools"])):
                body["tools"] = kept + registered_tools
    # Items the server alone creates, wherever a client could put one: the item of any event
    # (not only conversation.item.create: a misspelt or unknown type must not carry one past
    # Countersign on the hope that upstream refuses it) and a response's out-of-band `input`.
    body = event.get("response")
    carried = [("item", event.get("item"))]
    if isinstance(body, dict) and isinstance(body.get("input"), list):
        carried += [(f"response.input[{i}]", item) for i, item in enumerate(body["input"])]
    for param, item in carried:
        item_type = item.get("type") if isinstance(item, dict) else None
        if isinstance(item, dict) and "type" in item and not isinstance(item_type, str):
            raise Refusal("Invalid item: 'type' must be a string.", code="invalid_value", param=f"{param}.type")
        if not isinstance(item_type, str) or item_type not in SERVER_ONLY_ITEM_TYPES:
            continue
        if item_type == "mcp_approval_response":
            raise Refusal(
                "Approval decisions are made by staff in Countersign, not by the client.",
                code="approval_not_allowed",
                param=f"{param}.type",
            )
        raise Refusal(
            f"A client may not create {item_type} items.", code="item_type_not_allowed", param=f"{param}.type"
        )
    return event, refusals


def scrub_session_event(event: dict[str, Any]) -> dict[str, Any]:
    """Remove MCP credentials from a session.created/updated before a client sees it (section
    3.1: whether the server echoes `authorization`/`headers` is not verified, so assume it does)."""
    session = event.get("session")
    if isinstance(session, dict) and isinstance(session.get("tools"), list):
        for tool in session["tools"]:
            if isinstance(tool, dict) and tool.get("type") == "mcp":
                tool.pop("authorization", None)
                tool.pop("headers", None)
    return event


def redact(text: str, secret_values: list[str]) -> str:
    """Belt and braces: no registered secret leaves, whatever event carries it."""
    for value in secret_values:
        if len(value) >= 6 and value in text:
            text = text.replace(value, "[redacted]")
    return text


def dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def encodable(event: Any) -> bool:
    """Whether the event, written out, is valid UTF-8 (no lone surrogate came in escaped)."""
    try:
        json.dumps(event, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
