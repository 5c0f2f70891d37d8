"""Relay sessions hold a lease (issue 16.6): taken when the session opens, renewed by the
process that holds it, and swept by beat when that process died: the session is closed and its
pending requests cancelled, audited; a decision that never reached upstream is named."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, AuditKind, RealtimeSession
from audit.models import AuditEvent
from realtime_bridge import leases, tasks
from tests.realtime_bridge.conftest import RelayClient, db, open_relay
from tests.realtime_bridge.test_consumers import _request_approval

pytestmark = pytest.mark.django_db(transaction=True)


def lapse(session_id: int) -> None:
    """As if its process died a lease ago."""
    RealtimeSession.objects.filter(pk=session_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def open_request(session: RealtimeSession, upstream_id: str) -> ApprovalRequest:
    req, _ = services.open_request(
        session=session,
        upstream_id=upstream_id,
        server_label="hotel",
        tool_name="unlock_door",
        arguments='{"room": "1204"}',
        raw_item={"type": "mcp_approval_request", "id": upstream_id},
    )
    return req


async def test_a_relayed_session_holds_a_lease_of_its_process_and_renews_it(relay, upstream, settings):
    session = await db(RealtimeSession.objects.get)
    assert session.lease_holder == f"{os.uname().nodename}:{os.getpid()}"
    assert timedelta(0) < session.lease_expires_at - timezone.now() <= timedelta(seconds=settings.RELAY_LEASE_SECONDS)
    assert session.pk in leases.LEASES.held

    await db(RealtimeSession.objects.filter(pk=session.pk).update, lease_expires_at=timezone.now())
    await leases.LEASES.renew_now()

    renewed = await db(RealtimeSession.objects.get, pk=session.pk)
    assert renewed.lease_expires_at > timezone.now() + timedelta(seconds=settings.RELAY_LEASE_SECONDS - 5)


async def test_a_session_that_ends_gives_its_lease_up(upstream, client_token):
    comm, _, _ = await open_relay(client_token[1])
    await RelayClient(comm).recv_until("session.created")
    session = await db(RealtimeSession.objects.get)
    await comm.disconnect()
    assert session.pk not in leases.LEASES.held
    assert (await db(RealtimeSession.objects.get, pk=session.pk)).status == "closed"


def test_the_sweep_closes_a_session_whose_lease_ran_out_and_cancels_its_pending_requests(alice):
    dead = services.open_session(kind="relay", label="Room 1204", metadata={})
    alive = services.open_session(kind="relay", label="Room 1205", metadata={})
    services.hold_sessions([dead.pk, alive.pk], holder="host:1", seconds=15)
    pending = open_request(dead, "mcpr_pending")
    decided = services.decide(open_request(dead, "mcpr_decided"), approve=True, by=alice, reason="Go ahead")
    other = open_request(alive, "mcpr_alive")
    lapse(dead.pk)

    tasks.sweep_relay_leases()

    dead.refresh_from_db()
    assert (dead.status, dead.close_code) == ("closed", None)
    pending.refresh_from_db()
    assert (pending.status, pending.reason) == ("cancelled", services.sessions.LAPSED_REASON)
    assert AuditEvent.objects.filter(request_id=pending.pk, kind=AuditKind.CANCELLED).count() == 1
    # The decision stands as staff made it; it never reached upstream, and the close says so.
    decided.refresh_from_db()
    assert (decided.status, decided.decision_sent_at) == ("approved", None)
    (closed,) = AuditEvent.objects.filter(session_id=dead.pk, kind=AuditKind.SESSION_CLOSED)
    assert closed.payload == {"code": None, "reason": services.sessions.LAPSED_REASON, "undelivered": [decided.pk]}
    # A session whose holder renews is left alone.
    alive.refresh_from_db()
    other.refresh_from_db()
    assert (alive.status, other.status) == ("open", "pending")

    tasks.sweep_relay_leases()  # again: nothing more happens
    assert AuditEvent.objects.filter(session_id=dead.pk, kind=AuditKind.SESSION_CLOSED).count() == 1


def test_a_session_without_a_lease_is_not_swept():
    session = services.open_session(kind="sideband", label="Call", metadata={})
    tasks.sweep_relay_leases()
    session.refresh_from_db()
    assert session.status == "open"


async def test_a_holder_whose_session_was_swept_closes_its_client(relay, upstream):
    req = await _request_approval(upstream, relay)
    await db(lapse, req.session_id)
    await db(tasks.sweep_relay_leases)

    await leases.LEASES.renew_now()

    while True:  # the error events, if any, then the close
        output = await relay.comm.receive_output(10)
        if output["type"] == "websocket.close":
            break
        assert json.loads(output["text"])["type"] != "session.created"
    assert output["code"] == 4011  # server_error, as this server (no close_codes extension) can send it
    assert (await db(ApprovalRequest.objects.get, pk=req.pk)).status == "cancelled"
    assert req.session_id not in leases.LEASES.held
