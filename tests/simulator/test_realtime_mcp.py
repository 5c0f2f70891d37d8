"""MCP tools in a Realtime session: listing (section 4), the tool object's rules (section 3.1), and which
tools need approval (require_approval, allowed_tools) as the scripted model calls them."""

from __future__ import annotations

from typing import Any

import pytest

TRANSPORTS = pytest.mark.parametrize("sse", [False, True], ids=["streamable_http", "sse"])


def _types(events):
    return [e["type"] for e in events]


@TRANSPORTS
async def test_listing_follows_session_updated_in_the_spec_order(simulator, mcp_servers, sse):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.send(
            {"type": "session.update", "session": {"type": "realtime", "tools": [mcp_servers.desk_tool(sse=sse)]}}
        )
        events = await rt.recv_until("session.updated") + await rt.listings()
        assert _types(events) == [
            "session.updated",
            "conversation.item.added",
            "mcp_list_tools.in_progress",
            "mcp_list_tools.completed",  # default list_order completed_first
            "conversation.item.done",
        ]
        added, in_progress, completed, done = events[1:]
        list_id = added["item"]["id"]
        assert added["item"] == {"id": list_id, "type": "mcp_list_tools", "server_label": "desk", "tools": []}
        assert added["previous_item_id"] is None
        assert in_progress["item_id"] == completed["item_id"] == done["item"]["id"] == list_id
        assert list_id.startswith("mcpl_") and len(list_id) <= 32
        assert {t["name"] for t in done["item"]["tools"]} == {"get_status", "ring_bell", "jam_printer"}
        # The configured header reached the real server.
        assert all(h.get("x-api-key") == "desk-key-123" for h in mcp_servers.desk.headers)


@TRANSPORTS
async def test_a_server_that_rejects_the_missing_header_fails_the_listing(simulator, mcp_servers, sse):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.update_session(tools=[mcp_servers.desk_tool(sse=sse, headers={})])
        events = await rt.listings()
        assert _types(events) == ["conversation.item.added", "mcp_list_tools.in_progress", "mcp_list_tools.failed"]
        assert mcp_servers.desk.headers and all("x-api-key" not in h for h in mcp_servers.desk.headers)
        # The label's tools are unavailable: a call command gets a spoken refusal, no tool call.
        await rt.add_user_text('call desk ring_bell {"room": "1"}')
        await rt.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        turn = await rt.recv_until("response.done")
        assert not [e for e in turn if "mcp" in e["type"]]
        assert "can't use ring_bell" in turn[-1]["response"]["output"][0]["content"][0]["text"]
        assert mcp_servers.desk.calls == []


async def test_the_hotel_rejects_a_session_without_its_api_key(simulator, hotel_mcp):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.update_session(tools=[hotel_mcp.tool(headers={})])
        assert _types(await rt.listings())[-1] == "mcp_list_tools.failed"
        await rt.update_session(tools=[hotel_mcp.tool()])
        assert _types(await rt.listings())[-1] == "conversation.item.done"


async def test_an_unreachable_server_fails_the_listing(simulator, mcp_servers):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.update_session(
            tools=[{"type": "mcp", "server_label": "down", "server_url": mcp_servers.down_base + "/mcp"}]
        )
        assert _types(await rt.listings())[-1] == "mcp_list_tools.failed"


async def test_a_server_without_tools_completes_the_listing_with_no_tools(simulator, mcp_servers):
    # [INFERRED] the listing itself worked: docs/simulator.md, "Listing".
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.update_session(
            tools=[{"type": "mcp", "server_label": "empty", "server_url": mcp_servers.empty_base + "/mcp"}]
        )
        events = await rt.listings()
        assert "mcp_list_tools.completed" in _types(events) and "mcp_list_tools.failed" not in _types(events)
        assert [e["item"]["tools"] for e in events if e["type"] == "conversation.item.done"] == [[]]


