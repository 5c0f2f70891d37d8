"""What the official-SDK end-to-end tests share: the hotel stack (Daphne with the relay and the
dashboard, the simulator standing in for OpenAI, the hotel MCP server registered as "hotel"),
a staff decision over HTTP as a logged-in person, and reading the replies a guest got."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from approvals import services
from approvals.models import ApprovalRequest
from tests.e2e.test_browser_approval import SIM_KEY
from tests.e2e.test_relay_processes import Staff, wait_until


class PatientStaff(Staff):
    """tests.e2e.test_relay_processes.Staff with a minute for each request: on a machine shared
    by many test runs, Daphne may take longer than Staff's 10 s to answer the login page."""

    def __init__(self, web_url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=web_url, timeout=60)
        page = self.http.get("/accounts/login/")
        assert page.status_code == 200
        response = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
        )
        assert response.status_code == 302, response.text


UNLOCK = 'call hotel unlock_door {"room": "1204"}'
DENIAL_REASON = "Please come to the front desk with your ID"


@pytest.fixture
def hotel_stack(stack, sim_url, hotel_mcp, alice, tmp_path):
    """The stack with the hotel registered (and probed, so the registry knows its tools)."""
    hotel_mcp.reset()
    server, _ = services.register_mcp_server(label="hotel", url=hotel_mcp.mcp_url, headers=hotel_mcp.headers)
    assert services.probe_mcp_server(server, by=None).ok
    env = {"OPENAI_BASE_URL": sim_url, "OPENAI_API_KEY": SIM_KEY}
    # Daphne alone carries these flows: the relay, the dashboard's decision and its nudge. No Celery
    # worker: nothing here waits on a task (a deadline is minutes away), and on a loaded machine a
    # worker takes a minute to start.
    web = stack.web(**env)
    return web, hotel_mcp


def guest_token() -> str:
    _, token = services.issue_token(label="Room 1204", metadata={"room": "1204"})
    return token


def staff_decides(web_url: str, password: str, decision: str) -> ApprovalRequest:
    """Alice, logged in, decides the guest's unlock_door request on the dashboard's endpoint."""
    req = wait_until(
        lambda: ApprovalRequest.objects.filter(tool_name="unlock_door", status="pending").first(),
        60,
        "the guest's unlock_door request on the dashboard",
    )
    reason = DENIAL_REASON if decision == "deny" else ""
    response = PatientStaff(web_url, "alice", password).decide(req.pk, decision, reason)
    assert response.status_code == 200, response.text
    return req


def assistant_replies(events: Iterable[dict[str, Any]]) -> list[str]:
    """The text of each assistant message in each `response.done` the guest received, in order:
    one entry per reply the guest heard."""
    replies = []
    for event in events:
        if event.get("type") != "response.done":
            continue
        for item in event["response"].get("output") or []:
            if item.get("type") == "message" and item.get("role") == "assistant":
                parts = item.get("content") or []
                replies.append(" ".join(p.get("transcript") or p.get("text") or "" for p in parts))
    return replies
