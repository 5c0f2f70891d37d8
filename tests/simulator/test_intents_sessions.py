"""The intent rules inside real sessions: a Realtime socket and `POST /v1/responses` on the simulator,
which import the real demo hotel's tools and call them after approval."""

from __future__ import annotations

import json
from typing import Any

from tests.simulator.test_responses_api import _simulator, create, items, sim  # noqa: F401 (fixtures)

LOCKOUT = "I stepped out for ice and the door shut behind me, room 1204"


async def _say(rt: Any, hotel_mcp: Any, text: str, **tool: Any) -> list[dict[str, Any]]:
    await rt.recv()
    await rt.update_session(tools=[hotel_mcp.tool(server_label="hotel", **tool)], output_modalities=["text"])
    await rt.listings()
    await rt.add_user_text(text)
    await rt.send({"type": "response.create"})
    return await rt.recv_until("response.done")


async def test_a_locked_out_guest_in_their_own_words_gets_the_door_unlocked(simulator, hotel_mcp):
    async with simulator.connect() as rt:
        turn = await _say(rt, hotel_mcp, LOCKOUT)
        [request] = [e["item"] for e in turn if e["type"] == "conversation.item.done"]
        assert request["type"] == "mcp_approval_request"
        assert (request["server_label"], request["name"]) == ("hotel", "unlock_door")
        assert json.loads(request["arguments"]) == {"room": "1204", "reason": LOCKOUT}
        assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True

        answer = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
        await rt.send({"type": "conversation.item.create", "previous_item_id": request["id"], "item": answer})
        done = await rt.recv_until("response.mcp_call.completed", timeout=20)
        done += await rt.recv_until("conversation.item.done", timeout=20)
        [call] = [e["item"] for e in done if e["type"] == "conversation.item.done" and e["item"]["type"] == "mcp_call"]
        assert json.loads(call["output"])["was_locked"] is True

    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False


async def test_a_tool_that_needs_no_approval_runs_and_the_lights_change(simulator, hotel_mcp):
    async with simulator.connect() as rt:
        turn = await _say(rt, hotel_mcp, "Could you turn off the lights in room 1205?", require_approval="never")

    calls = [e["item"] for e in turn if e["type"] == "conversation.item.done" and e["item"]["type"] == "mcp_call"]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("set_room_lighting", {"room": "1205", "scene": "off"})
    ]
    assert hotel_mcp.state()["rooms"]["1205"]["lighting"] == {"level": 0, "scene": "off"}


async def test_a_request_without_its_room_is_answered_with_a_question(simulator, hotel_mcp):
    async with simulator.connect() as rt:
        turn = await _say(rt, hotel_mcp, "I'm locked out of my room!")

    assert not [e for e in turn if "mcp" in e["type"]]
    assert turn[-1]["response"]["output"][0]["content"][0]["text"] == "Which room are you in?"


async def test_a_tool_filtered_out_by_allowed_tools_is_not_called(simulator, hotel_mcp):
    async with simulator.connect() as rt:
        turn = await _say(rt, hotel_mcp, LOCKOUT, allowed_tools=["set_room_lighting", "get_room_status"])

    assert not [e for e in turn if e["type"].startswith("response.mcp")]
    assert "can't open your door" in turn[-1]["response"]["output"][0]["content"][0]["text"]


async def test_the_explicit_call_form_works_beside_the_intents(simulator, hotel_mcp):
    async with simulator.connect() as rt:
        turn = await _say(rt, hotel_mcp, 'call hotel unlock_door {"room": "1410"}')

    [request] = [e["item"] for e in turn if e["type"] == "conversation.item.done"]
    assert (request["name"], json.loads(request["arguments"])) == ("unlock_door", {"room": "1410"})


def test_the_responses_api_asks_for_the_call_a_guest_describes(sim, hotel_mcp):  # noqa: F811
    text = "Hi, room 1205. There's a charge of 48 euros for champagne I never opened."

    response = create(sim, tools=[hotel_mcp.tool(server_label="hotel")], input=text)

    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_approval_request"]
    request = items(response)[1]
    assert request.name == "issue_refund"
    assert json.loads(request.arguments) == {"room": "1205", "amount": 48, "currency": "EUR", "reason": text}


async def test_a_guest_who_forgets_the_room_is_asked_and_the_answer_completes_the_call(simulator, hotel_mcp):
    async with simulator.connect() as rt:
        turn = await _say(rt, hotel_mcp, "I'm locked out of my room!")
        assert turn[-1]["response"]["output"][0]["content"][0]["text"] == "Which room are you in?"

        await rt.add_user_text("1410")
        await rt.send({"type": "response.create"})
        turn = await rt.recv_until("response.done")

    [request] = [e["item"] for e in turn if e["type"] == "conversation.item.done"]
    assert (request["name"], json.loads(request["arguments"])["room"]) == ("unlock_door", "1410")
