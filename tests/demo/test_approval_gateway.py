"""The approval API's worked example (demo/approval_gateway.py) against a real Daphne and the demo
hotel MCP server: the door opens only after staff approve, and stays shut when they deny."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from approvals import services
from approvals.models import ApprovalRequest
from demo.approval_gateway import Denied, call_with_approval

pytestmark = pytest.mark.e2e


def run_gateway(web_url: str, token: str, hotel, result: dict[str, Any]) -> threading.Thread:
    async def go() -> None:
        async with httpx.AsyncClient(base_url=web_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as cs:
            try:
                result["result"] = await call_with_approval(
                    cs,
                    hotel.mcp_url,
                    hotel.headers,
                    server="hotel",
                    tool="unlock_door",
                    arguments={"room": "1204", "reason": "Locked out"},
                    session="chat-1204",
                    requester="Dana Whitfield",
                )
            except Denied as exc:
                result["denied"] = str(exc)

    thread = threading.Thread(target=lambda: asyncio.run(go()))
    thread.start()
    return thread


def wait_pending() -> ApprovalRequest:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        req = ApprovalRequest.objects.filter(status="pending").first()
        if req:
            return req
        time.sleep(0.1)
    raise AssertionError("the gateway's request never reached Countersign")


@pytest.mark.parametrize("approve", [True, False])
def test_the_gateway_runs_the_tool_only_after_staff_approve(stack, hotel_mcp, alice, approve):
    web = stack.web()
    _, token = services.issue_token(label="Chat gateway", metadata={}, scopes=["requests:write", "requests:read"])
    result: dict[str, Any] = {}
    thread = run_gateway(web.url, token, hotel_mcp, result)
    req = wait_pending()
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True  # nothing ran while it waits
    services.decide(req, by=alice, approve=approve, reason="ID checked" if approve else "Not the guest of 1204")
    thread.join(60)
    if approve:
        assert not result["result"].is_error
        assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False
    else:
        assert result["denied"] == "Not the guest of 1204"
        assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True
