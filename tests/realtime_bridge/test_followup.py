"""The official SDKs unchanged through the relay, at the relay's edge (issue 14): an agents-js
`hostedMcpTool` for a registered server is served from the registry without a word, an unknown
label is refused; and one reply after a tool call, whoever asks for it (session.FollowUp)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from approvals import services
from approvals.models import McpServer
from realtime_bridge import session as session_module
from realtime_bridge.session import FollowUp
from tests.realtime_bridge.conftest import db
from tests.realtime_bridge.test_consumers import _request_approval

pytestmark = pytest.mark.django_db(transaction=True)

# What agents-js 0.20 sends for `hostedMcpTool({serverLabel: 'hotel', serverUrl, requireApproval})`.
AGENTS_JS_TOOL = {
    "type": "mcp",
    "server_label": "hotel",
    "server_url": "https://mcp.example.invalid/hotel",
    "require_approval": "always",
}


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> float:
    # The relay's window, shortened so the tests wait less; the rule is the same.
    monkeypatch.setattr(session_module, "FOLLOWUP_GRACE_SECONDS", 0.3)
    return 0.3


async def _hotel() -> McpServer:
    server, _ = await db(
        services.register_mcp_server, label="hotel", url="http://127.0.0.1:9/mcp", headers={"X-API-Key": "k-123456"}
    )
    return server


async def _session_update(relay, tools: list[dict[str, Any]]) -> None:
    await relay.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Hi", "tools": tools}})


async def test_a_hosted_mcp_tool_naming_a_registered_server_is_served_from_the_registry_silently(relay, upstream):
    await _hotel()
    await _session_update(relay, [AGENTS_JS_TOOL, {**AGENTS_JS_TOOL, "headers": {"X-API-Key": "the-apps-own"}}])
    (update,) = await upstream.wait_for(
        lambda e: e.get("type") == "session.update" and e["session"].get("instructions") == "Hi"
    )
    (tool,) = update["session"]["tools"]
    # The registry's URL and credentials, the policy's require_approval: none of the app's.
    assert (tool["server_label"], tool["server_url"], tool["headers"]) == (
        "hotel",
        "http://127.0.0.1:9/mcp",
        {"X-API-Key": "k-123456"},
    )
    assert "example.invalid" not in json.dumps(upstream.events()) and "the-apps-own" not in json.dumps(
        upstream.events()
    )
    await relay.send({"type": "input_audio_buffer.commit", "event_id": "after"})
    await upstream.wait_for(lambda e: e.get("type") == "input_audio_buffer.commit")
    assert [f for f in relay.frames if f.get("type") == "error"] == []  # not a word to the client


async def test_an_unknown_label_is_refused_and_the_rest_passes(relay, upstream):
    await _hotel()
    await _session_update(relay, [AGENTS_JS_TOOL, {**AGENTS_JS_TOOL, "server_label": "spa"}])
    error = await relay.recv_until("error")
    assert (error["error"]["code"], error["error"]["param"]) == ("mcp_tool_not_allowed", "session.tools")
    assert "'spa'" in error["error"]["message"] and "'hotel'" not in error["error"]["message"]
    (update,) = await upstream.wait_for(lambda e: e.get("type") == "session.update" and "instructions" in e["session"])
    assert [t["server_label"] for t in update["session"]["tools"]] == ["hotel"]


async def _tool_call_finishes(upstream, relay, alice) -> None:
    req = await _request_approval(upstream, relay)
    await db(services.decide, req, approve=True, by=alice)
    await upstream.wait_for(lambda e: e.get("type") == "conversation.item.create")
    call = {
        "id": "mcp_item_1",
        "type": "mcp_call",
        "server_label": "hotel",
        "name": "unlock_door",
        "arguments": '{"room":"1204"}',
        "approval_request_id": "mcpr_abc123",
        "output": "ok",
        "error": None,
    }
    await upstream.send({"type": "conversation.item.done", "event_id": "e_call", "item": call})
    await relay.recv_until("conversation.item.done")


async def test_a_client_that_asks_for_the_reply_itself_gets_no_second_one(relay, upstream, alice, short_grace):
    await _tool_call_finishes(upstream, relay, alice)
    await relay.send({"type": "response.create", "event_id": "client_follow_up"})  # agents-js's own
    await upstream.wait_for(lambda e: e.get("event_id") == "client_follow_up")
    await asyncio.sleep(short_grace * 3)  # well past the window: the relay would have sent by now
    assert [e.get("event_id") for e in upstream.of_type("response.create")] == ["client_follow_up"]


async def test_a_client_that_does_not_ask_gets_the_relays_after_the_window(relay, upstream, alice, short_grace):
    await _tool_call_finishes(upstream, relay, alice)
    (ours,) = await upstream.wait_for(lambda e: e.get("type") == "response.create")
    assert ours["event_id"].startswith("event_cs")
    # The client asks late, while the relay's response runs: the same request, absorbed.
    await upstream.send(
        {"type": "response.created", "event_id": "e_c", "response": {"id": "resp_2", "conversation_id": "conv_1"}}
    )
    await relay.recv_until("response.created")
    await relay.send({"type": "response.create", "event_id": "late"})
    await relay.send({"type": "input_audio_buffer.commit", "event_id": "marker"})
    await upstream.wait_for(lambda e: e.get("type") == "input_audio_buffer.commit")
    assert len(upstream.of_type("response.create")) == 1


async def test_a_denial_owes_one_reply_even_when_the_call_item_follows(relay, upstream, alice, short_grace):
    req = await _request_approval(upstream, relay)
    await db(services.decide, req, approve=False, by=alice, reason="no")
    await upstream.wait_for(lambda e: e.get("type") == "conversation.item.create")
    denied = {
        "id": "mcp_item_1",
        "type": "mcp_call",
        "server_label": "hotel",
        "name": "unlock_door",
        "arguments": '{"room":"1204"}',
        "approval_request_id": "mcpr_abc123",
        "output": None,
        "error": {"type": "tool_execution_error", "message": "The user rejected this tool call."},
    }
    await upstream.send({"type": "conversation.item.done", "event_id": "e_call", "item": denied})
    await upstream.wait_for(lambda e: e.get("type") == "response.create")
    await asyncio.sleep(short_grace * 3)
    assert len(upstream.of_type("response.create")) == 1


def test_the_rule_step_by_step():
    f = FollowUp(grace=1)
    assert f.want("a") and not f.want("a")  # once per approval request
    assert not f.should_send()  # in the window
    f.grace_over()
    assert f.should_send() and f.state == "requested"
    assert not f.client_response_create()  # late: absorbed
    f.observe("response.created", {"response": {"conversation_id": "conv_1"}})
    assert f.state == "ours" and not f.client_response_create()
    f.observe("response.done", {})
    assert f.state is None and f.client_response_create()  # a new turn of the client's passes

    f = FollowUp(grace=1)
    f.want("b")
    f.observe("response.created", {"response": {"conversation_id": None}})  # out of band: not a reply
    assert f.state == "waiting"
    f.observe("response.created", {"response": {"conversation_id": "conv_1"}})  # server VAD, a sideband's client
    assert f.state is None

    f = FollowUp(grace=1)
    f.want("d")
    f.grace_over()
    assert f.should_send()
    f.observe("response.created", {"response": {"conversation_id": "conv_1"}})
    assert not f.want("e")  # a second call finished while the relay's reply runs
    f.observe("response.done", {})
    assert f.should_send()  # so another reply follows, at once

    f = FollowUp(grace=1)
    f.want("c")
    f.grace_over()
    f.response_active = True  # a response is running: wait for its end
    assert not f.should_send()
    f.observe("conversation.item.done", {"item": {"type": "message", "role": "assistant"}})
    assert f.state is None  # the model spoke after the call: that was the reply
