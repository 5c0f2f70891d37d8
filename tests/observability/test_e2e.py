"""Metrics, logs and health on the real processes: a Daphne that relays a guest's session to a
test upstream and serves the staff's POSTs, and a Celery worker that applies a deadline. The
counts are scraped over HTTP from /metrics, which adds up both processes (multiprocess mode)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest
from tests.e2e.test_relay_processes import Staff, open_guest, wait_until

pytestmark = pytest.mark.e2e

POLICY = """
rules:
  - {label: lookups, server: hotel, tool: 'lookup_*', outcome: allow}
  - {label: doors, tool: unlock_door, outcome: ask, approvers: [front-desk], deadline_seconds: 600}
  - {label: wake-up, tool: wake_up_call, outcome: ask, approvers: [front-desk], deadline_seconds: 1}
"""


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus's text format (labels in any order), or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


def log_lines(output: str) -> list[dict]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


@pytest.fixture
def front_desk(alice, bob):
    group = Group.objects.create(name="front-desk")
    alice.groups.add(group)
    bob.groups.add(group)
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=None, source="test")


def test_it_counts_decisions_of_every_process_and_logs_each_with_its_ids(
    stack, threaded_upstream, front_desk, alice, password
):
    env = {"OPENAI_BASE_URL": threaded_upstream.base_url, "OPENAI_API_KEY": "sk-upstream", "LOG_FORMAT": "json"}
    web = stack.web(**env)
    worker = stack.worker(**env)
    guest = open_guest(web.url, threaded_upstream)
    for approval_id, tool in (
        ("mcpr_lookup", "lookup_booking"),  # the policy approves it at once (the relay's process)
        ("mcpr_door1", "unlock_door"),  # Alice approves it (a POST to Daphne)
        ("mcpr_door2", "unlock_door"),  # Alice denies it
        ("mcpr_door3", "unlock_door"),  # stays pending for the front desk
        ("mcpr_wake", "wake_up_call"),  # its 1 s deadline denies it (the worker's process)
    ):
        threaded_upstream.request_approval(0, approval_id, tool=tool)
    threaded_upstream.send(0, {"type": "error", "event_id": "event_err", "error": {"type": "invalid_request_error"}})
    ids = ["mcpr_lookup", "mcpr_door1", "mcpr_door2", "mcpr_door3", "mcpr_wake"]
    wait_until(lambda: ApprovalRequest.objects.filter(upstream_id__in=ids).count() == 5, message="the requests")
    door1, door2 = (ApprovalRequest.objects.get(upstream_id=i) for i in ("mcpr_door1", "mcpr_door2"))

    staff = Staff(web.url, "alice", password)
    approved = staff.http.post(
        f"/requests/{door1.pk}/decide/",
        data={"decision": "approve"},
        headers={"X-CSRFToken": staff.http.cookies["csrftoken"], "X-Request-ID": "req-door1-approve"},
    )
    assert approved.status_code == 200, approved.text
    assert approved.headers["X-Request-ID"] == "req-door1-approve"
    assert staff.decide(door2.pk, "deny", "Please come to the desk").status_code == 200
    wait_until(
        lambda: ApprovalRequest.objects.get(upstream_id="mcpr_wake").status == "expired", 30, "the worker's deadline"
    )
    # Every answer reached upstream: nothing is left in the outbox.
    threaded_upstream.wait_for(lambda: len(threaded_upstream.approval_responses()) == 4, timeout=30)

    def scrape() -> str:
        response = httpx.get(f"{web.url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    # The worker's count reaches its file when its task ends, a moment after the answer was sent.
    def scrape_once_counted() -> str | None:
        text = scrape()
        return text if sample(text, "countersign_deadline_lateness_seconds_count") == 1 else None

    text = wait_until(scrape_once_counted, 30, "the deadline's lateness, counted by the worker")
    assert sample(text, "countersign_decisions_total", outcome="approved", decided_by="policy") == 1
    assert sample(text, "countersign_decisions_total", outcome="approved", decided_by="staff") == 1
    assert sample(text, "countersign_decisions_total", outcome="denied", decided_by="staff") == 1
    assert sample(text, "countersign_decisions_total", outcome="expired", decided_by="deadline") == 1
    assert sample(text, "countersign_time_to_decision_seconds_count", decided_by="staff") == 2
    assert sample(text, "countersign_pending_requests", group="front-desk") == 1
    assert sample(text, "countersign_sessions_open", kind="relay") == 1
    assert sample(text, "countersign_upstream_errors_total", type="invalid_request_error") == 1
    assert sample(text, "countersign_outbox_backlog") == 0
    assert sample(text, "countersign_celery_queue_depth", queue=stack.env["CELERY_QUEUE"]) is not None

    # The decision's log line, as JSON, carries the ids of its whole path.
    lines = [line for line in log_lines(web.output(tail=0)) if line.get("event", "").startswith("decision committed")]
    (line,) = [line for line in lines if line.get("approval_request_id") == door1.pk]
    assert line["request_id"] == "req-door1-approve"
    assert (line["session_id"], line["user"], line["outcome"], line["decided_by"]) == (
        door1.session_id,
        "alice",
        "approved",
        "staff",
    )
    # The deadline's line, in the worker, names its task and the request.
    wake = ApprovalRequest.objects.get(upstream_id="mcpr_wake")
    (expired,) = [
        line
        for line in log_lines(worker.output(tail=0))
        if line.get("event", "").startswith("decision committed") and line.get("approval_request_id") == wake.pk
    ]
    assert expired["session_id"] == wake.session_id and expired["task"].startswith("approvals.tasks.")
    guest.close()


def test_healthz_is_degraded_with_the_reasons_when_the_loop_is_behind(stack, front_desk, alice):
    web = stack.web(HEALTH_OUTBOX_MAX="0", HEALTH_DEADLINE_LATE_SECONDS="5")
    stack.worker()

    def health() -> dict:
        return httpx.get(f"{web.url}/healthz", timeout=15).json()

    assert wait_until(lambda: health()["status"] == "ok", 30, "a healthy stack")
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    # An answer for a session no relay holds stays in the outbox.
    answered, _ = services.open_request(
        session=session,
        upstream_id="mcpr_a",
        server_label="hotel",
        tool_name="unlock_door",
        arguments="{}",
        raw_item={},
    )
    services.decide(answered, approve=True, by=alice)
    # A pending request 30 s past its deadline: as if no worker or beat had applied it. Test set-up,
    # not a transition: the deadline task the worker was given for the old deadline finds nothing.
    late, _ = services.open_request(
        session=session,
        upstream_id="mcpr_b",
        server_label="hotel",
        tool_name="unlock_door",
        arguments="{}",
        raw_item={},
    )
    ApprovalRequest.objects.filter(pk=late.pk).update(deadline=timezone.now() - timedelta(seconds=30))

    response = httpx.get(f"{web.url}/healthz", timeout=15)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded", body
    assert body["failing"] == []
    (outbox, deadlines) = body["degraded"]
    assert outbox.startswith("outbox: 1 answers not yet sent upstream")
    assert deadlines.startswith("deadlines: a pending request is 3") and "past its deadline" in deadlines
