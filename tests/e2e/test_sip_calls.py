"""SIP calls end to end across real processes: the simulator places the call and sends the
signed `realtime.call.incoming` webhook to Daphne, which accepts it with the routed config;
`manage.py run_bridge` attaches the sideband; staff decide over HTTP; the demo hotel MCP server
runs the tool. Nothing is mocked."""

from __future__ import annotations

import signal
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from approvals import services
from approvals.models import ApprovalRequest, RealtimeSession
from realtime_bridge.models import Call, SipRoute, WebhookDelivery
from tests.conftest import allow_starting_sessions
from tests.e2e.test_relay_processes import wait_until
from tests.plugins.processes import PYTHON, ServerProcess

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec_" + "c2lkZWJhbmQtdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ=="
LINE = "+18005551212"
UNLOCK = 'call hotel unlock_door {"room": "1204", "reason": "Guest locked out"}'


class Staff:
    """A staff member's browser session on plain HTTP: log in, then POST with CSRF."""

    def __init__(self, web_url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=web_url, timeout=20)
        self.http.get("/accounts/login/")
        response = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
        )
        assert response.status_code == 302, response.text

    def post(self, url: str, **data: str) -> httpx.Response:
        return self.http.post(url, data=data, headers={"X-CSRFToken": self.http.cookies["csrftoken"]})


class Sim:
    """The telephone network's side of the simulator (docs/simulator_http.md)."""

    def __init__(self, simulator: Any) -> None:
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{simulator.port}",
            headers={"Authorization": f"Bearer {simulator.api_key}"},
            timeout=30,
        )

    def place_call(self, webhook_url: str, *, to: str = LINE, deliveries: int = 1) -> dict[str, Any]:
        body = {"from": "+14155550111", "to": to, "webhook_url": webhook_url, "webhook_secret": WEBHOOK_SECRET}
        response = self.http.post("/sim/calls", json={**body, "deliveries": deliveries})
        assert response.status_code == 201, response.text
        return response.json()

    def call(self, call_id: str) -> dict[str, Any]:
        return self.http.get(f"/sim/calls/{call_id}").json()

    def say(self, call_id: str, text: str) -> None:
        response = self.http.post(f"/sim/calls/{call_id}/say", json={"text": text})
        assert response.status_code == 200, response.text

    def hang_up(self, call_id: str) -> None:
        assert self.http.post(f"/sim/calls/{call_id}/hangup").status_code == 200

    def approvals_for(self, approval_request_id: str) -> list[dict[str, Any]]:
        data = self.http.get("/sim/approvals").json()["data"]
        return [a for a in data if (a.get("item") or a).get("approval_request_id") == approval_request_id]


@pytest.fixture
def hotel_route(hotel_mcp, transactional_db):
    server, _ = services.register_mcp_server(
        label="hotel", url=hotel_mcp.mcp_url, headers=dict(hotel_mcp.headers), description="Front desk"
    )
    route = SipRoute.objects.create(
        name="Front desk",
        to_pattern=LINE,
        label="Front desk line",
        metadata={"line": "front desk", "property": "Lisbon"},
        instructions="You are the night concierge of Hotel Lisbon.",
        voice="marin",
    )
    route.mcp_servers.add(server)
    return route


@pytest.fixture
def sip(stack, simulator, hotel_route):
    """Daphne and the bridge pointed at the simulator; returns a helper namespace."""
    env = {
        "OPENAI_BASE_URL": simulator.base_url,
        "OPENAI_API_KEY": simulator.api_key,
        "OPENAI_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # A bridge that died holds its calls until its lease expires: keep that short here.
        "BRIDGE_LEASE_SECONDS": "2",
    }
    web = stack.web(**env)

    def start_bridge() -> ServerProcess:
        proc = ServerProcess([PYTHON, "manage.py", "run_bridge"], env={**stack.env, **env}, name="run_bridge")
        return stack._start(proc)

    ns = SimpleNamespace()
    ns.web, ns.sim, ns.start_bridge, ns.webhook_url = web, Sim(simulator), start_bridge, f"{web.url}/webhooks/openai"
    ns.bridge = start_bridge()
    return ns


def answered_call(sip) -> tuple[str, Call]:
    placed = sip.sim.place_call(sip.webhook_url, deliveries=2)
    assert [d["status_code"] for d in placed["deliveries"]] == [200, 200]
    call = Call.objects.get(call_id=placed["call_id"])
    assert call.status == "accepted"
    assert call.session_id is not None
    wait_until(
        lambda: RealtimeSession.objects.filter(pk=call.session_id).exclude(upstream_session_id="").exists(),
        message="the sideband to attach (session.created)",
    )
    return placed["call_id"], call


