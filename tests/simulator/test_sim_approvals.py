import time
from typing import Any, cast

import httpx
from openai import AsyncOpenAI

# The SDK's item type requires an `id`; a client may leave it out and the server assigns one (section 2).
from openai.types.realtime import RealtimeMcpApprovalResponseParam as ApprovalResponse

from tests.plugins.simulator import sdk_recv


async def _approval_request(conn: Any, hotel_mcp: Any) -> str:
    await conn.session.update(
        session={"type": "realtime", "output_modalities": ["text"], "tools": [hotel_mcp.tool("hotel")]}
    )
    while (await sdk_recv(conn)).type != "mcp_list_tools.completed":
        pass
    await conn.conversation.item.create(
        item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": 'call hotel get_room_status {"room": "1204"}'}],
        }
    )
    await conn.response.create()
    while True:
        event = await sdk_recv(conn)
        if event.type == "conversation.item.done" and event.item.type == "mcp_approval_request":
            return event.item.id


async def test_sim_approvals_lists_each_answer_that_reached_the_simulator_with_its_arrival_time(simulator, hotel_mcp):
    client = AsyncOpenAI(api_key=simulator.api_key, base_url=simulator.base_url)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        approval_id = await _approval_request(conn, hotel_mcp)
        before = time.time()
        await conn.conversation.item.create(
            item=cast(
                ApprovalResponse,
                {"type": "mcp_approval_response", "approval_request_id": approval_id, "approve": False, "reason": "no"},
            )
        )
        while (await sdk_recv(conn)).type != "conversation.item.done":
            pass
    root = simulator.base_url.removesuffix("/v1")
    async with httpx.AsyncClient(base_url=root) as http:
        assert (await http.get("/sim/approvals")).status_code == 401
        listed = (await http.get("/sim/approvals", headers={"Authorization": f"Bearer {simulator.api_key}"})).json()
    (mine,) = [a for a in listed["data"] if a["approval_request_id"] == approval_id]
    assert (mine["approve"], mine["reason"]) == (False, "no")
    assert before <= mine["at"] <= time.time()
