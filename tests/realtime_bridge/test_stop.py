"""Stop, as the relay carries it out (issue 14): after services.stop_session commits, the process
holding the session hears of it over the channel layer and closes the guest's client (code 4300,
a reason for the guest) and upstream; the requests are cancelled and the audit says who and why.
On both servers that serve /v1/realtime: Daphne's consumer and run_relay."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.contrib.auth.models import Permission
from websockets.asyncio.client import connect

from approvals import events, services
from approvals.models import ApprovalRequest, RealtimeSession
from audit.models import AuditEvent
from realtime_bridge.relay_server import serve_relay
from tests.plugins.processes import free_port
from tests.realtime_bridge.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)

ITEM = {
    "id": "mcpr_stop1",
    "type": "mcp_approval_request",
    "server_label": "hotel",
    "name": "unlock_door",
    "arguments": '{"room":"1204"}',
}


@pytest.fixture
def bob(bob):
    bob.user_permissions.add(Permission.objects.get(content_type__app_label="approvals", codename="stop_session"))
    return type(bob).objects.get(pk=bob.pk)


async def _pending(upstream) -> ApprovalRequest:
    await upstream.send({"type": "conversation.item.done", "event_id": "e_ask", "item": ITEM})
    for _ in range(100):
        req = await db(ApprovalRequest.objects.filter(upstream_id=ITEM["id"]).first)
        if req:
            return req
        await asyncio.sleep(0.05)
    raise AssertionError("no approval request was opened")


async def _upstream_closed(upstream) -> tuple[int | None, str | None]:
    for _ in range(200):
        if upstream.closed:
            return upstream.closed[0]
        await asyncio.sleep(0.05)
    raise AssertionError("upstream was not closed")


async def _stopped_as_audited(req: ApprovalRequest, bob) -> None:
    await db(req.refresh_from_db)
    assert req.status == "cancelled" and req.decided_by_label == "Bob"
    session = await db(RealtimeSession.objects.get, pk=req.session_id)
    assert (session.status, session.close_code) == ("closed", events.STOPPED_CLOSE_CODE)
    rows = await db(
        lambda: list(AuditEvent.objects.filter(session_id=req.session_id).values_list("kind", "actor_id", "payload"))
    )
    assert ("session_stopped", bob.pk, {"reason": "Guest asked to end the call"}) in rows
    assert any(kind == "cancelled" and actor == bob.pk for kind, actor, _ in rows)
    # The session's own end afterwards (the relay closing it) adds no second close.
    assert sum(kind == "session_closed" for kind, _, _ in rows) == 1


async def test_stop_closes_the_client_and_upstream_on_daphnes_consumer(relay, upstream, bob):
    req = await _pending(upstream)
    session = await db(RealtimeSession.objects.get, pk=req.session_id)
    await db(services.stop_session, session, by=bob, reason="Guest asked to end the call")
    async with asyncio.timeout(10):
        while True:
            output = await relay.comm.receive_output(10)
            if output["type"] == "websocket.close":
                break
    assert output["code"] == events.STOPPED_CLOSE_CODE
    assert output["reason"] == events.STOPPED_CLOSE_REASON
    assert await _upstream_closed(upstream) == (1000, "stopped by staff")
    await _stopped_as_audited(req, bob)


async def test_stop_closes_the_client_and_upstream_on_run_relay(upstream, client_token, bob):
    port = free_port()
    ready = asyncio.Event()
    server = asyncio.create_task(serve_relay("127.0.0.1", port, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        headers = {"Authorization": f"Bearer {client_token[1]}"}
        async with connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", additional_headers=headers) as ws:
            async with asyncio.timeout(10):
                while json.loads(await ws.recv()).get("type") != "session.created":
                    pass
            req = await _pending(upstream)
            session = await db(RealtimeSession.objects.get, pk=req.session_id)
            await db(services.stop_session, session, by=bob, reason="Guest asked to end the call")
            await asyncio.wait_for(ws.wait_closed(), 10)
        assert (ws.close_code, ws.close_reason) == (events.STOPPED_CLOSE_CODE, events.STOPPED_CLOSE_REASON)
        assert await _upstream_closed(upstream) == (1000, "stopped by staff")
        await _stopped_as_audited(req, bob)
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
