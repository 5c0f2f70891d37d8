"""The registry's probe against real MCP servers: the demo hotel (a process, X-API-Key) and small
servers of the official SDK run by uvicorn in a thread here. Each diagnosis is checked by the cause
it names in plain words, as the admin and `manage.py probe_mcp` show it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from approvals import services
from approvals.models import AuditKind, McpServer, McpTool
from approvals.probe import check_tool
from audit.models import AuditEvent
from tests.plugins.processes import ThreadServer as _ThreadServer
from tests.plugins.processes import free_port

pytestmark = pytest.mark.django_db


def _app(mcp: MCPServer) -> ASGIApp:
    # Streamable HTTP at /mcp and HTTP+SSE at /sse on one port, like the hotel server.
    app = mcp.streamable_http_app()
    app.router.routes.extend(mcp.sse_app().routes)
    return app


def _empty() -> MCPServer:
    return MCPServer("empty")


def _bad_name() -> MCPServer:
    mcp = MCPServer("dotted")

    # MCP allows dots in tool names (SEP-986); OpenAI function names do not.
    @mcp.tool(name="rooms.lookup")
    def lookup(room: str) -> str:
        """Look up a room."""
        return room

    @mcp.tool()
    def ring_bell(room: str) -> str:
        """Ring a room's bell."""
        return room

    return mcp


def _concierge(version: int) -> MCPServer:
    """The same tool before and after an upgrade: v2 gains an argument and a new promise."""
    mcp = MCPServer("concierge")
    if version == 1:

        @mcp.tool()
        def book_taxi(room: str) -> str:
            """Book a taxi for a guest."""
            return room

    else:

        @mcp.tool()
        def book_taxi(room: str, charge_to_card: bool = True) -> str:
            """Book a taxi for a guest and charge the stored card."""
            return room

    @mcp.tool()
    def weather() -> str:
        """Today's weather."""
        return "sunny"

    return mcp


async def _from_the_future(scope: Scope, receive: Receive, send: Send) -> None:
    """A Streamable HTTP endpoint that answers `initialize` with a protocol version no client
    knows, as a server built on a newer (or broken) SDK would. Written by hand: the official
    server always negotiates a version the client supports."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body or b"{}")
    if request.get("method") != "initialize":
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    result = {"protocolVersion": "2099-01-01", "capabilities": {}, "serverInfo": {"name": "future", "version": "9"}}
    answer = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})


async def _modern_only(scope: Scope, receive: Receive, send: Send) -> None:
    """A Streamable HTTP endpoint that serves only the 2026-07-28 era: `initialize` gets the error an
    mcp 2.x server gives on a modern connection (-32022, naming its versions). Written by hand."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body or b"{}")
    error = {
        "code": -32022,
        "message": "the initialize handshake is not accepted",
        "data": {"supported": ["2026-07-28"]},
    }
    answer = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "error": error}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})


@dataclass
class Servers:
    empty: str
    bad_name: str
    concierge_v1: str
    concierge_v2: str
    future: str
    modern_only: str
    down: str


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with (
        _ThreadServer(_app(_empty())) as empty,
        _ThreadServer(_app(_bad_name())) as bad_name,
        _ThreadServer(_app(_concierge(1))) as v1,
        _ThreadServer(_app(_concierge(2))) as v2,
        _ThreadServer(_from_the_future) as future,
        _ThreadServer(_modern_only) as modern_only,
    ):
        base = "http://127.0.0.1:{}/mcp"
        yield Servers(
            empty=base.format(empty.port),
            bad_name=base.format(bad_name.port),
            concierge_v1=base.format(v1.port),
            concierge_v2=base.format(v2.port),
            future=base.format(future.port),
            modern_only=base.format(modern_only.port),
            down=base.format(free_port()),
        )


def register(label: str, url: str, **fields: object) -> McpServer:
    server, _ = services.register_mcp_server(label=label, url=url, **fields)  # type: ignore[arg-type]
    return server


def probe(server: McpServer) -> tuple[bool, str]:
    result = services.probe_mcp_server(server, by=None)
    assert server.probe_report == result.report()
    return result.ok, result.report()


