"""Any MCP client through the gateway with a client token (scope mcp:gateway), on real processes:
the official `mcp` client, `run_gateway`, Daphne (dashboard and decisions) and the hotel MCP
server. A read-only tool the policy allows runs at once; a tool that needs approval is held, shown
on the dashboard under the token's name, the client hears progress while it waits, and gets the
result after Approve, an MCP error result after Deny or the deadline."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.sync.client import connect

from approvals import services
from approvals.models import ApprovalRequest, AuditKind, GatewayCall, McpTool, RealtimeSession, Scope
from audit.models import AuditEvent
from tests.e2e.sdk_flows import PatientStaff
from tests.e2e.test_relay_processes import wait_until
from tests.gateway import mcp_clients
from tests.gateway.conftest import mcp_url, start_gateway

pytestmark = pytest.mark.e2e

POLICY = (
    "rules:\n  - {label: room-status, server: hotel, tool: get_room_status, outcome: allow}\n"
    "  - {label: no-moves, server: hotel, tool: move_room, outcome: deny, reason: Front desk only.}\n"
)


@pytest.fixture
def hotel_behind_gateway(hotel_mcp):
    server, _ = services.register_mcp_server(
        label="hotel", url=hotel_mcp.mcp_url, headers=hotel_mcp.headers, gateway_mode=True
    )
    assert services.probe_mcp_server(server, by=None).ok
    services.import_policies(POLICY, by=None, source="test")
    return server


def client_token() -> str:
    _, token = services.issue_token(label="Concierge desktop", metadata={}, scopes=[Scope.MCP_GATEWAY.value])
    return token


def card_of(ws: Any, tool: str) -> dict[str, Any]:
    """The first card of `tool` a dashboard socket shows."""
    while True:
        frame = json.loads(ws.recv(timeout=60))
        request = frame.get("request") or {}
        if frame.get("type") == "request_changed" and request.get("tool_name") == tool:
            return dict(request)


def pending(tool: str) -> ApprovalRequest:
    return wait_until(
        lambda: ApprovalRequest.objects.filter(tool_name=tool, status="pending").first(), 60, f"{tool} pending"
    )


def test_a_client_lists_runs_a_read_only_tool_and_waits_for_staff(
    stack, hotel_mcp, hotel_behind_gateway, alice, password
):
    gateway = start_gateway(stack)
    web = stack.web()
    url, token = mcp_url(gateway), client_token()

    # Unknown and unscoped tokens get nothing at all.
    _, realtime_only = services.issue_token(label="Room tablet", metadata={})
    for bad in (None, "cst_not-a-token", realtime_only):
        with pytest.raises(BaseException):  # noqa: B017 - the SDK raises its transport's error for a 401
            asyncio.run(mcp_clients.list_tools(url, bad))

    # The registry's idea of lookup_folio is out of date (as after the server changed it).
    McpTool.objects.filter(server__label="hotel", name="lookup_folio").update(
        definition={"name": "lookup_folio", "description": "an older description", "input_schema": {}}
    )
    names = asyncio.run(mcp_clients.list_tools(url, token))
    # What the policy always denies is not listed; the rest is; the change is flagged as drift.
    assert {"get_room_status", "unlock_door"} <= set(names) and "move_room" not in names
    assert McpTool.objects.get(server__label="hotel", name="lookup_folio").drifted_at is not None
    assert McpTool.objects.get(server__label="hotel", name="unlock_door").drifted_at is None

    # A read-only tool the policy allows: at once, recorded with its output.
    result = asyncio.run(mcp_clients.call(url, token, "get_room_status", {"room": "1204"}))
    assert not result.is_error and "1204" in mcp_clients.text(result)
    req = wait_until(
        lambda: ApprovalRequest.objects.filter(tool_name="get_room_status", call_recorded_at__isnull=False).first(),
        30,
        "the call's result on its request",
    )
    assert req.status == "approved" and req.rule_label == "room-status" and "1204" in (req.call_output or "")
    assert req.session.kind == RealtimeSession.Kind.GATEWAY and req.session.label == "Concierge desktop"

    # A tool that needs approval: held, on the dashboard, progress while waiting, then the result.
    staff = PatientStaff(web.url, "alice", password)
    headers = {"Origin": web.url, "Cookie": f"sessionid={staff.http.cookies['sessionid']}"}
    with connect(web.url.replace("http://", "ws://") + "/ws/dashboard/", additional_headers=headers) as ws:
        assert json.loads(ws.recv(timeout=60))["type"] == "snapshot"
        held = mcp_clients.HeldCall(url, token, "unlock_door", {"room": "1204"})
        held.start()
        card = card_of(ws, "unlock_door")
    assert card["status"] == "pending" and "Concierge desktop" in json.dumps(card)
    assert "MCP gateway client" in json.dumps(card)
    req = pending("unlock_door")
    wait_until(lambda: held.progress, 30, "a progress notification")
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True
    assert staff.decide(req.pk, "approve").status_code == 200
    result = held.outcome()
    assert not result.is_error, mcp_clients.text(result)
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False
    assert "Waiting for staff to approve unlock_door" in (held.progress[0][1] or "")
    wait_until(lambda: GatewayCall.objects.filter(request=req, consumed=True, outcome="ran").exists(), 30, "record")
    req.refresh_from_db()
    assert req.call_recorded_at is not None and req.decision_sent_at is not None

    # Deny: an error result with the note, and nothing ran.
    before = len(hotel_mcp.state()["activity"])
    held = mcp_clients.HeldCall(url, token, "issue_refund", {"room": "1204", "amount": 50, "currency": "EUR"})
    held.start()
    req = pending("issue_refund")
    assert staff.decide(req.pk, "deny", "Not without a receipt").status_code == 200
    result = held.outcome()
    assert result.is_error and "Staff denied this call: Not without a receipt" in mcp_clients.text(result)
    assert len(hotel_mcp.state()["activity"]) == before
    assert AuditEvent.objects.filter(kind=AuditKind.GATEWAY_REFUSED, request_id=req.pk).exists()


def test_a_held_call_ends_with_an_error_at_the_deadline(stack, hotel_mcp, hotel_behind_gateway):
    # No worker and no beat: the gateway applies the deadline of the request it waits for itself.
    gateway = start_gateway(stack, APPROVAL_TIMEOUT_SECONDS="2")
    held = mcp_clients.HeldCall(mcp_url(gateway), client_token(), "unlock_door", {"room": "1204"})
    held.start()
    result = held.outcome()
    assert result.is_error and "Nobody decided this call in time" in mcp_clients.text(result)
    assert ApprovalRequest.objects.get(tool_name="unlock_door").status == "expired"
    assert hotel_mcp.state()["activity"] == []
