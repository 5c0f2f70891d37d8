"""The official openai SDK against the simulator and the demo hotel MCP server: whole approval flows."""

from __future__ import annotations

import json
from typing import Any, cast

from openai import AsyncOpenAI

# The SDK's item type requires an `id`; a client may leave it out and the server assigns one (section 2).
from openai.types.realtime import RealtimeMcpApprovalResponseParam as ApprovalResponse

from tests.plugins.simulator import sdk_recv

UNLOCK = 'call hotel_ops unlock_door {"room": "1204", "reason": "guest locked out"}'


async def _until(connection: Any, type_: str, **match: Any) -> list[Any]:
    got = []
    while True:
        got.append(await sdk_recv(connection))
        if got[-1].type == type_ and all(getattr(got[-1], k, None) == v for k, v in match.items()):
            return got


async def _request_unlock(connection: Any, hotel_mcp: Any) -> Any:
    """Configure the hotel tool, wait for its import, ask for an unlock; returns the approval request item."""
    first = await sdk_recv(connection)
    assert first.type == "session.created"
    await connection.session.update(
        session={"type": "realtime", "output_modalities": ["text"], "tools": [hotel_mcp.tool("hotel_ops")]}
    )
    listed = await _until(connection, "mcp_list_tools.completed")
    listing = [e for e in listed if e.type == "conversation.item.done"]
    if not listing:
        listing = [await sdk_recv(connection)]  # list_order: item.done may follow completed
    names = {t.name for t in listing[0].item.tools}
    assert {"unlock_door", "issue_refund", "get_room_status"} <= names
    await connection.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": UNLOCK}]}
    )
    await connection.response.create()
    turn = await _until(connection, "response.done")
    done = [e.item.type for e in turn if e.type == "conversation.item.done"]
    assert done == ["message", "mcp_approval_request"]  # the user's message, then the request
    requests = [e.item for e in turn if e.type == "conversation.item.done" and e.item.type == "mcp_approval_request"]
    assert turn[-1].response.status == "completed"
    return requests[0]


async def test_the_official_sdk_runs_an_approved_tool_call_on_the_hotel(simulator, hotel_mcp):
    client = AsyncOpenAI(api_key=simulator.api_key, base_url=simulator.base_url)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        request = await _request_unlock(connection, hotel_mcp)
        assert request.name == "unlock_door"
        assert json.loads(request.arguments) == {"room": "1204", "reason": "guest locked out"}
        assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True

        await connection.conversation.item.create(
            item=cast(
                ApprovalResponse, {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
            )
        )
        after = await _until(connection, "conversation.item.done", **{})
        while not (after[-1].type == "conversation.item.done" and after[-1].item.type == "mcp_call"):
            after.append(await sdk_recv(connection))
        call = after[-1].item
        assert call.approval_request_id == request.id
        assert call.error is None
        assert json.loads(call.output)["door_locked"] is False
        assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False

        await connection.response.create()
        follow_up = await _until(connection, "response.done")
        assert follow_up[-1].response.status == "completed"
        assert "All done" in follow_up[-1].response.output[0].content[0].text


async def test_the_official_sdk_denial_leaves_the_hotel_untouched(simulator, hotel_mcp):
    before = hotel_mcp.state()["rooms"]
    client = AsyncOpenAI(api_key=simulator.api_key, base_url=simulator.base_url)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        request = await _request_unlock(connection, hotel_mcp)
        await connection.conversation.item.create(
            item=cast(
                ApprovalResponse,
                {
                    "type": "mcp_approval_response",
                    "approval_request_id": request.id,
                    "approve": False,
                    "reason": "not the registered guest",
                },
            )
        )
        echoed = await _until(connection, "conversation.item.done")
        assert echoed[-1].item.type == "mcp_approval_response"
        assert echoed[-1].item.approve is False

        await connection.response.create()
        follow_up = await _until(connection, "response.done")
        # Default deny_behavior "mcp_call_error": the call ends with its error, and never runs.
        (call,) = [e.item for e in follow_up if e.type == "conversation.item.done" and e.item.type == "mcp_call"]
        assert call.output is None and call.error is not None and call.error.type == "tool_execution_error"
        assert not [e for e in follow_up if e.type.startswith("response.mcp_call")]
        assert "not approved" in follow_up[-1].response.output[0].content[0].text
    assert hotel_mcp.state()["rooms"] == before
