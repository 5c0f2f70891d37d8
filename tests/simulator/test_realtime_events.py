"""Client events on a session: session.update, conversation items, audio buffer, responses, and errors."""

from __future__ import annotations

import base64
from typing import Any

USER_HELLO = {
    "type": "message",
    "role": "user",
    "content": [{"type": "input_text", "text": "What is the wifi password"}],
}


async def test_session_update_merges_top_level_and_answers_session_updated(simulator):
    async with simulator.connect() as rt:
        created = (await rt.recv())["session"]
        await rt.send(
            {
                "type": "session.update",
                "event_id": "client-event-7f3a",
                "session": {"type": "realtime", "instructions": "Be brief.", "audio": {"output": {"voice": "cedar"}}},
            }
        )
        updated = await rt.recv()
        assert updated["type"] == "session.updated"
        session = updated["session"]
        assert session["instructions"] == "Be brief."
        assert session["audio"]["output"]["voice"] == "cedar"
        # Omitted fields are unchanged, nested ones too.
        assert session["audio"]["input"] == created["audio"]["input"]
        assert session["output_modalities"] == created["output_modalities"]
        assert session["id"] == created["id"]
        # The client event_id is echoed only in errors (section 2). A distinctive id: a short
        # one like "c1" can occur by chance inside the random ids of the event.
        assert "client-event-7f3a" not in str(updated)


async def test_a_rejected_session_update_changes_nothing(simulator):
    async with simulator.connect() as rt:
        created = (await rt.recv())["session"]
        await rt.send(
            {
                "type": "session.update",
                "event_id": "c2",
                "session": {"type": "realtime", "instructions": "x", "bogus_field": 1},
            }
        )
        error = (await rt.recv())["error"]
        assert (error["code"], error["param"], error["event_id"]) == ("unknown_parameter", "session.bogus_field", "c2")
        await rt.send({"type": "session.update", "session": {"type": "realtime", "instructions": 5}})
        error = (await rt.recv())["error"]
        assert (error["code"], error["param"]) == ("invalid_value", "session.instructions")
        await rt.send({"type": "session.update", "session": {"type": "realtime"}})
        assert (await rt.recv())["session"]["instructions"] == created["instructions"]


async def test_conversation_items_are_added_retrieved_and_deleted(simulator):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.send({"type": "conversation.item.create", "item": {**USER_HELLO, "id": "msg_1"}})
        added, done = await rt.recv(), await rt.recv()
        assert (added["type"], done["type"]) == ("conversation.item.added", "conversation.item.done")
        assert added["previous_item_id"] is None and done["item"]["id"] == "msg_1"
        await rt.send({"type": "conversation.item.create", "previous_item_id": "root", "item": USER_HELLO})
        root = await rt.recv_until("conversation.item.done")
        second = root[-1]["item"]["id"]
        assert second.startswith("item_") and root[-1]["previous_item_id"] is None
        await rt.send({"type": "conversation.item.create", "item": USER_HELLO})
        third = await rt.recv_until("conversation.item.done")
        assert third[-1]["previous_item_id"] == "msg_1"  # order: second, msg_1, third

        await rt.send({"type": "conversation.item.retrieve", "item_id": "msg_1"})
        retrieved = await rt.recv()
        assert retrieved["type"] == "conversation.item.retrieved"
        assert retrieved["item"]["content"] == [{"type": "input_text", "text": "What is the wifi password"}]
        await rt.send({"type": "conversation.item.delete", "item_id": "msg_1"})
        assert await rt.recv() == {**rt.received[-1], "type": "conversation.item.deleted", "item_id": "msg_1"}
        await rt.send({"type": "conversation.item.retrieve", "item_id": "msg_1", "event_id": "c3"})
        error = (await rt.recv())["error"]
        assert (error["param"], error["event_id"]) == ("item_id", "c3")


async def test_bad_input_gets_error_events_and_the_session_keeps_working(simulator):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.send("{not json")
        assert (await rt.recv())["error"]["code"] == "invalid_json"
        await rt.send(b"\x01\x02")
        assert (await rt.recv())["error"]["code"] == "invalid_event"
        await rt.send({"type": "response.audio.delta", "event_id": "evt_9"})
        error = (await rt.recv())["error"]
        assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "type", "evt_9")
        assert "'session.update'" in error["message"] and "'response.create'" in error["message"]
        long_id = "mcp_approval_" + "x" * 26
        await rt.send({"type": "conversation.item.create", "item": {**USER_HELLO, "id": long_id}})
        error = (await rt.recv())["error"]
        assert (error["code"], error["param"]) == ("string_above_max_length", "item.id")
        assert error["message"] == (
            "Invalid 'item.id': string too long. Expected a string with maximum length 32, "
            "but got a string with length 39 instead."
        )
        await rt.send({"type": "conversation.item.create", "previous_item_id": "item_nope", "item": USER_HELLO})
        assert (await rt.recv())["error"]["param"] == "previous_item_id"
        await rt.send({"type": "response.cancel"})
        assert (await rt.recv())["error"]["code"] == "response_cancel_not_active"
        await rt.send({"type": "input_audio_buffer.commit"})
        assert (await rt.recv())["error"]["code"] == "input_audio_buffer_commit_empty"
        # None of it was fatal.
        await rt.send({"type": "conversation.item.create", "item": USER_HELLO})
        assert (await rt.recv_until("conversation.item.done"))[-1]["item"]["role"] == "user"
        await rt.expect_silence()


