"""Importing an MCP server's tools into a session (REALTIME_PROTOCOL.md section 4)."""

from __future__ import annotations

import copy
import time
from typing import Any

from simulator import events, mcp_client
from simulator.conversation import Conversation, McpServer
from simulator.events import event


async def run_listing(session: Conversation, server: McpServer) -> None:
    """Section 4: item added (tools:[]), in_progress, then completed + item.done (knob list_order) or failed."""
    item = events.list_tools_item(server.list_item_id, server.label, [])
    previous = session.append_item(item)
    record: dict[str, Any] = {
        "at": time.time(),
        "session_id": session.id,
        "server_label": server.label,
        "server_url": server.definition.get("server_url"),
        "status": "failed",
        "tools": [],
        "refused": [],
        "failure": None,
    }
    try:
        await session.emit(
            event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)),
            event("mcp_list_tools.in_progress", item_id=item["id"]),
        )
        try:
            if session.config.list_fail != "off":
                raise mcp_client.McpListError("listing was made to fail (simulator knob list_fail)")
            tools, refused = await mcp_client.list_tools_explained(server.definition)
        except mcp_client.McpListError as exc:
            server.status, server.failure = "failed", str(exc)
            record["failure"] = str(exc)
            session.state.listings.append(record)
            batch = [event("mcp_list_tools.failed", item_id=item["id"])]
            if session.config.list_fail == "failed_with_error":
                # Whether an error accompanies the failure is unverified (section "Uncertain" 7).
                batch.append(
                    events.error(
                        f"Error retrieving tool list from MCP server: '{server.label}'. Cause: {exc}.",
                        type_="invalid_request_error",
                        code="mcp_list_tools_failed",
                        param=None,
                    )
                )
            await session.emit(*batch)
            return
        item["tools"] = tools
        server.tools, server.status = tools, "completed"
        record.update(
            status="completed",
            tools=[t["name"] for t in tools],
            refused=[{"name": r.name, "reasons": r.reasons} for r in refused],
        )
        session.state.listings.append(record)
        done = event(
            "conversation.item.done", previous_item_id=session.previous_of(item["id"]), item=copy.deepcopy(item)
        )
        completed = event("mcp_list_tools.completed", item_id=item["id"])
        await session.emit(
            *([completed, done] if session.config.list_order == "completed_first" else [done, completed])
        )
    finally:
        server.done.set()
