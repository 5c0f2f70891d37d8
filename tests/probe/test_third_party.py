"""The probe against real third-party MCP servers (tests/probe/conftest.py), each case checked against
the simulator's hosted MCP client given the same `mcp` tool: what the probe says OpenAI would import is
exactly what the simulator imports, and a server the probe cannot list, the simulator cannot either.
The last tests rehearse `mcp_list_tools.completed` with no tools in a real simulator session, for each
cause that gives it, next to the probe's explanation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import mcp_link
from approvals import probe
from simulator import mcp_client
from tests.probe.conftest import LONG_NAME

TEN = [
    "get_room_status",
    "lookup_booking",
    "unlock_door",
    "set_room_lighting",
    "send_towels",
    "book_taxi",
    "set_wakeup_call",
    "issue_refund",
    "read_file",
    "folio_history",
]


def _tool(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "third_party", "server_url": url, "require_approval": "never", **extra}


async def both(url: str, *, transport: str = mcp_link.AUTO) -> tuple[probe.ProbeResult, list[str] | str]:
    """The probe's result, and the simulator's imported tool names (or its failure), checked to agree."""
    result = await probe.probe(url=url, authorization="", headers={}, transport=transport)
    try:
        simulated: list[str] | str = [t["name"] for t in await mcp_client.list_tools(_tool(url))]
    except mcp_client.McpListError as exc:
        simulated = str(exc)
    if result.reached:
        assert simulated == result.imported, result.report()
    else:
        assert isinstance(simulated, str), (simulated, result.report())
    assert result.protocol_version in ("", *mcp_link.ACCEPTED_PROTOCOL_VERSIONS)
    return result, simulated


@pytest.mark.parametrize(
    ("key", "transport"), [("fastmcp:http,/mcp", "Streamable HTTP"), ("fastmcp:sse,/sse", "HTTP+SSE")]
)
async def test_a_fastmcp_server_with_ten_tools_lists_over_either_transport(third_party, key, transport):
    result, _ = await both(third_party.url(key))

    assert result.ok, result.report()
    assert result.imported == TEN
    assert result.report().startswith(f"OK: {third_party.url(key)} over {transport}: OpenAI would import 10 tool(s)")
    assert f"the server chose {result.protocol_version}" in result.report()


async def test_an_sse_endpoint_at_a_path_that_does_not_say_so_is_found_as_openai_would_find_it(third_party):
    # Registered as Streamable HTTP: OpenAI never sees that, so the probe tries the URL as OpenAI would.
    result, _ = await both(third_party.url("fastmcp:sse,/events"), transport=mcp_link.STREAMABLE_HTTP)

    assert result.ok and result.transport == mcp_link.SSE, result.report()
    report = result.report()
    assert "the probe fell back to HTTP+SSE" in report
    assert (
        "the registry names Streamable HTTP, but OpenAI is given the URL alone and this URL answers HTTP+SSE" in report
    )


async def test_names_openai_refuses_are_named_and_the_other_tools_listed(third_party):
    result, simulated = await both(third_party.url("fastmcp:http,/mcp,--bad-names"))

    assert not result.ok
    assert simulated == [n for n in TEN if n not in ("read_file", "folio_history")]
    assert {r.name for r in result.refused} == {"files.read", LONG_NAME}
    report = result.report()
    assert "OpenAI would refuse 2 of the server's 10 tools and import the other 8" in report
    assert (
        "tool 'files.read': OpenAI takes tool names of 1-64 letters, digits, '_' or '-', but it contains '.'" in report
    )
    assert (
        f"tool '{LONG_NAME}': OpenAI takes tool names of 1-64 letters, digits, '_' or '-', but it is 70 characters long"
        in report
    )


@pytest.mark.parametrize("variant", ["streamableHttp", "sse"])
async def test_the_reference_everything_server(third_party, variant):
    result, _ = await both(third_party.url(f"everything:{variant}"))

    assert result.reached, result.report()
    assert "echo" in result.imported and "get-sum" in result.imported
    assert result.transport == (mcp_link.SSE if variant == "sse" else mcp_link.STREAMABLE_HTTP)
    assert result.ok, result.report()


@pytest.mark.parametrize("variant", ["example", "example-sse"])
async def test_the_mcp_1x_readme_example(third_party, variant):
    result, _ = await both(third_party.url(f"mcp1:{variant}"))

    assert result.ok, result.report()
    assert result.imported == ["add"]


async def test_a_non_object_input_schema_is_named_in_a_line_and_the_other_tools_listed(third_party):
    result, simulated = await both(third_party.url("mcp1:mixed"))

    assert not result.ok and simulated == ["ring_bell", "get_status"]
    report = result.report()
    assert 'tool \'count_guests\': not a valid MCP tool: its inputSchema has "type": "string", not "object"' in report
    assert "tool 'files.read': OpenAI takes tool names" in report
    assert "validation error" not in report and "pydantic" not in report  # no raw dump
    assert "OpenAI would import 2 tool(s): ring_bell, get_status" in report


async def test_a_server_whose_every_tool_is_refused(third_party):
    result, simulated = await both(third_party.url("mcp1:refused"))

    assert simulated == [] and result.imported == []
    assert "OpenAI would refuse 2 of the server's 2 tools and import the other 0" in result.report()
    assert "(mcp_list_tools.completed with no tools from this server)" in result.report()


async def test_an_oauth_protected_server_is_told_as_one(third_party):
    result, simulated = await both(third_party.url("mcp1:oauth"))

    assert not result.reached
    report = result.report()
    assert "the server wants OAuth: it answered HTTP 401 with WWW-Authenticate: Bearer resource_metadata=" in report
    assert "names the authorization server https://auth.hotel.example/ and the scopes hotel:read" in report
    assert "register it as the server's authorization" in report
    assert "X-API-Key" not in report  # not the API-key hint
    assert simulated == "the server rejected the credentials (HTTP 401 Unauthorized)"


async def test_a_path_that_is_no_mcp_endpoint(third_party):
    url = third_party.url("everything:streamableHttp").replace("/mcp", "/nothing-here")

    result, _ = await both(url)

    assert "this URL is no MCP endpoint: the Streamable HTTP POST answered HTTP 404" in result.report()
    assert "the HTTP+SSE GET that the MCP specification says to try next answered HTTP 404" in result.report()


async def _session_listing(simulator: Any, tool: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The listing events of a session given this one `mcp` tool, and the simulator's own record of
    that listing (GET /sim/listings: imported, left out and why)."""
    async with simulator.connect() as rt:
        session_id = (await rt.recv())["session"]["id"]
        await rt.update_session(tools=[tool])
        events: list[dict[str, Any]] = await rt.listings()
    async with httpx.AsyncClient(base_url=simulator.base_url.removesuffix("/v1")) as http:
        auth = {"Authorization": f"Bearer {simulator.api_key}"}
        listings = (await http.get("/sim/listings", headers=auth)).json()["data"]
    [record] = [r for r in listings if r["session_id"] == session_id]
    return events, record


