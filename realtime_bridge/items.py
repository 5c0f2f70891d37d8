"""Finished upstream items into approvals.services, for both ways a session reaches OpenAI: the
Realtime paths (relay and sideband: `conversation.item.done`, via handlers.dispatch) and the
Responses runs (the output items of a response, via runs.py). One item type, one service call.

The callers hand over items in the shape the SDK types give them: a Realtime item as the
server sent it (handlers.py checks the approval items against the SDK's models first), a
Responses output item as the SDK parsed it. Both APIs give approval requests, tool calls and
messages the fields read here.
"""

from __future__ import annotations

from typing import Any

from approvals import services
from approvals.models import RealtimeSession
from realtime_bridge import protocol


def record(session: RealtimeSession, item: dict[str, Any]) -> None:
    """Apply one finished item to the session: an approval request opens a request (through the
    policy), a tool call is kept on the request it followed (or as a call that ran without
    asking), and a user or assistant message with text becomes a conversation line. Idempotent
    (every service it calls is). Precondition: the session is open. Raises KeyError for an
    approval request without an id."""
    kind = item.get("type")
    if kind == "mcp_approval_request":
        services.open_request(
            session=session,
            upstream_id=str(item["id"]),
            server_label=str(item.get("server_label") or ""),
            tool_name=str(item.get("name") or ""),
            arguments=str(item.get("arguments") or ""),
            raw_item=item,
        )
    elif kind == "mcp_call":
        if item.get("approval_request_id"):
            services.record_mcp_call(session=session, item=item)
        else:
            # A tool the policy lets run without asking (require_approval.never): still recorded.
            services.record_unasked_call(session=session, item=item)
    elif kind == "message" and item.get("role") in ("user", "assistant"):
        text = protocol.message_text(item)
        if text:
            services.add_conversation_line(
                session=session, role=str(item["role"]), text=text, item_id=str(item.get("id") or "")
            )
