"""The `conversation.item.*` client events of a Realtime session (REALTIME_PROTOCOL.md section 2).

Each handler takes the session's Conversation, the socket that sent the event and the event; a
problem with the event raises InvalidRequest, which the session answers on that socket only.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pydantic
from openai.types.realtime import ConversationItem
from starlette.websockets import WebSocket

from simulator import turns
from simulator.conversation import Conversation, PendingApproval
from simulator.events import event
from simulator.ids import new_id
from simulator.session_config import InvalidRequest

MAX_ITEM_ID = 32  # section 2: client-supplied item ids
_CONVERSATION_ITEM = pydantic.TypeAdapter(ConversationItem)
_CLIENT_ITEM_TYPES = ("message", "function_call", "function_call_output", "mcp_approval_response")


def _check_new_item(conv: Conversation, data: dict[str, Any]) -> dict[str, Any]:
    item = data.get("item")
    if not isinstance(item, dict):
        raise InvalidRequest("Missing required parameter: 'item'.", code="missing_required_parameter", param="item")
    item = copy.deepcopy(item)
    item_id = item.get("id")
    if item_id is not None:
        if not isinstance(item_id, str):
            raise InvalidRequest("Invalid type for 'item.id': expected a string.", code="invalid_type", param="item.id")
        if len(item_id) > MAX_ITEM_ID:
            # Section 2 [observed]; the code is probably the Responses API's (section 2.1).
            raise InvalidRequest(
                f"Invalid 'item.id': string too long. Expected a string with maximum length {MAX_ITEM_ID}, "
                f"but got a string with length {len(item_id)} instead.",
                code="string_above_max_length",
                param="item.id",
            )
        if conv.find(item_id) is not None:
            raise InvalidRequest(f"Item with id '{item_id}' already exists.", code="invalid_value", param="item.id")
    if item.get("type") not in _CLIENT_ITEM_TYPES:
        supported = ", ".join(f"'{t}'" for t in _CLIENT_ITEM_TYPES)
        raise InvalidRequest(
            f"Invalid value: '{item.get('type')}'. Supported values are: {supported}.",
            code="invalid_value",
            param="item.type",
        )
    item.setdefault("id", new_id("item"))
    if item["type"] != "mcp_approval_response":
        item.setdefault("object", "realtime.item")
        item["status"] = "completed"
    try:
        _CONVERSATION_ITEM.validate_python(item)
    except pydantic.ValidationError:
        raise InvalidRequest(
            f"Invalid 'item': not a valid '{item['type']}' item.", code="invalid_value", param="item"
        ) from None
    return item


def _take_pending(conv: Conversation, item: dict[str, Any]) -> PendingApproval:
    """The approval request an mcp_approval_response answers, no longer pending once taken."""
    # Not part of OpenAI's API: a record of every answer that reached "OpenAI", for the
    # console's tests and benchmarks (GET /sim/approvals).
    conv.state.approvals_received.append(
        {
            "at": time.time(),
            "session_id": conv.id,
            "approval_request_id": item.get("approval_request_id"),
            "approve": item.get("approve"),
            "reason": item.get("reason"),
        }
    )
    pending = conv.pending_approvals.pop(item["approval_request_id"], None)
    if pending is None:
        # Section 11: the code is unverified; param as the spec suggests.
        raise InvalidRequest(
            f"No pending approval request with id '{item['approval_request_id']}' "
            "(unknown, already answered, or its response was cancelled).",
            code="invalid_value",
            param="item.approval_request_id",
        )
    return pending


async def create(conv: Conversation, websocket: WebSocket, data: dict[str, Any]) -> None:
    item = _check_new_item(conv, data)
    previous_id = data.get("previous_item_id")
    after = conv.find(previous_id) if isinstance(previous_id, str) and previous_id != "root" else None
    if previous_id not in (None, "root") and after is None:
        # The SDK docstring says an unknown previous_item_id is an error; the code is not documented.
        raise InvalidRequest(
            f"Previous item with id '{previous_id}' not found.", code="invalid_value", param="previous_item_id"
        )
    pending = _take_pending(conv, item) if item["type"] == "mcp_approval_response" else None
    if previous_id is None:
        previous = conv.append_item(item)
    else:
        conv.items.insert(0 if after is None else conv.items.index(after) + 1, item)
        previous = None if after is None else after["id"]
    await conv.emit(
        event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)),
        event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)),
    )
    if pending is not None:
        # Section 5.1: the approval response alone lets the tool run; no response.create is needed.
        task = conv.spawn(turns.after_approval(conv, pending, item))
        if not pending.response.finished:
            pending.response.task = task  # held profile: cancelling the response stops the call


def _existing(conv: Conversation, data: dict[str, Any]) -> dict[str, Any]:
    item_id = data.get("item_id")
    if not isinstance(item_id, str):
        raise InvalidRequest(
            "Missing required parameter: 'item_id'.", code="missing_required_parameter", param="item_id"
        )
    item = conv.find(item_id)
    if item is None:
        raise InvalidRequest(
            f"Item with item_id '{item_id}' does not exist.", code="invalid_value", param="item_id"
        )  # [INFERRED] code
    return item


async def retrieve(conv: Conversation, websocket: WebSocket, data: dict[str, Any]) -> None:
    # Section 4: agents-js retrieves on mcp_list_tools.in_progress and response.mcp_call.in_progress.
    item = _existing(conv, data)
    await conv.emit(event("conversation.item.retrieved", item=copy.deepcopy(item)))


async def delete(conv: Conversation, websocket: WebSocket, data: dict[str, Any]) -> None:
    item = _existing(conv, data)
    conv.items.remove(item)
    await conv.emit(event("conversation.item.deleted", item_id=item["id"]))


async def truncate(conv: Conversation, websocket: WebSocket, data: dict[str, Any]) -> None:
    item = _existing(conv, data)
    if item.get("role") != "assistant":
        raise InvalidRequest("Only assistant messages can be truncated.", code="invalid_value", param="item_id")
    content_index, audio_end_ms = data.get("content_index", 0), data.get("audio_end_ms")
    if not isinstance(audio_end_ms, int) or audio_end_ms < 0:
        raise InvalidRequest(
            "Invalid value for 'audio_end_ms': expected a non-negative integer.",
            code="invalid_value",
            param="audio_end_ms",
        )
    await conv.emit(
        event(
            "conversation.item.truncated",
            item_id=item["id"],
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )
    )