async def test_a_session_imports_exactly_what_the_probe_says(simulator, third_party):
    url = third_party.url("fastmcp:http,/mcp,--bad-names")
    result = await probe.probe(url=url, authorization="", headers={})

    events, record = await _session_listing(simulator, _tool(url))

    [item] = [e["item"] for e in events if e["type"] == "conversation.item.done"]
    assert [t["name"] for t in item["tools"]] == result.imported == record["tools"] and len(result.imported) == 8
    # The same tools left out for the same reasons, word for word.
    assert record["refused"] == [{"name": r.name, "reasons": r.reasons} for r in result.refused]
    assert record["status"] == "completed" and record["server_url"] == url


@pytest.mark.parametrize(
    ("key", "allowed_tools", "explained"),
    [
        ("mcp1:refused", None, "(mcp_list_tools.completed with no tools from this server)"),
        ("mcp1:empty", None, "the server lists no tools: OpenAI would import nothing from it"),
        # The filter matches no importable tool: both named tools exist but neither is read-only.
        ("fastmcp:http,/mcp", {"tool_names": ["unlock_door", "book_taxi"], "read_only": True}, None),
        # Its only named tool exists but is one OpenAI would refuse.
        ("fastmcp:http,/mcp,--bad-names", ["files.read"], "tool 'files.read'"),
    ],
    ids=["every-tool-refused", "no-tools", "filter-matches-none", "only-a-refused-tool-allowed"],
)
async def test_the_causes_of_a_completed_listing_with_no_tools(simulator, third_party, key, allowed_tools, explained):
    url = third_party.url(key)
    tool = _tool(url, **({"allowed_tools": allowed_tools} if allowed_tools is not None else {}))

    events, record = await _session_listing(simulator, tool)

    assert record["status"] == "completed" and record["tools"] == []
    types = [e["type"] for e in events]
    assert "mcp_list_tools.completed" in types and "mcp_list_tools.failed" not in types
    assert [e["item"]["tools"] for e in events if e["type"] == "conversation.item.done"] == [[]]
    if explained is not None:
        assert explained in (await probe.probe(url=url, authorization="", headers={})).report()


async def test_allowed_tools_naming_no_listed_tool_fail_the_listing_instead(simulator, third_party):
    # REALTIME_PROTOCOL.md section 4 documents bad allowed_tools names as a cause of mcp_list_tools.failed.
    events, record = await _session_listing(
        simulator, _tool(third_party.url("fastmcp:http,/mcp"), allowed_tools=["nope"])
    )

    assert [e["type"] for e in events][-1] == "mcp_list_tools.failed"
    assert record["status"] == "failed" and "is in allowed_tools" in record["failure"]
