"""simulator.mcp_client against real MCP servers (tests/simulator/conftest.py), over both transports."""

from __future__ import annotations

import json

import pytest

from simulator import mcp_client
from simulator.mcp_client import McpListError

TRANSPORTS = pytest.mark.parametrize("sse", [False, True], ids=["streamable_http", "sse"])


@TRANSPORTS
async def test_it_lists_tools_in_realtime_item_shape(mcp_servers, sse):
    tools = await mcp_client.list_tools(mcp_servers.desk_tool(sse=sse))
    by_name = {t["name"]: t for t in tools}
    assert set(by_name) == {"get_status", "ring_bell", "jam_printer"}
    assert by_name["get_status"]["annotations"] == {"read_only": True}
    assert by_name["ring_bell"]["annotations"] == {"read_only": False}
    assert by_name["jam_printer"]["annotations"] is None
    assert by_name["ring_bell"]["input_schema"]["required"] == ["room"]
    assert by_name["ring_bell"]["description"] == "Ring the bell of a room (changes state)."


@TRANSPORTS
async def test_it_sends_the_configured_headers_and_authorization(mcp_servers, sse):
    await mcp_client.list_tools(
        mcp_servers.desk_tool(sse=sse, authorization="tok-1", headers={"X-API-Key": "desk-key-123", "X-Trace": "abc"})
    )
    assert mcp_servers.desk.headers
    for headers in mcp_servers.desk.headers:
        assert headers["x-api-key"] == "desk-key-123"
        assert headers["x-trace"] == "abc"
        assert headers["authorization"] == "Bearer tok-1"


@TRANSPORTS
async def test_it_reports_rejected_credentials(mcp_servers, sse):
    with pytest.raises(McpListError, match=r"rejected the credentials \(HTTP 401"):
        await mcp_client.list_tools(mcp_servers.desk_tool(sse=sse, headers={}))


@TRANSPORTS
async def test_it_reports_an_unreachable_server(mcp_servers, sse):
    url = mcp_servers.down_base + ("/sse" if sse else "/mcp")
    with pytest.raises(McpListError, match="unreachable"):
        await mcp_client.list_tools({"type": "mcp", "server_label": "x", "server_url": url})


@TRANSPORTS
async def test_a_server_without_tools_is_an_empty_import(mcp_servers, sse):
    url = mcp_servers.empty_base + ("/sse" if sse else "/mcp")
    assert await mcp_client.list_tools({"type": "mcp", "server_label": "x", "server_url": url}) == []


async def test_it_reports_a_url_that_is_not_an_mcp_endpoint(mcp_servers):
    tool = mcp_servers.desk_tool()
    tool["server_url"] = mcp_servers.desk_base + "/nothing-here"
    with pytest.raises(McpListError):
        await mcp_client.list_tools(tool)


async def test_it_cannot_reach_a_connector_offline():
    with pytest.raises(McpListError, match="connector_id"):
        await mcp_client.list_tools({"type": "mcp", "server_label": "g", "connector_id": "connector_gmail"})


async def test_allowed_tools_as_a_list_keeps_only_those(mcp_servers):
    tools = await mcp_client.list_tools(mcp_servers.desk_tool(allowed_tools=["ring_bell", "no_such_tool"]))
    assert [t["name"] for t in tools] == ["ring_bell"]


async def test_allowed_tools_as_a_filter_matches_read_only(mcp_servers):
    tools = await mcp_client.list_tools(mcp_servers.desk_tool(allowed_tools={"read_only": True}))
    assert [t["name"] for t in tools] == ["get_status"]
    tools = await mcp_client.list_tools(
        mcp_servers.desk_tool(allowed_tools={"tool_names": ["ring_bell", "get_status"], "read_only": False})
    )
    assert [t["name"] for t in tools] == ["ring_bell"]


async def test_allowed_tools_that_match_nothing_fail_the_listing(mcp_servers):
    with pytest.raises(McpListError, match="allowed_tools"):
        await mcp_client.list_tools(mcp_servers.desk_tool(allowed_tools=["nope"]))


READ = {"name": "get_status", "annotations": {"read_only": True}}
WRITE = {"name": "ring_bell", "annotations": {"read_only": False}}
BARE = {"name": "jam_printer", "annotations": None}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, (True, True, True)),
        ("always", (True, True, True)),
        ("never", (False, False, False)),
        ({"never": {"read_only": True}}, (False, True, True)),
        ({"never": {"tool_names": ["ring_bell"]}}, (True, False, True)),
        ({"always": {"tool_names": ["ring_bell"]}}, (False, True, False)),
        ({"always": {"read_only": False}, "never": {"read_only": True}}, (False, True, True)),
        ({"always": {"tool_names": ["get_status"]}, "never": {"read_only": True}}, (True, True, True)),
    ],
)
def test_require_approval_forms(policy, expected):
    cfg = {"type": "mcp", "server_label": "d", "server_url": "http://x/mcp", "require_approval": policy}
    assert tuple(mcp_client.requires_approval(cfg, t) for t in (READ, WRITE, BARE)) == expected


@TRANSPORTS
async def test_call_tool_returns_the_text_output(mcp_servers, sse):
    output, error = await mcp_client.call_tool(mcp_servers.desk_tool(sse=sse), "ring_bell", '{"room": "12"}')
    assert (output, error) == ("Rang room 12 1 time(s).", None)
    assert mcp_servers.desk.calls == [("ring_bell", {"room": "12", "times": 1})]


async def test_call_tool_reports_a_failing_tool_as_tool_execution_error(mcp_servers):
    output, error = await mcp_client.call_tool(mcp_servers.desk_tool(), "jam_printer", '{"reason": "paper"}')
    assert output is None
    assert error is not None and error["type"] == "tool_execution_error"
    assert "jam_printer" in error["message"]


async def test_call_tool_reports_http_errors(mcp_servers):
    output, error = await mcp_client.call_tool(mcp_servers.desk_tool(headers={}), "ring_bell", '{"room": "1"}')
    assert (output, error) == (None, {"type": "http_error", "code": 401, "message": "HTTP 401 Unauthorized"})
    assert mcp_servers.desk.calls == []


async def test_call_tool_reports_bad_arguments_as_a_protocol_error(mcp_servers):
    output, error = await mcp_client.call_tool(mcp_servers.desk_tool(), "ring_bell", "[1, 2]")
    assert output is None and error is not None
    assert (error["type"], error["code"]) == ("protocol_error", -32602)
    assert mcp_servers.desk.calls == []


def test_request_headers_combine_authorization_and_headers():
    cfg = {"authorization": "abc", "headers": {"X-Api-Key": "k"}}
    assert mcp_client.request_headers(cfg) == {"X-Api-Key": "k", "Authorization": "Bearer abc"}
    assert json.dumps(mcp_client.request_headers({})) == "{}"
