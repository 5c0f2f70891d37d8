"""The approval loop across real processes: Daphne relays, Celery worker and beat, Redis, the
test's PostgreSQL or SQLite database. The upstream is a scripted stand-in that records exactly
what reached "OpenAI" (tests/plugins/upstream.py)."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.db import close_old_connections, connection
from django.utils import timezone
from openai import OpenAI

from approvals import services
from approvals.models import ApprovalRequest, AuditKind
from audit.models import AuditEvent

pytestmark = pytest.mark.e2e

FINAL_KINDS = [AuditKind.DECIDED, AuditKind.EXPIRED, AuditKind.CANCELLED]


class Guest(threading.Thread):
    """A client on the official SDK, connected through the relay, reading until closed."""

    def __init__(self, web_url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.client = OpenAI(api_key=token, base_url=f"{web_url}/v1")
        self.events: list[str] = []
        self.connected = threading.Event()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        with self.client.realtime.connect(model="gpt-realtime") as conn:
            self.connection = conn
            self.connected.set()
            for event in conn:
                self.events.append(event.type)
                if self.stop_flag.is_set():
                    break

    def close(self) -> None:
        self.stop_flag.set()
        try:
            self.connection.close()
        except Exception:
            pass


class Staff:
    """A staff member's browser session, on plain HTTP: log in, then POST decisions with CSRF."""

    def __init__(self, web_url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=web_url, timeout=10)
        page = self.http.get("/accounts/login/")
        assert page.status_code == 200
        response = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
        )
        assert response.status_code == 302, response.text

    def decide(self, pk: int, decision: str, reason: str = "") -> httpx.Response:
        return self.http.post(
            f"/requests/{pk}/decide/",
            data={"decision": decision, "reason": reason},
            headers={"X-CSRFToken": self.http.cookies["csrftoken"]},
        )


def wait_until(predicate, timeout: float = 15.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.05)


def open_guest(web_url: str, upstream, guest_class: type[Guest] = Guest) -> Guest:
    _, plaintext = services.issue_token(label="Room 1204", metadata={"room": "1204"})
    before = len(upstream.sessions)
    guest = guest_class(web_url, plaintext)
    guest.start()
    assert guest.connected.wait(15)
    wait_until(lambda: len(upstream.sessions) > before, message="the upstream session")
    return guest


def test_a_decision_posted_on_one_daphne_reaches_the_session_relayed_by_another(
    stack, threaded_upstream, alice, password
):
    env = {"OPENAI_BASE_URL": threaded_upstream.base_url, "OPENAI_API_KEY": "sk-upstream"}
    relay_web = stack.web(**env)
    other_web = stack.web(**env)
    guest = open_guest(relay_web.url, threaded_upstream)
    threaded_upstream.request_approval(0, "mcpr_two_daphnes")
    req = wait_until(lambda: ApprovalRequest.objects.filter(upstream_id="mcpr_two_daphnes").first())

    response = Staff(other_web.url, "alice", password).decide(req.pk, "approve", "Checked ID")
    assert response.status_code == 200, response.text

    threaded_upstream.wait_for(lambda: len(threaded_upstream.approval_responses()) == 1)
    (answer,) = threaded_upstream.approval_responses()
    assert (answer["approval_request_id"], answer["approve"], answer["reason"]) == (
        "mcpr_two_daphnes",
        True,
        "Checked ID",
    )
    # Marked sent just after the send (realtime_bridge/outbound.py).
    req = wait_until(lambda: ApprovalRequest.objects.filter(pk=req.pk, decision_sent_at__isnull=False).first())
    assert req.status == "approved" and req.decided_by == alice
    guest.close()