def test_it_lists_the_hotel_tools_with_the_api_key_and_stores_them_hashed(hotel_mcp):
    server = register("hotel_ops", hotel_mcp.mcp_url, headers=hotel_mcp.headers)

    ok, report = probe(server)

    assert ok, report
    assert report.startswith(f"OK: {hotel_mcp.mcp_url} over Streamable HTTP")
    # A current (mcp 2.x) server speaks 2026-07-28 too; the probe offers what OpenAI's client would.
    assert "; MCP protocol 2025-11-25" in report and "the server chose 2025-11-25" in report
    tools = list(server.tools.all())
    assert tools and all(len(t.definition_hash) == 64 and not t.needs_review for t in tools)
    assert server.probe_ok is True and server.probed_at is not None
    event = AuditEvent.objects.filter(kind=AuditKind.SERVER_PROBED).get()
    assert event.payload["ok"] is True and sorted(event.payload["tools"]) == sorted(t.name for t in tools)


def test_it_lists_the_hotel_tools_over_sse_after_the_streamable_http_post_fails(hotel_mcp):
    server = register("hotel_ops", hotel_mcp.sse_url, headers=hotel_mcp.headers)

    ok, report = probe(server)

    assert ok, report
    assert "over HTTP+SSE" in report
    assert "as the MCP specification's backwards-compatibility rule says, the probe fell back to HTTP+SSE" in report


def test_a_wrong_key_is_reported_as_rejected_credentials(hotel_mcp):
    server = register("hotel_ops", hotel_mcp.mcp_url, headers={"X-API-Key": "not-the-key"})

    ok, report = probe(server)

    assert not ok
    assert "the server rejected the credentials (HTTP 401" in report
    assert "not-the-key" not in report
    assert server.probe_ok is False and not server.tools.exists()


@pytest.mark.parametrize(("url", "configured"), [("sse_url", "streamable_http"), ("mcp_url", "sse")])
def test_the_registry_transport_changes_nothing_openai_receives_and_is_noted(hotel_mcp, url, configured):
    # OpenAI is given the URL alone (to_tool() sends no transport): the probe tries it as OpenAI would.
    server = register("hotel_ops", getattr(hotel_mcp, url), headers=hotel_mcp.headers, transport=configured)
    assert "transport" not in server.to_tool()

    ok, report = probe(server)

    assert ok, report
    answered = "HTTP+SSE" if url == "sse_url" else "Streamable HTTP"
    assert f"but OpenAI is given the URL alone and this URL answers {answered}" in report
    assert "is what Countersign's gateway uses upstream" in report


def test_a_server_with_zero_tools_is_reported(servers):
    ok, report = probe(register("empty", servers.empty))

    assert not ok
    assert "the server lists no tools: OpenAI would import nothing from it (mcp_list_tools.completed" in report


def test_a_tool_name_the_realtime_api_refuses_is_named(servers):
    server = register("dotted", servers.bad_name)

    ok, report = probe(server)

    assert not ok
    assert "OpenAI would refuse 1 of the server's 2 tools and import the other 1" in report
    assert (
        "tool 'rooms.lookup': OpenAI takes tool names of 1-64 letters, digits, '_' or '-', but it contains '.'"
        in report
    )
    assert "OpenAI would import 1 tool(s): ring_bell;" in report  # the valid tool is listed, not blamed
    assert sorted(server.tools.values_list("name", flat=True)) == ["ring_bell", "rooms.lookup"]


def test_an_unreachable_server_is_reported(servers):
    ok, report = probe(register("down", servers.down))

    assert not ok
    assert "the server is unreachable: nothing accepts connections at 127.0.0.1:" in report


def test_https_to_a_plain_http_server_is_a_tls_failure(servers):
    ok, report = probe(register("tls", servers.concierge_v1.replace("http://", "https://")))

    assert not ok
    assert "the TLS handshake with 127.0.0.1:" in report


def test_an_unsupported_protocol_version_is_named(servers):
    ok, report = probe(register("future", servers.future))

    assert not ok
    assert "the server negotiated an MCP protocol version this client does not support" in report
    assert "2099-01-01" in report
    assert "the probe offered MCP 2025-11-25 in the initialize handshake and accepts 2024-11-05" in report


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "array", "items": {}}, 'OpenAI takes an input schema that is a JSON Schema with "type": "object"'),
        ({"type": "object", "properties": {"n": {"type": "integr"}}}, "is not valid JSON Schema at properties/n/type"),
    ],
)
def test_an_input_schema_the_realtime_api_refuses_is_named(schema, problem):
    assert [p for p in check_tool({"name": "ok_name", "input_schema": schema}) if problem in p]
    assert check_tool({"name": "ok_name", "input_schema": {"type": "object", "properties": {}}}) == []


