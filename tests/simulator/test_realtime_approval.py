"""The approval path (sections 5.2-5.4), the no-approval path (section 6), and their knobs (section 11)."""

from __future__ import annotations

import json

import pytest

RING = 'call desk ring_bell {"room": "12", "times": 2}'
ARGS = '{"room":"12","times":2}'
COMBINED = {
    "list_order": "item_first",
    "mcp_call_done_order": "item_first",
    "approval_output_item_events": False,
    "mcp_call_output_item_done": True,
}


def _types(events):
    return [e["type"] for e in events]


def _squash(types):
    return [t for n, t in enumerate(types) if n == 0 or t != types[n - 1]]


async def _ask(rt, mcp_servers, text=RING, **tool):
    """Configure the desk server, say `text`, create a response; returns the events through the approval item."""
    await rt.recv()
    await rt.update_session(tools=[mcp_servers.desk_tool(**tool)], output_modalities=["text"])
    await rt.listings()
    user = await rt.add_user_text(text)
    await rt.send({"type": "response.create"})
    events = await rt.recv_until("conversation.item.done")
    return user["item"], events


async def _approve(rt, request_id, approve=True, **extra):
    item = {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": approve, **extra}
    await rt.send({"type": "conversation.item.create", "previous_item_id": request_id, "item": item})


async def test_split_profile_event_order_and_final_call_item(simulator, mcp_servers):
    async with simulator.connect() as rt:
        user, events = await _ask(rt, mcp_servers)
        events += await rt.recv_until("rate_limits.updated")
        assert _squash(_types(events)) == [
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.mcp_call_arguments.delta",
            "response.mcp_call_arguments.done",
            "response.output_item.added",
            "conversation.item.added",
            "conversation.item.done",
            "response.output_item.done",
            "response.done",
            "rate_limits.updated",
        ]
        created, call_added = events[0]["response"], events[1]["item"]
        resp_id = created["id"]
        assert created["status"] == "in_progress" and created["object"] == "realtime.response"
        assert call_added == {
            "id": call_added["id"],
            "type": "mcp_call",
            "server_label": "desk",
            "name": "ring_bell",
            "arguments": "",
            "approval_request_id": None,
            "output": None,
            "error": None,
        }
        assert events[2]["previous_item_id"] == user["id"]
        deltas = [e for e in events if e["type"] == "response.mcp_call_arguments.delta"]
        assert "".join(d["delta"] for d in deltas) == ARGS
        assert all(d["obfuscation"] and d["response_id"] == resp_id and d["output_index"] == 0 for d in deltas)
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        assert request["arguments"] == ARGS and len(request["id"]) <= 32
        assert next(e for e in events if e["type"] == "conversation.item.done")["previous_item_id"] == call_added["id"]
        done = next(e for e in events if e["type"] == "response.done")["response"]
        assert done["status"] == "completed"
        assert [i["type"] for i in done["output"]] == ["mcp_call", "mcp_approval_request"]
        assert done["output"][0]["output"] is None and done["output"][0]["arguments"] == ARGS
        assert mcp_servers.desk.calls == []

        await _approve(rt, request["id"], reason="Approved by the night manager")
        after = await rt.recv_until("conversation.item.done")
        while not (after[-1]["type"] == "conversation.item.done" and after[-1]["item"]["type"] == "mcp_call"):
            after.append(await rt.recv())
        assert _types(after) == [
            "conversation.item.added",
            "conversation.item.done",
            "response.mcp_call.in_progress",
            "response.mcp_call.completed",
            "conversation.item.done",
        ]
        answer = after[0]["item"]
        assert answer["type"] == "mcp_approval_response" and answer["reason"] == "Approved by the night manager"
        assert after[0]["previous_item_id"] == request["id"]
        assert after[2] | {"event_id": ""} == {
            "type": "response.mcp_call.in_progress",
            "event_id": "",
            "item_id": call_added["id"],
            "output_index": 0,
        }
        final = after[-1]["item"]
        assert (final["id"], final["approval_request_id"], final["error"]) == (call_added["id"], request["id"], None)
        assert final["output"] == "Rang room 12 2 time(s)."
        assert after[-1]["previous_item_id"] == user["id"]
        assert mcp_servers.desk.calls == [("ring_bell", {"room": "12", "times": 2})]
        await rt.expect_silence()  # the model says nothing until asked (section 5.1)

        await rt.send({"type": "response.create", "response": {"tool_choice": "none"}})
        follow_up = await rt.recv_until("rate_limits.updated")
        assert _squash(_types(follow_up))[:4] == [
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
        ]
        reply = follow_up[-2]["response"]
        assert reply["id"] != resp_id and reply["status"] == "completed"
        assert reply["output"][0]["content"][0]["text"] == "All done. Rang room 12 2 time(s)."


async def test_held_profile_keeps_the_response_open_until_the_call_and_reply(simulator_factory, mcp_servers):
    async with simulator_factory(approval_profile="held").connect() as rt:
        _, events = await _ask(rt, mcp_servers)
        events += await rt.recv_until("response.output_item.done")
        await rt.expect_silence()  # no response.done while the approval is pending
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        await rt.send({"type": "response.create", "event_id": "early"})
        assert (await rt.recv())["error"]["code"] == "conversation_already_has_active_response"

        await _approve(rt, request["id"])
        after = await rt.recv_until("rate_limits.updated")
        assert _squash(_types(after)) == [
            "conversation.item.added",
            "conversation.item.done",
            "response.mcp_call.in_progress",
            "response.mcp_call.completed",
            "response.output_item.done",
            "conversation.item.done",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "conversation.item.done",
            "response.output_item.done",
            "response.done",
            "rate_limits.updated",
        ]
        done = after[-2]["response"]
        assert done["id"] == events[0]["response"]["id"] and done["status"] == "completed"
        assert [i["type"] for i in done["output"]] == ["mcp_call", "mcp_approval_request", "message"]
        assert done["output"][0]["output"] == "Rang room 12 2 time(s)."
        assert mcp_servers.desk.calls == [("ring_bell", {"room": "12", "times": 2})]


async def test_held_profile_denial_speaks_inside_the_same_response(simulator_factory, mcp_servers):
    async with simulator_factory(approval_profile="held").connect() as rt:
        _, events = await _ask(rt, mcp_servers)
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        await rt.recv_until("response.output_item.done")
        await _approve(rt, request["id"], approve=False, reason="no")
        after = await rt.recv_until("response.done")
        assert not [e for e in after if e["type"].startswith("response.mcp_call")]
        assert "not approved" in after[-1]["response"]["output"][-1]["content"][0]["text"]
        assert mcp_servers.desk.calls == []


@pytest.mark.parametrize("knobs", [{"deny_behavior": "silent"}])
async def test_a_denial_runs_nothing_and_stays_silent_when_told(simulator_factory, mcp_servers, knobs):
    async with simulator_factory(**knobs).connect() as rt:
        _, events = await _ask(rt, mcp_servers)
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        await rt.recv_until("rate_limits.updated")
        await _approve(rt, request["id"], approve=False, reason="Guest not verified")
        echoed = await rt.recv_until("conversation.item.done")
        assert _types(echoed) == ["conversation.item.added", "conversation.item.done"]
        assert echoed[-1]["item"]["approve"] is False
        await rt.expect_silence(0.5)
        assert mcp_servers.desk.calls == []
        await rt.send({"type": "response.create"})
        reply = (await rt.recv_until("response.done"))[-1]["response"]["output"][0]["content"][0]["text"]
        assert reply == "Okay, I won't run ring_bell; it was not approved. The reason given was: Guest not verified."


async def test_a_denial_ends_the_call_with_its_error_by_default(simulator, mcp_servers):
    # What agents-js's history and the console read as a finished call (REALTIME_PROTOCOL 5.4).
    async with simulator.connect() as rt:
        _, events = await _ask(rt, mcp_servers)
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        await rt.recv_until("rate_limits.updated")
        await _approve(rt, request["id"], approve=False)
        events = await rt.recv_until("conversation.item.done")
        events += await rt.recv_until("conversation.item.done")
        call = events[-1]["item"]
        assert call["type"] == "mcp_call" and call["output"] is None
        assert call["error"]["type"] == "tool_execution_error" and call["approval_request_id"] == request["id"]
        assert not [e for e in events if e["type"].startswith("response.mcp_call")]
        assert mcp_servers.desk.calls == []


async def test_unknown_or_repeated_approval_ids_get_an_error(simulator, mcp_servers):
    async with simulator.connect() as rt:
        _, events = await _ask(rt, mcp_servers)
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        await rt.recv_until("rate_limits.updated")
        await rt.send(
            {
                "type": "conversation.item.create",
                "event_id": "a1",
                "item": {"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True},
            }
        )
        error = (await rt.recv())["error"]
        assert (error["type"], error["param"], error["event_id"]) == (
            "invalid_request_error",
            "item.approval_request_id",
            "a1",
        )
        await _approve(rt, request["id"])
        await rt.recv_until("response.mcp_call.completed")
        await rt.recv_until("conversation.item.done")
        await _approve(rt, request["id"])
        assert (await rt.recv())["error"]["param"] == "item.approval_request_id"
        assert len(mcp_servers.desk.calls) == 1


@pytest.mark.parametrize("sse", [False, True], ids=["streamable_http", "sse"])
async def test_no_approval_path_calls_and_speaks_in_one_response(simulator, mcp_servers, sse):
    async with simulator.connect() as rt:
        _, events = await _ask(rt, mcp_servers, sse=sse, require_approval="never")
        events += await rt.recv_until("response.done")
        types = _squash(_types(events))
        assert types[:9] == [
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.mcp_call_arguments.delta",
            "response.mcp_call_arguments.done",
            "response.mcp_call.in_progress",
            "response.mcp_call.completed",
            "response.output_item.done",
            "conversation.item.done",
        ]
        assert types[-3:] == ["conversation.item.done", "response.output_item.done", "response.done"]
        output = events[-1]["response"]["output"]
        assert [i["type"] for i in output] == ["mcp_call", "message"]
        assert output[0]["approval_request_id"] is None and output[0]["output"] == "Rang room 12 2 time(s)."


@pytest.mark.parametrize("knobs", [{"deny_behavior": "mcp_call_error", "no_approval_autospeak": "off"}])
async def test_no_approval_autospeak_off_ends_after_the_call(simulator_factory, mcp_servers, knobs):
    async with simulator_factory(**knobs).connect() as rt:
        _, events = await _ask(rt, mcp_servers, require_approval="never")
        events += await rt.recv_until("response.done")
        assert [i["type"] for i in events[-1]["response"]["output"]] == ["mcp_call"]


@pytest.mark.parametrize("knobs", [COMBINED])
async def test_order_knobs_and_optional_output_item_events(simulator_factory, mcp_servers, knobs):
    async with simulator_factory(**knobs).connect() as rt:
        _, events = await _ask(rt, mcp_servers)
        events += await rt.recv_until("response.done")
        # approval_output_item_events off: the request is only a conversation item.
        assert [e["item"]["type"] for e in events if e["type"].startswith("response.output_item")] == ["mcp_call"]
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        await _approve(rt, request["id"])
        after = await rt.recv_until("response.mcp_call.completed")
        # mcp_call_output_item_done on, and mcp_call_done_order item_first.
        assert _types(after)[-4:] == [
            "response.mcp_call.in_progress",
            "response.output_item.done",
            "conversation.item.done",
            "response.mcp_call.completed",
        ]
        assert after[-3]["response_id"] == events[0]["response"]["id"]


@pytest.mark.parametrize("result", ["protocol_error", "tool_execution_error", "http_error"])
async def test_the_tool_result_knob_forces_a_failure(simulator_factory, mcp_servers, result):
    async with simulator_factory(tool_result=result).connect() as rt:
        _, events = await _ask(rt, mcp_servers)
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        await rt.recv_until("rate_limits.updated")
        await _approve(rt, request["id"])
        after = await rt.recv_until("response.mcp_call.failed")
        after += await rt.recv_until("conversation.item.done")
        call = after[-1]["item"]
        assert call["output"] is None and call["error"]["type"] == result
        assert mcp_servers.desk.calls == []


async def test_a_real_tool_failure_is_reported_as_failed(simulator, mcp_servers):
    async with simulator.connect() as rt:
        _, events = await _ask(rt, mcp_servers, text='call desk jam_printer {"reason": "toner"}')
        request = next(e["item"] for e in events if e["type"] == "conversation.item.done")
        await rt.recv_until("rate_limits.updated")
        await _approve(rt, request["id"])
        after = await rt.recv_until("response.mcp_call.failed")
        after += await rt.recv_until("conversation.item.done")
        assert after[-1]["item"]["error"]["type"] == "tool_execution_error"
        assert json.dumps(mcp_servers.desk.calls) == json.dumps([["jam_printer", {"reason": "toner"}]])