async def test_one_list_item_per_label_and_unchanged_tools_are_not_listed_again(simulator, mcp_servers):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.update_session(tools=[mcp_servers.desk_tool("a"), mcp_servers.desk_tool("b", sse=True)])
        events = await rt.listings(2)
        labels = sorted(e["item"]["server_label"] for e in events if e["type"] == "conversation.item.done")
        assert labels == ["a", "b"]
        await rt.update_session(tools=[mcp_servers.desk_tool("a"), mcp_servers.desk_tool("b", sse=True)])
        await rt.expect_silence()
        await rt.update_session(tools=[])  # tools:[] clears them
        await rt.add_user_text('call a get_status {"room": "3"}')
        await rt.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        assert not [e for e in await rt.recv_until("response.done") if "mcp_call" in e["type"]]


async def test_a_label_defined_once_can_be_reused_by_name(simulator, mcp_servers):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.update_session(tools=[mcp_servers.desk_tool(require_approval="never")])
        await rt.listings()
        await rt.update_session(tools=[])
        # Section 3.1: later updates may send only type and server_label.
        updated = await rt.update_session(tools=[{"type": "mcp", "server_label": "desk"}])
        assert updated["session"]["tools"] == [{"type": "mcp", "server_label": "desk"}]
        await rt.expect_silence()  # same definition: no new listing
        await rt.add_user_text('call desk ring_bell {"room": "7"}')
        await rt.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        turn = await rt.recv_until("response.done")
        assert "response.mcp_call.completed" in _types(turn)
        assert mcp_servers.desk.calls == [("ring_bell", {"room": "7", "times": 1})]


@pytest.mark.parametrize(
    ("tools", "code", "param"),
    [
        ([{"type": "mcp", "server_label": "new"}], "missing_required_parameter", "session.tools[0].server_url"),
        (
            [{"type": "mcp", "server_label": "d", "server_url": "http://127.0.0.1:9/mcp"}] * 2,
            "invalid_value",
            "session.tools[1].server_label",
        ),
        (
            [{"type": "mcp", "server_label": "d", "server_url": "http://x/mcp", "connector_id": "connector_gmail"}],
            "invalid_value",
            "session.tools[0].connector_id",
        ),
        ([{"type": "mcp", "server_label": "d", "connector_id": "connector_fax"}], "invalid_value", None),
        (
            [
                {
                    "type": "mcp",
                    "server_label": "d",
                    "server_url": "http://x/mcp",
                    "authorization": "t",
                    "headers": {"authorization": "Bearer t"},
                }
            ],
            "invalid_value",
            "session.tools[0].authorization",
        ),
        (
            [
                {
                    "type": "mcp",
                    "server_label": "d",
                    "connector_id": "connector_gmail",
                    "headers": {"Authorization": "Bearer t"},
                }
            ],
            "invalid_value",
            "session.tools[0].headers",
        ),
        (
            [{"type": "mcp", "server_label": "d", "server_url": "http://x/mcp", "require_approval": "sometimes"}],
            "invalid_value",
            "session.tools[0].require_approval",
        ),
    ],
    ids=[
        "undefined-label",
        "duplicate-label",
        "url-and-connector",
        "bad-connector",
        "two-authorizations",
        "connector-auth-header",
        "bad-require-approval",
    ],
)
async def test_invalid_mcp_tools_are_rejected_before_any_listing(simulator, tools, code, param):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.send({"type": "session.update", "event_id": "u1", "session": {"type": "realtime", "tools": tools}})
        error = (await rt.recv())["error"]
        assert (error["code"], error["event_id"]) == (code, "u1")
        if param:
            assert error["param"] == param
        await rt.expect_silence()  # no session.updated, no listing