def test_a_routed_call_is_accepted_and_a_staff_approval_reaches_it_and_the_tool_runs(sip, hotel_mcp, alice, password):
    call_id, call = answered_call(sip)

    # Delivered twice with one webhook-id: handled once.
    assert Call.objects.filter(call_id=call_id).count() == 1
    assert WebhookDelivery.objects.count() == 1
    config = sip.sim.call(call_id)["session_config"]
    assert config["instructions"] == "You are the night concierge of Hotel Lisbon."
    assert config["audio"]["output"]["voice"] == "marin"
    assert [t["server_label"] for t in config["tools"]] == ["hotel"]
    session = call.session
    assert (session.kind, session.label) == ("sideband", "Front desk line")
    assert session.metadata["property"] == "Lisbon" and session.metadata["from"] == "+14155550111"

    sip.sim.say(call_id, UNLOCK)
    req = wait_until(lambda: ApprovalRequest.objects.filter(session=session).first(), message="the request")
    assert (req.tool_name, req.status) == ("unlock_door", "pending")
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True

    staff = Staff(sip.web.url, "alice", password)
    assert staff.post(f"/requests/{req.pk}/decide/", decision="approve", reason="ID checked").status_code == 200

    wait_until(lambda: hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False, message="the door to open")
    req = wait_until(
        lambda: ApprovalRequest.objects.filter(pk=req.pk, call_recorded_at__isnull=False).first(),
        message="the mcp_call to be recorded",
    )
    assert req.decision_sent_at is not None and req.call_error is None
    assert len(sip.sim.approvals_for(req.upstream_id)) == 1
    # The bridge asked for the follow-up response: the caller hears what happened.
    wait_until(
        lambda: session.lines.filter(role="assistant", text__startswith="All done").exists(),
        message="the assistant to tell the caller",
    )

    # The card's call state, and staff hang up from it.
    detail = staff.http.get(f"/calls/{call.pk}").json()["call"]
    assert (detail["status"], detail["can_hang_up"], detail["can_transfer"]) == ("accepted", True, True)
    assert staff.post(f"/calls/{call.pk}/hangup").status_code == 200
    assert sip.sim.call(call_id)["status"] == "ended"
    call.refresh_from_db()
    assert call.status == "ended" and call.outcome == "Hung up by Alice"


def test_a_call_that_ends_cancels_its_pending_request(sip):
    call_id, call = answered_call(sip)
    sip.sim.say(call_id, UNLOCK)
    req = wait_until(lambda: ApprovalRequest.objects.filter(session_id=call.session_id).first())

    sip.sim.hang_up(call_id)

    req = wait_until(lambda: ApprovalRequest.objects.filter(pk=req.pk, status="cancelled").first(), message="cancel")
    assert req.decided_by_label == "session ended"
    call.refresh_from_db()
    assert call.status == "ended" and call.session.status == "closed"


def test_a_decision_made_while_the_bridge_is_down_reaches_the_call_after_it_restarts(sip, hotel_mcp, alice, password):
    call_id, call = answered_call(sip)
    sip.sim.say(call_id, UNLOCK)
    req = wait_until(lambda: ApprovalRequest.objects.filter(session_id=call.session_id).first())

    sip.bridge.signal(signal.SIGKILL)
    sip.bridge.proc.wait(10)
    response = Staff(sip.web.url, "alice", password).post(f"/requests/{req.pk}/decide/", decision="approve")
    assert response.status_code == 200
    time.sleep(0.5)
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True  # nobody could send it yet
    call.refresh_from_db()
    assert call.status == "accepted"  # the call outlives the bridge

    sip.start_bridge()

    wait_until(lambda: hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False, message="the door to open")
    req = wait_until(lambda: ApprovalRequest.objects.filter(pk=req.pk, call_recorded_at__isnull=False).first())
    assert req.decision_sent_at is not None
    assert len(sip.sim.approvals_for(req.upstream_id)) == 1


def test_staff_transfer_a_call_and_its_pending_request_is_cancelled(sip, alice, password):
    call_id, call = answered_call(sip)
    sip.sim.say(call_id, UNLOCK)
    req = wait_until(lambda: ApprovalRequest.objects.filter(session_id=call.session_id).first())
    staff = Staff(sip.web.url, "alice", password)

    assert staff.post(f"/calls/{call.pk}/refer", target_uri="ftp://nope").status_code == 409
    response = staff.post(f"/calls/{call.pk}/refer", target_uri="tel:+14155550123")

    assert response.status_code == 200, response.text
    assert response.json()["call"]["status"] == "referred"
    assert sip.sim.call(call_id)["refer_target"] == "tel:+14155550123"
    req.refresh_from_db()
    assert req.status == "cancelled"
    time.sleep(0.5)  # the bridge sees the sideband close too; the staff action's record stands
    call.refresh_from_db()
    assert call.outcome == "Transferred to tel:+14155550123 by Alice" and call.status == "referred"
    assert staff.post(f"/calls/{call.pk}/hangup").status_code == 409


def test_a_browser_call_gets_the_sideband_and_a_staff_approval_reaches_it(sip, hotel_mcp, alice, bob, password):
    allow_starting_sessions(alice)
    staff = Staff(sip.web.url, "alice", password)
    minted = staff.post("/api/webrtc/session").json()
    assert "X-API-Key" not in str(minted) and hotel_mcp.api_key not in str(minted)
    # The browser creates its call straight at "OpenAI" with the client secret.
    offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    created = sip.sim.http.post(
        "/v1/realtime/calls",
        content=offer,
        headers={"Authorization": f"Bearer {minted['client_secret']}", "Content-Type": "application/sdp"},
    )
    assert created.status_code == 201
    call_id = created.headers["Location"].rsplit("/", 1)[-1]

    attached = staff.http.post(
        "/api/webrtc/calls",
        json={"call_id": call_id, "ticket": minted["ticket"]},
        headers={"X-CSRFToken": staff.http.cookies["csrftoken"]},
    )

    assert attached.status_code == 201, attached.text
    call = Call.objects.get(call_id=call_id)
    assert call.session_id is not None
    wait_until(lambda: RealtimeSession.objects.filter(pk=call.session_id).exclude(upstream_session_id="").exists())
    sip.sim.say(call_id, UNLOCK)
    req = wait_until(lambda: ApprovalRequest.objects.filter(session_id=call.session_id).first())
    assert req.session.label == "Browser call: Alice"
    # Alice started the call, so someone else decides (duties do not mix: issue 13).
    staff = Staff(sip.web.url, "bob", password)
    assert staff.post(f"/requests/{req.pk}/decide/", decision="approve").status_code == 200
    wait_until(lambda: hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False, message="the door to open")