def test_killing_the_worker_mid_deadline_still_closes_every_request_once(stack, threaded_upstream, tmp_path):
    timeout = 4
    env = {
        "OPENAI_BASE_URL": threaded_upstream.base_url,
        "OPENAI_API_KEY": "sk-upstream",
        "APPROVAL_TIMEOUT_SECONDS": str(timeout),
    }
    web = stack.web(**env)
    worker = stack.worker(**env)
    stack.beat(tmp_path / "beat-schedule", **env)
    guest = open_guest(web.url, threaded_upstream)
    ids = [f"mcpr_kill{i}" for i in range(6)]
    for approval_id in ids:
        threaded_upstream.request_approval(0, approval_id)
    wait_until(lambda: ApprovalRequest.objects.filter(upstream_id__in=ids).count() == len(ids), message="requests")
    latest_deadline = max(ApprovalRequest.objects.filter(upstream_id__in=ids).values_list("deadline", flat=True))

    time.sleep(1.0)  # the worker has taken the countdown tasks by now
    worker.signal(signal.SIGKILL)
    assert worker.proc is not None
    worker.proc.wait(10)
    time.sleep(1.0)
    stack.worker(**env)

    def all_closed() -> bool:
        return not ApprovalRequest.objects.filter(upstream_id__in=ids, status="pending").exists()

    wait_until(all_closed, timeout=timeout + 20, message="every request to expire")
    # When each expiry committed (decided_at, written in its transaction), not when this test
    # process, itself slow on a loaded machine, happened to look.
    decided = ApprovalRequest.objects.filter(upstream_id__in=ids).values_list("decided_at", flat=True)
    assert None not in decided
    closed_by = max(d for d in decided if d is not None)
    assert closed_by <= latest_deadline + timedelta(seconds=5), f"closed {closed_by - latest_deadline} after deadline"
    threaded_upstream.wait_for(lambda: len(threaded_upstream.approval_responses()) >= len(ids))
    time.sleep(2.5)  # a second sweep or a redelivered task must not send anything more
    answers = threaded_upstream.approval_responses()
    assert sorted(a["approval_request_id"] for a in answers) == sorted(ids)
    # The guest hears the real wait in words for a guest (issue 13), never a rule label.
    assert all(a["approve"] is False and "in time" in (a.get("reason") or "").lower() for a in answers)
    for req in ApprovalRequest.objects.filter(upstream_id__in=ids):
        assert req.status == "expired"
        assert AuditEvent.objects.filter(request=req, kind__in=FINAL_KINDS).count() == 1
    guest.close()


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the race is about PostgreSQL's row locking")
def test_racing_decisions_and_expiries_give_each_request_one_decision_one_audit_row_and_one_answer(
    stack, threaded_upstream, alice, bob, admin_user
):
    env = {"OPENAI_BASE_URL": threaded_upstream.base_url, "OPENAI_API_KEY": "sk-upstream"}
    web = stack.web(**env)
    guest = open_guest(web.url, threaded_upstream)
    ids = [f"mcpr_race{i}" for i in range(20)]
    for approval_id in ids:
        threaded_upstream.request_approval(0, approval_id)
    wait_until(lambda: ApprovalRequest.objects.filter(upstream_id__in=ids).count() == len(ids), message="requests")
    # Test set-up, not a transition: move every deadline to the instant the deciders start.
    deadline = timezone.now() + timedelta(seconds=1)
    ApprovalRequest.objects.filter(upstream_id__in=ids).update(deadline=deadline)
    pks = list(ApprovalRequest.objects.filter(upstream_id__in=ids).values_list("pk", flat=True))
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def decider(user, approve: bool) -> None:
        barrier.wait()
        # Start a little before the deadline: some decisions win outright, the rest race the
        # expirers at the deadline. (50 ms was too little on a loaded 2-core CI machine, where
        # three expirers spinning in Python hold the GIL: no decision got in first.)
        time.sleep(max(0.0, (deadline - timezone.now()).total_seconds() - 0.3))
        for pk in pks:
            try:
                services.decide(ApprovalRequest.objects.get(pk=pk), approve=approve, by=user, reason="race")
                outcomes.append("decided")
            except services.TransitionError:
                outcomes.append("lost")
        close_old_connections()

    def expirer() -> None:
        barrier.wait()
        while timezone.now() < deadline + timedelta(seconds=0.5):
            outcomes.extend("expired" for _ in services.expire_overdue(now=timezone.now()))
        close_old_connections()

    threads = [
        threading.Thread(target=decider, args=(u, a)) for u, a in [(alice, True), (bob, False), (admin_user, True)]
    ]
    threads += [
        threading.Thread(target=decider, args=(alice, False)),
        threading.Thread(target=decider, args=(bob, True)),
    ]
    threads += [threading.Thread(target=expirer) for _ in range(3)]
    errors: list[BaseException | None] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        threading.excepthook = previous_hook
    assert errors == []

    # A decide() that loses to a passed deadline expires the request itself, so the outcomes
    # seen by the threads do not add up to one per request; the database does.
    assert "decided" in outcomes and not ApprovalRequest.objects.filter(pk__in=pks, status="pending").exists()
    for req in ApprovalRequest.objects.filter(pk__in=pks):
        assert req.status in ("approved", "denied", "expired")
        assert AuditEvent.objects.filter(request=req, kind__in=FINAL_KINDS).count() == 1
    threaded_upstream.wait_for(lambda: len(threaded_upstream.approval_responses()) >= len(ids), timeout=15)
    time.sleep(2.5)  # polls and late nudges must not send a second answer
    answers = threaded_upstream.approval_responses()
    assert sorted(a["approval_request_id"] for a in answers) == sorted(ids)
    by_id = {a["approval_request_id"]: a["approve"] for a in answers}
    for req in ApprovalRequest.objects.filter(pk__in=pks):
        assert by_id[req.upstream_id] is (req.status == "approved")
    guest.close()


_ = connection  # used by the skipif condition string above
