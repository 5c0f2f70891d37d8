"""A relay process killed with -9 (issue 16.6): its sessions' leases run out, and the sweep in
a real Celery beat and worker closes them and cancels their pending requests, once, audited."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from approvals.models import ApprovalRequest, AuditKind, RealtimeSession
from approvals.services.sessions import LAPSED_REASON
from audit.models import AuditEvent
from tests.e2e.test_relay_processes import Guest, open_guest, wait_until
from tests.plugins.stack import Stack
from tests.plugins.upstream import ThreadedUpstream

pytestmark = pytest.mark.e2e


class KilledGuest(Guest):
    """A guest whose relay is killed under it: its socket ends without a close frame."""

    def run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            super().run()


def test_a_killed_run_relay_has_its_session_closed_and_its_request_cancelled_by_the_sweep(
    stack: Stack, threaded_upstream: ThreadedUpstream, tmp_path: Path
) -> None:
    env = {
        "OPENAI_BASE_URL": threaded_upstream.base_url,
        "OPENAI_API_KEY": "sk-upstream",
        "RELAY_LEASE_SECONDS": "3",
        "APPROVAL_TIMEOUT_SECONDS": "600",  # the deadline must not be what ends it
    }
    relay = stack.relay(None, **env)
    stack.worker(**env)
    stack.beat(tmp_path / "beat-schedule", **env)
    guest = open_guest(relay.url, threaded_upstream, guest_class=KilledGuest)
    threaded_upstream.request_approval(0, "mcpr_lease")
    req = wait_until(lambda: ApprovalRequest.objects.filter(upstream_id="mcpr_lease").first(), message="the request")
    session = RealtimeSession.objects.get(pk=req.session_id)
    assert session.status == "open" and session.lease_holder.endswith(f":{relay.proc.pid}")

    relay.signal(signal.SIGKILL)

    wait_until(
        lambda: ApprovalRequest.objects.filter(pk=req.pk, status="cancelled").exists(),
        timeout=90,
        message="the sweep to cancel the request",
    )
    req.refresh_from_db()
    assert req.reason == LAPSED_REASON
    session.refresh_from_db()
    assert session.status == "closed"
    assert AuditEvent.objects.filter(request_id=req.pk, kind=AuditKind.CANCELLED).count() == 1
    assert AuditEvent.objects.filter(session_id=session.pk, kind=AuditKind.SESSION_CLOSED).count() == 1
    guest.close()
