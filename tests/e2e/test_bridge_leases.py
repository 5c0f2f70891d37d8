"""Two `manage.py run_bridge` processes at once, across real processes (Daphne, the simulator
placing SIP calls, the demo hotel MCP server): every call is held by exactly one of them, and
when one is SIGKILLed the other takes its calls over once their leases expire, and delivers the
decision made meanwhile."""

from __future__ import annotations

import signal
import time
from types import SimpleNamespace

import pytest

from approvals.models import ApprovalRequest
from realtime_bridge.models import Call
from tests.e2e.test_sip_calls import (
    UNLOCK,
    WEBHOOK_SECRET,
    Sim,
    Staff,
    answered_call,
    hotel_route,  # noqa: F401  (a fixture)
    wait_until,
)
from tests.plugins.processes import PYTHON, ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def bridges(stack, simulator, hotel_route):  # noqa: F811
    """Daphne (the webhook) and two bridges with a two-second lease, all pointed at the simulator."""
    env = {
        "OPENAI_BASE_URL": simulator.base_url,
        "OPENAI_API_KEY": simulator.api_key,
        "OPENAI_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "BRIDGE_LEASE_SECONDS": "2",
    }
    ns = SimpleNamespace()
    ns.web = stack.web(**env)
    ns.sim, ns.webhook_url = Sim(simulator), f"{ns.web.url}/webhooks/openai"
    ns.bridges = [
        stack._start(ServerProcess([PYTHON, "manage.py", "run_bridge"], env={**stack.env, **env}, name="run_bridge"))
        for _ in range(2)
    ]
    return ns


def pid_of(call: Call) -> int:
    call.refresh_from_db()
    return int(call.leased_by.split(":")[1])


def sidebands(sim, call_id: str) -> int:
    return sim.call(call_id)["sidebands"]


def test_two_bridges_hold_each_call_once_and_one_takes_over_the_calls_of_the_other_when_it_dies(
    bridges, hotel_mcp, alice, password
):
    sip = bridges
    pids = {bridge.proc.pid: bridge for bridge in sip.bridges}
    placed = [answered_call(sip) for _ in range(2)]
    for _, call in placed:
        wait_until(lambda call=call: Call.objects.get(pk=call.pk).leased_by, message="a bridge to hold the call")
        assert pid_of(call) in pids

    time.sleep(1.5)  # a few lease renewals: nobody attaches twice, nobody lets go
    for call_id, _ in placed:
        assert sidebands(sip.sim, call_id) == 1
    (call_id, call), _ = placed
    victim = pids[pid_of(call)]
    survivor = next(p for p in pids.values() if p is not victim)
    sip.sim.say(call_id, UNLOCK)
    req = wait_until(lambda: ApprovalRequest.objects.filter(session_id=call.session_id).first(), message="request")

    victim.signal(signal.SIGKILL)
    victim.proc.wait(10)
    response = Staff(sip.web.url, "alice", password).post(f"/requests/{req.pk}/decide/", decision="approve")
    assert response.status_code == 200

    wait_until(lambda: hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False, message="the door to open")
    req = wait_until(lambda: ApprovalRequest.objects.filter(pk=req.pk, call_recorded_at__isnull=False).first())
    assert req.decision_sent_at is not None and len(sip.sim.approvals_for(req.upstream_id)) == 1
    for call_id, call in placed:
        assert pid_of(call) == survivor.proc.pid and sidebands(sip.sim, call_id) == 1
        assert Call.objects.get(pk=call.pk).status == "accepted"  # the calls outlived their bridge
