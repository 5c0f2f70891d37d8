"""Server event and object shapes of the Realtime API, as plain dicts ready for json.dumps.

Field names and which fields each event carries follow REALTIME_PROTOCOL.md sections 2, 4, 5 and 7 and
the openai SDK's `openai.types.realtime` models; the tests validate every frame against the SDK's
`RealtimeServerEvent` union in strict mode.
"""

from __future__ import annotations

import time
from typing import Any

from simulator.ids import base62, new_id

ACCEPTED_CLIENT_EVENTS = (
    # Section 1.4: the list the live server gives in its own invalid_value message [CAPTURE].
    "session.update",
    "session.close",
    "input_audio_buffer.append",
    "session.input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)

SESSION_LIFETIME = 3600  # section 1.1: 60 minutes


def event(type_: str, **fields: Any) -> dict[str, Any]:
    """A server event; `event_id` is always present (section 2)."""
    return {"type": type_, "event_id": new_id("event"), **fields}


def obfuscation(delta: str) -> str:
    """Random padding that hides a delta's length, as live deltas carry (section 2)."""
    return base62(max(1, 16 - len(delta) % 16))


def error(
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    """Section 2.1. `error.event_id` echoes the client's event_id, or is null when it sent none."""
    return event(
        "error",
        error={"type": type_, "code": code, "message": message, "param": param, "event_id": client_event_id},
    )


def default_session(model: str, session_id: str) -> dict[str, Any]:
    """The effective session of a new connection, in the GA shape of section 1.4 [SPEC example]."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful hotel concierge. Keep answers short.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + SESSION_LIFETIME,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
        },
        "include": None,
    }


def response_object(
    response_id: str,
    *,
    status: str,
    output: list[dict[str, Any]],
    conversation_id: str | None,
    output_modalities: list[str],
    voice: str,
    metadata: dict[str, str] | None,
    status_details: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sections 5.2 and 7.2: the `response` of response.created / response.done."""
    return {
        "object": "realtime.response",
        "id": response_id,
        "status": status,
        "status_details": status_details,
        "output": output,
        "conversation_id": conversation_id,
        "output_modalities": output_modalities,
        "max_output_tokens": "inf",
        "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": voice}},
        "usage": usage,
        "metadata": metadata,
    }


def usage(text_in: int, text_out: int, audio_out: int) -> dict[str, Any]:
    return {
        "total_tokens": text_in + text_out + audio_out,
        "input_tokens": text_in,
        "output_tokens": text_out + audio_out,
        "input_token_details": {
            "text_tokens": text_in,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


def rate_limits(tokens_used: int) -> dict[str, Any]:
    # Section 5.2: rate_limits.updated follows each response.done [CAPTURE].
    return event(
        "rate_limits.updated",
        rate_limits=[
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 40000, "remaining": 40000 - tokens_used, "reset_seconds": 0.5},
        ],
    )


def mcp_call_item(item_id: str, label: str, name: str) -> dict[str, Any]:
    # Section 5.2: added with empty arguments and null output/error; the SDK's mcp_call has no status.
    return {
        "id": item_id,
        "type": "mcp_call",
        "server_label": label,
        "name": name,
        "arguments": "",
        "approval_request_id": None,
        "output": None,
        "error": None,
    }


def approval_request_item(item_id: str, label: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": item_id, "type": "mcp_approval_request", "server_label": label, "name": name, "arguments": arguments}


def list_tools_item(item_id: str, label: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": item_id, "type": "mcp_list_tools", "server_label": label, "tools": tools}


def assistant_message(item_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
