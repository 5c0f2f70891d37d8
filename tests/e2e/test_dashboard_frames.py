"""One decision, one frame (issue 16.7): a dashboard on the real processes (Daphne, run_relay
relaying a guest, Redis) gets exactly one `request_changed` for a decision, counted up to a
later marker request whose frame comes after anything the decision could have sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.sync.client import connect

from approvals.models import ApprovalRequest
from tests.e2e.test_relay_processes import Staff, open_guest, wait_until
from tests.plugins.stack import Stack
from tests.plugins.upstream import ThreadedUpstream

pytestmark = pytest.mark.e2e


def frames_until(ws: Any, predicate: Any) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = json.loads(ws.recv(timeout=60))
        frames.append(frame)
        if predicate(frame):
            return frames


def is_request(frame: dict[str, Any], upstream_id: str, status: str) -> bool:
    request = frame.get("request") or {}
    return frame.get("type") == "request_changed" and (request.get("upstream_id"), request.get("status")) == (
        upstream_id,
        status,
    )


def test_a_decision_reaches_a_dashboard_as_one_frame(
    stack: Stack, threaded_upstream: ThreadedUpstream, alice: Any, password: str
) -> None:
    env = {"OPENAI_BASE_URL": threaded_upstream.base_url, "OPENAI_API_KEY": "sk-upstream"}
    web = stack.web(None, **env)
    relay = stack.relay(None, **env)
    guest = open_guest(relay.url, threaded_upstream)
    staff = Staff(web.url, "alice", password)
    headers = {"Origin": web.url, "Cookie": f"sessionid={staff.http.cookies['sessionid']}"}

    with connect(web.url.replace("http://", "ws://") + "/ws/dashboard/", additional_headers=headers) as ws:
        assert json.loads(ws.recv(timeout=60))["type"] == "snapshot"
        threaded_upstream.request_approval(0, "mcpr_once")
        frames_until(ws, lambda f: is_request(f, "mcpr_once", "pending"))
        req = ApprovalRequest.objects.get(upstream_id="mcpr_once")

        assert staff.decide(req.pk, "approve", "Checked ID").status_code == 200
        threaded_upstream.wait_for(lambda: len(threaded_upstream.approval_responses()) == 1)
        wait_until(lambda: ApprovalRequest.objects.filter(pk=req.pk, decision_sent_at__isnull=False).exists())
        threaded_upstream.request_approval(0, "mcpr_marker")
        after = frames_until(ws, lambda f: is_request(f, "mcpr_marker", "pending"))

    decided = [f for f in after if f.get("type") == "request_changed" and f["request"]["upstream_id"] == "mcpr_once"]
    assert [f["request"]["status"] for f in decided] == ["approved"], [f.get("type") for f in after]
    guest.close()