async def test_audio_is_accepted_committed_and_cleared(simulator):
    async with simulator.connect() as rt:
        await rt.recv()
        chunk = base64.b64encode(bytes(4800)).decode()
        await rt.send({"type": "input_audio_buffer.append", "audio": chunk})
        await rt.expect_silence(0.2)  # append is silent
        await rt.send({"type": "input_audio_buffer.commit"})
        committed = await rt.recv_until("conversation.item.done")
        assert [e["type"] for e in committed] == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
        ]
        await rt.send({"type": "input_audio_buffer.append", "audio": chunk})
        await rt.send({"type": "input_audio_buffer.clear"})
        assert (await rt.recv())["type"] == "input_audio_buffer.cleared"
        await rt.send({"type": "input_audio_buffer.append", "audio": "not base64!"})
        assert (await rt.recv())["error"]["param"] == "audio"


TEXT_TURN = [
    "response.created",
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


def _squash(types):
    return [t for n, t in enumerate(types) if n == 0 or t != types[n - 1]]


async def test_a_text_message_gets_a_short_reply_in_the_capture_order(simulator):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        await rt.recv()
        await rt.send({"type": "conversation.item.create", "item": USER_HELLO})
        await rt.recv_until("conversation.item.done")
        await rt.send({"type": "response.create"})
        turn = await rt.recv_until("rate_limits.updated")
        assert _squash([e["type"] for e in turn]) == TEXT_TURN
        done = turn[-2]["response"]
        assert done["status"] == "completed" and done["usage"]["total_tokens"] > 0
        text = "".join(e["delta"] for e in turn if e["type"] == "response.output_text.delta")
        assert text == done["output"][0]["content"][0]["text"] and "What is the wifi password" in text
        assert all(e.get("obfuscation") for e in turn if e["type"] == "response.output_text.delta")


async def test_audio_output_speaks_with_a_transcript(simulator):
    async with simulator.connect() as rt:
        await rt.recv()  # the default session answers in audio
        await rt.send({"type": "conversation.item.create", "item": USER_HELLO})
        await rt.recv()  # conversation.item.added; its item.done is the first of `turn`
        await rt.send({"type": "response.create", "response": {"metadata": {"turn": "1"}}})
        turn = (await rt.recv_until("response.done"))[1:]
        types = [e["type"] for e in turn]
        deltas = [t for t in types if t.endswith(".delta")]
        assert deltas[:2] == ["response.output_audio_transcript.delta", "response.output_audio.delta"]
        assert [t for t in types if not t.endswith(".delta")] == [
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "conversation.item.done",
            "response.output_item.done",
            "response.done",
        ]
        done = turn[-1]["response"]
        assert done["metadata"] == {"turn": "1"} and done["output_modalities"] == ["audio"]
        assert done["output"][0]["content"][0]["type"] == "output_audio"


async def test_a_second_response_create_while_one_is_active_is_refused(simulator_factory):
    sim = simulator_factory(latency=0.5, ping_interval=0.3)
    async with sim.connect() as rt:
        await rt.recv()
        await rt.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        await rt.recv()
        await rt.send({"type": "conversation.item.create", "item": USER_HELLO})
        await rt.send({"type": "response.create"})
        created = await rt.recv_until("response.created")
        await rt.send({"type": "response.create", "event_id": "again"})
        events = await rt.recv_until("error")
        error = events[-1]["error"]
        active = created[-1]["response"]["id"]
        assert (error["code"], error["event_id"]) == ("conversation_already_has_active_response", "again")
        assert error["message"] == (
            f"Conversation already has an active response in progress: {active}. "
            "Wait until the response is finished before creating a new one."
        )
        await rt.recv_until("response.done")


async def test_response_cancel_ends_the_active_response(simulator_factory):
    sim = simulator_factory(latency=0.5, ping_interval=0.3)
    async with sim.connect() as rt:
        await rt.recv()
        await rt.send({"type": "conversation.item.create", "item": USER_HELLO})
        await rt.send({"type": "response.create"})
        await rt.recv_until("response.created")
        await rt.send({"type": "response.cancel"})
        done = (await rt.recv_until("response.done"))[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        # The session takes a new response right away.
        await rt.send({"type": "response.create"})
        assert (await rt.recv_until("response.done"))[-1]["response"]["status"] == "completed"


async def test_a_turn_detection_of_another_kind_replaces_the_old_one(simulator):
    # agents-js sends {"type": "semantic_vad"} over the default server_vad: the server_vad fields
    # (threshold, silence_duration_ms, ...) must not stay behind in a semantic_vad object.
    async with simulator.connect() as rt:
        created = (await rt.recv())["session"]
        assert created["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        turn = {"type": "semantic_vad", "eagerness": "auto"}
        await rt.send(
            {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": turn}}}}
        )
        updated = (await rt.recv())["session"]
        assert updated["audio"]["input"]["turn_detection"] == turn
        assert updated["audio"]["input"]["format"] == created["audio"]["input"]["format"]  # the rest merges


async def test_a_noise_reduction_object_needs_its_type(simulator):
    # openai 3.60: "When you supply a noise_reduction object, you must set type" (null turns it off).
    async with simulator.connect() as rt:
        await rt.recv()
        audio: dict[str, Any] = {"input": {"noise_reduction": {"strength": 0.5}}}
        await rt.send({"type": "session.update", "session": {"type": "realtime", "audio": audio}})
        error = (await rt.recv())["error"]
        assert (error["code"], error["param"]) == (
            "missing_required_parameter",
            "session.audio.input.noise_reduction.type",
        )
        audio = {"input": {"noise_reduction": {"type": "far_field", "strength": 0.5}}}
        await rt.send({"type": "session.update", "session": {"type": "realtime", "audio": audio}})
        updated = (await rt.recv())["session"]
        assert updated["audio"]["input"]["noise_reduction"] == {"type": "far_field", "strength": 0.5}
