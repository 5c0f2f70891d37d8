"""What the issue must show, end to end on real processes: the official openai SDK's guest through
the relay (Daphne), the simulator standing in for OpenAI, Countersign's gateway (`run_gateway`) and
the hotel MCP server on an address the simulator is configured not to reach (127.0.0.2, refused like
a private host: `--mcp-egress public`, only 127.0.0.1 allowed, where the gateway stands in for a
public address).

The guest asks to unlock a door, staff approve, the simulator's hosted MCP client calls the gateway
with the session's token, and the gateway runs the tool once. The hotel never sees the simulator
(every request it logs after the probe is the gateway's), and the simulator never sees the hotel's
X-API-Key nor its address (its own log of every HTTP request it made). Then, with the official `mcp`
client and the tokens as OpenAI would hold them: the same approval replayed, changed arguments, another
session's token and a call after the session ended are each refused, recorded and audited.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
from openai import AsyncOpenAI

from approvals import services
from approvals.models import ApprovalRequest, AuditKind, GatewayCall, GatewayToken, RealtimeSession
from audit.models import AuditEvent
from tests.e2e.sdk_flows import UNLOCK, guest_token, staff_decides
from tests.e2e.test_browser_approval import SIM_KEY
from tests.e2e.test_relay_processes import wait_until
from tests.e2e.test_sdk_python import QUIET_SECONDS, PyGuest
from tests.gateway import mcp_clients
from tests.gateway.conftest import mcp_url, start_gateway
from tests.plugins.hotel import HOTEL_API_KEY, HotelMcp
from tests.plugins.processes import PYTHON, ServerProcess, free_port

pytestmark = pytest.mark.e2e

PRIVATE_HOST = "127.0.0.2"


@pytest.fixture
def private_hotel() -> Iterator[HotelMcp]:
    """The hotel MCP server on 127.0.0.2 (a process of its own: the suite's shared one is on 127.0.0.1)."""
    port = free_port()
    argv = [PYTHON, "-m", "demo.hotel_mcp", "--host", PRIVATE_HOST, "--port", str(port), "--api-key", HOTEL_API_KEY]
    env = {"PYTHONUNBUFFERED": "1"}
    with ServerProcess(argv, name="hotel_private", env=env, ready_log="Uvicorn running", timeout=30) as proc:
        yield HotelMcp(base_url=f"http://{PRIVATE_HOST}:{port}", api_key=HOTEL_API_KEY, process=proc)


@pytest.fixture
def public_only_simulator() -> Iterator[ServerProcess]:
    port = free_port()
    argv = [PYTHON, "-m", "simulator", "--port", str(port), "--api-key", SIM_KEY, "--validate-events"]
    argv += ["--mcp-egress", "public", "--mcp-egress-allow", "127.0.0.1"]
    with ServerProcess(argv, port=port, name="simulator", fail_on="INVALID SERVER EVENT") as proc:
        proc.url = f"http://127.0.0.1:{port}/v1"
        yield proc


async def direct_listing(sim_url: str, tool: dict[str, Any]) -> dict[str, Any]:
    """A session straight at the simulator with the hotel's own URL and key: what its hosted MCP
    client makes of them."""
    client = AsyncOpenAI(api_key=SIM_KEY, base_url=sim_url)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "tools": [cast(Any, tool)]})
        while True:
            event = (await asyncio.wait_for(conn.recv(), 60)).model_dump(mode="json")
            if event["type"] in ("mcp_list_tools.failed", "mcp_list_tools.completed"):
                return event


class StayingGuest(PyGuest):
    """tests.e2e.test_sdk_python.PyGuest that stays connected after the reply (its session open)
    until told to leave."""

    def __init__(self, web_url: str, token: str) -> None:
        super().__init__(web_url, token, own_follow_up=False)
        self.answered = threading.Event()
        self.leave = threading.Event()

    async def _talk(self) -> None:
        async with self.client.realtime.connect(model="gpt-realtime") as conn:
            asked = False
            while not self.answered.is_set():
                try:
                    event = await asyncio.wait_for(conn.recv(), QUIET_SECONDS if self.tool_done_at else 120)
                except TimeoutError:
                    if self.tool_done_at is None:
                        raise
                    self.answered.set()  # quiet after the reply
                    break
                self.events.append(event.model_dump(mode="json"))
                if event.type == "mcp_list_tools.completed" and not asked:
                    asked = True
                    await conn.conversation.item.create(
                        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": UNLOCK}]}
                    )
                    await conn.response.create()
                if event.type == "conversation.item.done" and event.item.type == "mcp_call":
                    self.tool_done_at = len(self.events)
            await asyncio.to_thread(self.leave.wait, 120)


