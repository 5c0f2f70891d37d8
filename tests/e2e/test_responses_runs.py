"""Responses API runs end to end: `POST /api/runs` on Daphne, the run's steps in a real Celery
worker (resumed by the beat sweep), the simulator's `/v1/responses` calling the demo hotel MCP
server, staff deciding over HTTP."""

from __future__ import annotations

import httpx
import pytest

from approvals import services
from approvals.models import ApprovalRequest
from realtime_bridge.models import ResponsesRun
from tests.e2e.test_sip_calls import Staff, wait_until

pytestmark = pytest.mark.e2e

UNLOCK = 'call hotel unlock_door {"room": "1204", "reason": "Guest locked out"}'


@pytest.fixture
def runs_stack(stack, simulator, hotel_mcp, tmp_path):
    services.register_mcp_server(label="hotel", url=hotel_mcp.mcp_url, headers=dict(hotel_mcp.headers))
    env = {"OPENAI_BASE_URL": simulator.base_url, "OPENAI_API_KEY": simulator.api_key}
    web = stack.web(**env)
    stack.worker(**env)
    stack.beat(tmp_path / "beat-schedule", **env)
    _, plaintext = services.issue_token(label="Concierge chat", metadata={"channel": "web chat"})
    api = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {plaintext}"}, timeout=20)
    return web, api


def start(api: httpx.Client, text: str) -> int:
    response = api.post("/api/runs", json={"input": text, "instructions": "Be brief."})
    assert response.status_code == 202, response.text
    assert response.json()["run"]["state"] == "queued"
    return response.json()["run"]["id"]


def run_state(api: httpx.Client, pk: int) -> dict:
    response = api.get(f"/api/runs/{pk}")
    assert response.status_code == 200, response.text
    return response.json()["run"]


def test_a_run_that_needs_approval_waits_is_approved_from_the_dashboard_and_completes(
    runs_stack, hotel_mcp, alice, password
):
    web, api = runs_stack
    pk = start(api, UNLOCK)

    waiting = wait_until(lambda: run_state(api, pk)["state"] == "waiting" and run_state(api, pk), message="waiting")
    (approval,) = waiting["approvals"]
    req = ApprovalRequest.objects.get(pk=approval["id"])
    assert (req.status, req.tool_name, req.session.kind, req.session.label) == (
        "pending",
        "unlock_door",
        "responses",
        "Concierge chat",
    )
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True

    response = Staff(web.url, "alice", password).post(f"/requests/{req.pk}/decide/", decision="approve")
    assert response.status_code == 200

    done = wait_until(lambda: run_state(api, pk)["state"] == "completed" and run_state(api, pk), message="done")
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False
    assert done["output_text"].startswith("All done.")
    assert done["previous_response_id"].startswith("resp_")
    req.refresh_from_db()
    assert req.decision_sent_at is not None and req.call_recorded_at is not None and req.call_error is None
    assert req.session.status == "closed"


def test_a_denied_run_completes_without_running_the_tool(runs_stack, hotel_mcp, alice, password):
    web, api = runs_stack
    pk = start(api, UNLOCK)
    wait_until(lambda: run_state(api, pk)["state"] == "waiting", message="waiting")
    req = ApprovalRequest.objects.get(session__run__pk=pk)

    response = Staff(web.url, "alice", password).post(
        f"/requests/{req.pk}/decide/", decision="deny", reason="Not the guest"
    )
    assert response.status_code == 200

    done = wait_until(lambda: run_state(api, pk)["state"] == "completed" and run_state(api, pk), message="done")
    assert "won't run unlock_door" in done["output_text"] and "Not the guest" in done["output_text"]
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True
    req.refresh_from_db()
    assert req.status == "denied" and req.call_recorded_at is None
    assert ResponsesRun.objects.get(pk=pk).steps == 2