def test_a_changed_definition_is_flagged_side_by_side_until_reviewed(servers, admin_user, client):
    server = register("concierge", servers.concierge_v1)
    assert probe(server)[0]
    before = McpTool.objects.get(server=server, name="book_taxi")
    assert not McpTool.objects.drifted().exists()

    # The same label now points at the upgraded server: book_taxi changed, weather did not.
    server = register("concierge", servers.concierge_v2)
    ok, report = probe(server)

    assert ok, report
    taxi = McpTool.objects.get(pk=before.pk)
    assert list(McpTool.objects.drifted()) == [taxi] and taxi.needs_review
    assert taxi.previous_definition == before.definition and taxi.previous_hash == before.definition_hash
    assert "charge_to_card" in taxi.definition["input_schema"]["properties"]
    assert taxi.definition_hash != before.definition_hash
    assert AuditEvent.objects.filter(kind=AuditKind.SERVER_PROBED).last().payload["drifted"] == ["book_taxi"]

    client.force_login(admin_user)
    page = client.get(reverse("admin:approvals_mcptool_change", args=[taxi.pk])).content.decode()
    assert "Book a taxi for a guest." in page and "Book a taxi for a guest and charge the stored card." in page

    response = client.post(
        reverse("admin:approvals_mcptool_changelist"), {"action": "mark_reviewed", "_selected_action": [taxi.pk]}
    )

    assert response.status_code == 302
    taxi.refresh_from_db()
    assert not taxi.needs_review and not McpTool.objects.drifted().exists()
    assert taxi.reviewed_by_label and taxi.reviewed_at is not None
    event = AuditEvent.objects.get(kind=AuditKind.TOOL_REVIEWED)
    assert event.payload["tool"] == "book_taxi" and event.payload["definition_hash"] == taxi.definition_hash

    # A probe that finds the reviewed definition again flags nothing.
    assert probe(server)[0]
    assert not McpTool.objects.drifted().exists()


def test_the_admin_test_connection_action_reports_the_cause(hotel_mcp, admin_user, client):
    server = register("hotel_ops", hotel_mcp.mcp_url, headers={"X-API-Key": "not-the-key"})
    client.force_login(admin_user)

    response = client.post(
        reverse("admin:approvals_mcpserver_changelist"),
        {"action": "test_connection", "_selected_action": [server.pk]},
        follow=True,
    )

    page = response.content.decode()
    assert "the server rejected the credentials (HTTP 401" in page
    assert "not-the-key" not in page


def test_the_probe_command_prints_the_report_and_fails_on_a_problem(servers, hotel_mcp, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    register("hotel_ops", hotel_mcp.mcp_url, headers=hotel_mcp.headers)
    register("empty", servers.empty)

    call_command("probe_mcp", "hotel_ops")
    assert capsys.readouterr().out.startswith("OK: ")
    with pytest.raises(CommandError, match="The probe of 'empty' failed"):
        call_command("probe_mcp", "empty")
    assert "the server lists no tools" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No MCP server is registered as 'nope'"):
        call_command("probe_mcp", "nope")
    assert hotel_mcp.api_key not in caplog.text


def test_a_server_that_speaks_only_the_2026_era_is_told_as_one(servers):
    ok, report = probe(register("modern", servers.modern_only))

    assert not ok
    assert "the server refused the initialize handshake as an unsupported protocol version" in report
    assert "it serves only the 2026-07-28 era (server/discover), which OpenAI's client is not known to speak" in report


def test_the_admin_says_what_the_transport_is_for(admin_user, client):
    client.force_login(admin_user)

    page = client.get(reverse("admin:approvals_mcpserver_add")).content.decode()

    assert "How Countersign's gateway reaches the server upstream. OpenAI is given the URL alone" in page
    assert "Streamable HTTP, else HTTP+SSE" in page and "/sse → SSE" not in page