def refuse(url: str, token: str, arguments: dict[str, Any]) -> str:
    result = asyncio.run(mcp_clients.call(url, token, "unlock_door", arguments))
    assert result.is_error
    return mcp_clients.text(result)


def test_the_gateway_runs_what_staff_approved_once_and_refuses_the_rest(
    stack, private_hotel, public_only_simulator, alice, password
):
    hotel = private_hotel
    sim = public_only_simulator
    # Countersign reaches the hotel on its own network: the probe lists the tools directly.
    server, _ = services.register_mcp_server(label="hotel", url=hotel.mcp_url, headers=hotel.headers, gateway_mode=True)
    assert services.probe_mcp_server(server, by=None).ok
    # The simulator, like OpenAI, cannot.
    refused = asyncio.run(direct_listing(sim.url, hotel.tool("hotel")))
    assert refused["type"] == "mcp_list_tools.failed"
    hotel_log_start = len(hotel.process.output(tail=0))

    gateway = start_gateway(stack)
    web = stack.web(OPENAI_BASE_URL=sim.url, OPENAI_API_KEY=SIM_KEY, GATEWAY_PUBLIC_URL=gateway.url)

    guest = StayingGuest(web.url, guest_token())
    guest.start()
    req = staff_decides(web.url, password, "approve")
    assert guest.answered.wait(160) and guest.error is None, guest.error
    assert [e for e in guest.events if e["type"] == "error"] == []
    (call_item,) = [
        e["item"] for e in guest.events if e["type"] == "conversation.item.done" and e["item"]["type"] == "mcp_call"
    ]
    assert call_item["error"] is None and '"door_locked": false' in call_item["output"]
    assert [a["action"] for a in hotel.state()["activity"]] == ["unlock_door"]
    # The guest's device saw neither the session's gateway token nor the hotel's key.
    seen_by_guest = json.dumps(guest.events)
    assert "csg_" not in seen_by_guest and HOTEL_API_KEY not in seen_by_guest
    # The result is recorded while the answer goes back (gateway/app.py): wait for it.
    ran = wait_until(
        lambda: GatewayCall.objects.filter(request=req, consumed=True, outcome=GatewayCall.Outcome.RAN).first(),
        30,
        "the gateway's record of the call",
    )
    assert ran.via == "session token" and '"door_locked": false' in (ran.output or "")
    assert AuditEvent.objects.filter(kind=AuditKind.GATEWAY_RAN, request_id=req.pk).count() == 1

    # The hotel saw only the gateway; the simulator saw only the gateway, never the hotel's key.
    mcp_request = re.compile(r"hotel_mcp INFO request \w+ /(mcp|sse|messages)")
    hotel_log = hotel.process.output(tail=0)[hotel_log_start:]
    hotel_lines = [line for line in hotel_log.splitlines() if mcp_request.search(line)]
    assert hotel_lines and all("countersign-gateway/1.0" in line for line in hotel_lines), hotel_lines
    sim_log = sim.output(tail=0)
    requested = re.findall(r"HTTP Request: \w+ (\S+)", sim_log)
    assert requested and all(u.startswith(f"{gateway.url}/mcp-gateway/hotel/mcp") for u in requested), requested
    assert HOTEL_API_KEY not in sim_log and PRIVATE_HOST not in "".join(requested)

    # Now the tokens as OpenAI holds them, with the official mcp client.
    url = mcp_url(gateway)
    token = str(GatewayToken.objects.get(session=req.session).token)
    assert "Replay refused" in refuse(url, token, {"room": "1204"})
    assert "differ from the ones staff approved" in refuse(url, token, {"room": "1205"})
    other = services.open_session(kind="relay", label="Room 9", metadata={"room": "9"})
    assert "no approval for unlock_door" in refuse(url, services.gateway_token_for(other, server), {"room": "1204"})
    guest.leave.set()
    guest.join(60)
    wait_until(
        lambda: RealtimeSession.objects.filter(pk=req.session_id, status="closed").exists(), 60, "the session's end"
    )
    assert "has ended" in refuse(url, token, {"room": "1204"})

    refusals = AuditEvent.objects.filter(kind=AuditKind.GATEWAY_REFUSED).order_by("pk")
    assert refusals.count() == 4
    assert GatewayCall.objects.filter(outcome=GatewayCall.Outcome.REFUSED).count() == 4
    assert [a["action"] for a in hotel.state()["activity"]] == ["unlock_door"]
    assert ApprovalRequest.objects.get(pk=req.pk).status == "approved"