async def test_allowed_tools_limit_what_is_imported(simulator, mcp_servers):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.update_session(
            tools=[
                mcp_servers.desk_tool("by_name", allowed_tools=["ring_bell"]),
                mcp_servers.desk_tool("by_filter", allowed_tools={"read_only": True}),
                mcp_servers.desk_tool("none_left", allowed_tools=["shred_documents"]),
            ]
        )
        events = await rt.listings(3)
        listed = {
            e["item"]["server_label"]: [t["name"] for t in e["item"]["tools"]]
            for e in events
            if e["type"] == "conversation.item.done"
        }
        assert listed == {"by_name": ["ring_bell"], "by_filter": ["get_status"]}
        assert _types(events).count("mcp_list_tools.failed") == 1
        await rt.add_user_text('call by_name get_status {"room": "1"}')  # imported elsewhere, not here
        await rt.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        assert "can't use get_status" in str((await rt.recv_until("response.done"))[-1])


@pytest.mark.parametrize(
    ("policy", "tool", "asks"),
    [
        (None, "get_status", True),
        ("always", "get_status", True),
        ("never", "ring_bell", False),
        ({"never": {"read_only": True}}, "get_status", False),
        ({"never": {"read_only": True}}, "ring_bell", True),
        ({"always": {"tool_names": ["ring_bell"]}}, "ring_bell", True),
        ({"always": {"tool_names": ["ring_bell"]}}, "get_status", False),
    ],
)
async def test_require_approval_decides_between_asking_and_calling(simulator, mcp_servers, policy, tool, asks):
    extra = {} if policy is None else {"require_approval": policy}
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.update_session(tools=[mcp_servers.desk_tool(**extra)], output_modalities=["text"])
        await rt.listings()
        await rt.add_user_text(f'call desk {tool} {{"room": "5"}}')
        await rt.send({"type": "response.create"})
        turn = await rt.recv_until("response.done")
        kinds = [e["item"]["type"] for e in turn if e["type"] == "conversation.item.done"]
        if asks:
            assert kinds == ["mcp_approval_request"]
            assert mcp_servers.desk.calls == []
        else:
            assert kinds == ["mcp_call", "message"]
            arguments: dict[str, Any] = {"room": "5"} if tool == "get_status" else {"room": "5", "times": 1}
            assert mcp_servers.desk.calls == [(tool, arguments)]


async def test_response_level_tools_are_listed_and_used_for_that_response(simulator, mcp_servers):
    async with simulator.connect() as rt:
        await rt.recv()
        await rt.add_user_text('call oneoff get_status {"room": "9"}')
        tool = mcp_servers.desk_tool("oneoff", require_approval="never")
        await rt.send({"type": "response.create", "response": {"tools": [tool], "output_modalities": ["text"]}})
        turn = await rt.recv_until("response.done")
        types = _types(turn)
        assert types.index("response.created") < types.index("mcp_list_tools.completed")
        assert "response.mcp_call.completed" in types
        assert mcp_servers.desk.calls == [("get_status", {"room": "9"})]


async def test_list_order_item_first(simulator_factory, mcp_servers):
    # The same knob set as test_realtime_approval's, so both share one simulator process.
    knobs: dict[str, Any] = {"list_order": "item_first", "mcp_call_done_order": "item_first"}
    knobs |= {"approval_output_item_events": False, "mcp_call_output_item_done": True}
    async with simulator_factory(**knobs).connect() as rt:
        await rt.recv()
        await rt.update_session(tools=[mcp_servers.desk_tool()])
        assert _types(await rt.listings())[-2:] == ["conversation.item.done", "mcp_list_tools.completed"]


@pytest.mark.parametrize("mode", ["failed", "failed_with_error"])
async def test_the_list_fail_knob(simulator_factory, mcp_servers, mode):
    async with simulator_factory(list_fail=mode).connect() as rt:
        await rt.recv()
        await rt.update_session(tools=[mcp_servers.desk_tool()])
        events = await rt.listings()
        assert _types(events)[-1] == "mcp_list_tools.failed"
        if mode == "failed_with_error":
            error = (await rt.recv())["error"]
            assert error["code"] == "mcp_list_tools_failed" and "'desk'" in error["message"]
        await rt.expect_silence()
