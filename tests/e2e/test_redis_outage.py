"""A lost Redis is an outage of live pushes, not of the product (issue 16).

On the real processes (Daphne, run_relay, run_bridge, a Celery worker and beat) and a Redis of
the test's own, killed with -9 and started again on the same port, empty: no process exits,
decisions made during the outage reach upstream once, a deadline that passed during it fires
within 5 s of Redis returning, and the staff dashboard is live again.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from approvals import services
from approvals.models import ApprovalRequest
from tests.e2e.test_relay_processes import Guest, Staff, wait_until
from tests.plugins.processes import PYTHON, ServerProcess, free_port
from tests.plugins.redis_server import RedisServer
from tests.plugins.stack import Stack
from tests.plugins.upstream import ThreadedUpstream

pytestmark = pytest.mark.e2e

# Generous: the processes reconnect every second or two, but a loaded CI machine is slow.
SLOW = 60.0


class Dashboard(threading.Thread):
    """A staff member's dashboard socket that reconnects whenever it is dropped, as the page's
    script does, keeping every frame it receives and when it (re)connected."""

    def __init__(self, web_url: str, staff: Staff) -> None:
        super().__init__(daemon=True)
        self.url = web_url.replace("http://", "ws://") + "/ws/dashboard/"
        self.headers = {"Origin": web_url, "Cookie": f"sessionid={staff.http.cookies['sessionid']}"}
        self.frames: list[dict[str, Any]] = []
        self.connected_at: list[datetime] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                with connect(self.url, additional_headers=self.headers, open_timeout=10) as ws:
                    self.connected_at.append(timezone.now())
                    while not self.stop_flag.is_set():
                        try:
                            raw = ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        self.frames.append(json.loads(raw))
            except (OSError, WebSocketException):
                pass
            self.stop_flag.wait(0.5)

    def saw_status(self, request_id: int, status: str) -> bool:
        for frame in list(self.frames):
            found = [frame.get("request")] if frame.get("type") == "request_changed" else frame.get("requests") or []
            if any(r and r["id"] == request_id and r["status"] == status for r in found):
                return True
        return False


def answers_for(upstream: ThreadedUpstream, approval_id: str) -> list[dict[str, Any]]:
    return [a for a in upstream.approval_responses() if a["approval_request_id"] == approval_id]


def start_guest(url: str, upstream: ThreadedUpstream) -> Guest:
    _, plaintext = services.issue_token(label="Room 1204", metadata={"room": "1204"})
    before = len(upstream.sessions)
    guest = Guest(url, plaintext)
    guest.start()
    assert guest.connected.wait(SLOW)
    wait_until(lambda: len(upstream.sessions) > before, timeout=SLOW, message="the upstream session")
    return guest


def recorded(approval_id: str) -> ApprovalRequest:
    found: ApprovalRequest = wait_until(
        lambda: ApprovalRequest.objects.filter(upstream_id=approval_id).first(),
        timeout=SLOW,
        message=f"{approval_id} to be recorded",
    )
    return found


def wait_for_line(proc: ServerProcess, line: str) -> None:
    wait_until(lambda: line in proc.output(tail=0), timeout=SLOW, message=f"{proc.name} to log {line!r}")


def start_processes(
    stack: Stack, redis: RedisServer, upstream: ThreadedUpstream, tmp_path: Path
) -> tuple[str, str, ServerProcess]:
    """Daphne, run_relay, run_bridge, a worker and beat on `redis`; returns the two relay URLs
    and the worker."""
    stack.env["REDIS_URL"] = redis.url
    # Long enough that no request expires by itself unless the test moves its deadline.
    env = {"OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": "sk-upstream", "APPROVAL_TIMEOUT_SECONDS": "300"}
    web = stack.web(free_port(), **env)
    relay_port = free_port()
    argv = [PYTHON, "manage.py", "run_relay", "--port", str(relay_port)]
    stack._start(ServerProcess(argv, port=relay_port, env={**stack.env, **env}, name="run_relay"))
    bridge = stack._start(
        ServerProcess([PYTHON, "manage.py", "run_bridge"], env={**stack.env, **env}, name="run_bridge")
    )
    worker = stack.worker(**env)
    beat = stack.beat(tmp_path / "beat-schedule", **env)
    # Up, not just started: the outage must find them connected.
    wait_for_line(bridge, ": started")
    wait_for_line(worker, " ready.")
    wait_for_line(beat, "beat: Starting...")
    return web.url, f"http://127.0.0.1:{relay_port}", worker


def test_processes_outlive_a_redis_restart_and_what_happened_meanwhile_is_delivered(
    stack: Stack, private_redis: RedisServer, threaded_upstream: ThreadedUpstream, alice: Any, password: str, tmp_path
) -> None:
    upstream = threaded_upstream
    web_url, relay_url, worker = start_processes(stack, private_redis, upstream, tmp_path)
    guests = [start_guest(web_url, upstream), start_guest(relay_url, upstream)]  # upstream sessions 0 and 1
    staff = Staff(web_url, "alice", password)
    dashboard = Dashboard(web_url, staff)
    dashboard.start()
    wait_until(lambda: dashboard.connected_at, timeout=SLOW, message="the dashboard socket")
    upstream.request_approval(0, "mcpr_outage_daphne")
    upstream.request_approval(1, "mcpr_outage_run_relay")
    decided_meanwhile = [recorded("mcpr_outage_daphne"), recorded("mcpr_outage_run_relay")]
    # The worker holds their deadline tasks (countdowns) unacknowledged when Redis dies: that
    # is what used to kill it ("Unrecoverable error: AttributeError ... 'hostname'").
    wait_until(
        lambda: worker.output(tail=0).count("Task approvals.tasks.expire_request[") >= 2,
        timeout=SLOW,
        message="the worker to hold both deadline tasks",
    )

    private_redis.kill()

    # Decisions during the outage: the database is the truth, so they succeed...
    for req in decided_meanwhile:
        response = staff.decide(req.pk, "approve", "Checked ID during the outage")
        assert response.status_code in (200, 302), response.text
    # ...and a request opened during the outage whose deadline passes before Redis returns.
    upstream.request_approval(0, "mcpr_outage_deadline")
    overdue = recorded("mcpr_outage_deadline")
    deadline = timezone.now() + timedelta(seconds=2)
    ApprovalRequest.objects.filter(pk=overdue.pk).update(deadline=deadline)  # test set-up, not a transition
    wait_until(lambda: timezone.now() > deadline + timedelta(seconds=1), timeout=SLOW, message="the deadline")

    private_redis.start()
    back_at = timezone.now()

    # The deadline fires within 5 s of Redis returning (the worker reconnects, beat's sweep runs).
    wait_until(
        lambda: ApprovalRequest.objects.filter(pk=overdue.pk, status="expired").exists(),
        timeout=SLOW,
        message="the overdue request to expire",
    )
    overdue.refresh_from_db()
    assert overdue.decided_at is not None
    assert overdue.decided_at <= back_at + timedelta(seconds=5), f"expired {overdue.decided_at - back_at} after"

    # Every answer reaches upstream, each exactly once.
    expected = {"mcpr_outage_daphne": True, "mcpr_outage_run_relay": True, "mcpr_outage_deadline": False}
    upstream.wait_for(lambda: all(answers_for(upstream, i) for i in expected), timeout=SLOW)
    time.sleep(2.5)  # outbox polls and late nudges must not send anything twice
    for approval_id, approve in expected.items():
        (answer,) = answers_for(upstream, approval_id)
        assert answer["approve"] is approve
    assert ApprovalRequest.objects.filter(upstream_id__in=expected, decision_sent_at__isnull=True).count() == 0

    # The dashboard is live again: the expiry reached it, pushed or in a snapshot on reconnect.
    wait_until(lambda: dashboard.saw_status(overdue.pk, "expired"), timeout=SLOW, message="the dashboard")
    wait_until(lambda: httpx.get(f"{web_url}/healthz", timeout=10).status_code == 200, timeout=SLOW, message="/healthz")

    # Nobody died: not the web, the relay, the bridge, the worker nor beat.
    for proc in stack.processes:
        assert proc.proc is not None and proc.proc.poll() is None, f"{proc.name} exited:\n{proc.output()}"
        assert "Unrecoverable error" not in proc.output(tail=0), proc.name
    dashboard.stop_flag.set()
    for guest in guests:
        guest.close()
