"""Responses API runs that survive trouble, across real processes: Daphne, Celery workers and
beat, the simulator's /v1/responses with faults armed (docs/simulator_http.md), the demo hotel
MCP server. A worker SIGKILLed mid-call is replaced, and the beat sweep hands its run to the new
worker once the lease expires; a transient error there is retried by a countdown task. (Each
error class, step by step, is in tests/realtime_bridge/test_runs_recovery.py.)"""

from __future__ import annotations

import signal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from approvals import services
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from realtime_bridge.models import ResponsesRun
from tests.e2e.test_responses_runs import UNLOCK, run_state, start
from tests.e2e.test_sip_calls import Staff, wait_until

pytestmark = pytest.mark.e2e

LEASE = "2"  # RUN_LEASE_SECONDS of the workers: a dead one is replaced within seconds


class Faults:
    def __init__(self, simulator: Any) -> None:
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{simulator.port}",
            headers={"Authorization": f"Bearer {simulator.api_key}"},
            timeout=10,
        )

    def arm(self, **faults: Any) -> None:
        assert self.http.post("/sim/responses/faults", json=faults).status_code == 200

    def received(self) -> int:
        return self.http.get("/sim/responses/faults").json()["received"]


@pytest.fixture
def recovery(stack, simulator, hotel_mcp, tmp_path):
    services.register_mcp_server(label="hotel", url=hotel_mcp.mcp_url, headers=dict(hotel_mcp.headers))
    env = {"OPENAI_BASE_URL": simulator.base_url, "OPENAI_API_KEY": simulator.api_key, "RUN_LEASE_SECONDS": LEASE}
    faults = Faults(simulator)
    ns = SimpleNamespace()
    ns.web = stack.web(**env)
    ns.worker = stack.worker(**env)
    ns.new_worker = lambda: stack.worker(**env)
    stack.beat(tmp_path / "beat-schedule", **env)
    _, plaintext = services.issue_token(label="Concierge chat", metadata={"channel": "web chat"})
    ns.api = httpx.Client(base_url=ns.web.url, headers={"Authorization": f"Bearer {plaintext}"}, timeout=20)
    ns.faults = faults
    yield ns
    faults.arm(fail_count=0, fail_status=500, latency=0)  # the simulator process is shared


def approve_and_finish(ns: Any, pk: int, password: str) -> dict[str, Any]:
    (req,) = ApprovalRequest.objects.filter(session__run__pk=pk)
    response = Staff(ns.web.url, "alice", password).post(f"/requests/{req.pk}/decide/", decision="approve")
    assert response.status_code == 200
    return wait_until(lambda: run_state(ns.api, pk)["state"] == "completed" and run_state(ns.api, pk), message="done")


def test_a_run_whose_worker_is_killed_mid_call_is_taken_over_retried_and_asks_for_approval_once(
    recovery, hotel_mcp, alice, password
):
    recovery.faults.arm(latency=3)
    before = recovery.faults.received()
    pk = start(recovery.api, UNLOCK)
    wait_until(lambda: recovery.faults.received() > before, message="the worker's call to reach OpenAI")

    recovery.worker.signal(signal.SIGKILL)  # the whole worker, mid-call
    recovery.worker.proc.wait(10)
    # The new worker's first try meets a 503 and is retried by its countdown task.
    recovery.faults.arm(latency=0, fail_count=1, fail_status=503)
    assert ResponsesRun.objects.get(pk=pk).state == "running"
    recovery.new_worker()

    waiting = wait_until(
        lambda: run_state(recovery.api, pk)["state"] == "waiting" and run_state(recovery.api, pk),
        timeout=30,
        message="the run to be taken over",
    )
    # The killed worker's call was answered too, into the void: one approval request all the same.
    wait_until(lambda: recovery.faults.received() == before + 3, message="the three first calls")
    assert len(waiting["approvals"]) == 1 and waiting["error"] == ""
    run = ResponsesRun.objects.get(pk=pk)
    assert run.steps == 1 and run.attempts == 0
    done = approve_and_finish(recovery, pk, password)
    assert done["output_text"].startswith("All done.") and done["error"] == ""
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False
    events = AuditEvent.objects.filter(session_id=run.session_id)
    assert events.filter(kind="requested").count() == 1 and events.filter(kind="sent").count() == 1
