"""Faults under load: guests keep asking, staff keep deciding, and every process is killed.

The real processes of `make run` on a Redis of the test's own: two Daphnes (one carries guests,
one staff), `run_relay` (more guests), `run_bridge`, a Celery worker and beat. The upstream is
the scripted stand-in that records what reached "OpenAI". Each round kills -9 the worker, the
staff's Daphne, `run_relay`, `run_bridge`, and restarts Redis, one after the other, while a
load thread opens approval requests and a staff thread decides about half of them. Then:

- every request is final by its deadline + 5 s, with one final audit row (decided once);
- every answered request is answered upstream once, and none twice (doubled), and none whose
  session was alive is left unanswered (lost);
- every session row is closed or belongs to a live guest (sessions on a killed `run_relay`
  are closed by the lease sweep: asserted once RealtimeSession has lease fields);
- `verify_audit` says the trail is intact.

CHAOS_ROUNDS=1 is the short version (one fault of each kind); `make chaos` runs 3 rounds and
prints the counts. No timed assertion but the deadline + 5 s the product promises.
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.db import close_old_connections
from django.utils import timezone

from approvals.models import ApprovalRequest, AuditKind, RealtimeSession
from audit.models import AuditEvent
from tests.e2e.test_redis_outage import SLOW, start_guest, wait_for_line
from tests.e2e.test_relay_processes import Guest, Staff, wait_until
from tests.plugins.processes import PYTHON, ServerProcess, free_port
from tests.plugins.redis_server import RedisServer
from tests.plugins.stack import Stack
from tests.plugins.upstream import ThreadedUpstream

# Runs when CHAOS_ROUNDS is set: `make chaos` (3 rounds) and CI (.ci/run sets 1: one fault of each
# kind). A plain local `make test` skips it: it takes minutes and a machine of its own.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif("CHAOS_ROUNDS" not in os.environ, reason="faults under load: make chaos (CHAOS_ROUNDS)"),
]

ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "1"))
TIMEOUT = 8  # APPROVAL_TIMEOUT_SECONDS: requests nobody decides expire during the run
FINAL_KINDS = [AuditKind.DECIDED, AuditKind.EXPIRED, AuditKind.CANCELLED]
ANSWERED = {"approved", "denied", "expired"}


class Chaos:
    def __init__(self, stack: Stack, redis: RedisServer, upstream: ThreadedUpstream, tmp_path: Path) -> None:
        self.stack, self.redis, self.upstream, self.tmp_path = stack, redis, upstream, tmp_path
        stack.env["REDIS_URL"] = redis.url
        self.env = {
            "OPENAI_BASE_URL": upstream.base_url,
            "OPENAI_API_KEY": "sk-upstream",
            "APPROVAL_TIMEOUT_SECONDS": str(TIMEOUT),
        }
        self.ports = {"guest_web": free_port(), "staff_web": free_port(), "run_relay": free_port()}
        self.procs: dict[str, ServerProcess] = {}
        self.guests: list[tuple[Guest, str, int]] = []  # (guest, where, upstream session index)
        self.asked: list[tuple[str, int]] = []  # (approval id, upstream session index)
        self.faults: Counter[str] = Counter()
        self.timeline: list[tuple[str, datetime, datetime]] = []  # (fault, injected, recovered)
        self.staff_posts: Counter[str] = Counter()
        self.stop = threading.Event()

    # --- processes ---------------------------------------------------------------------------

    def start(self, name: str) -> ServerProcess:
        env = {**self.stack.env, **self.env}
        if name in ("guest_web", "staff_web"):
            proc = self.stack.web(self.ports[name], **self.env)
        elif name == "run_relay":
            argv = [PYTHON, "manage.py", "run_relay", "--port", str(self.ports[name])]
            proc = self.stack._start(ServerProcess(argv, port=self.ports[name], env=env, name="run_relay"))
        elif name == "run_bridge":
            proc = self.stack._start(ServerProcess([PYTHON, "manage.py", "run_bridge"], env=env, name="run_bridge"))
            wait_for_line(proc, ": started")
        elif name == "worker":
            proc = self.stack.worker(**self.env)
        else:
            proc = self.stack.beat(self.tmp_path / "beat-schedule", **self.env)
            wait_for_line(proc, "beat: Starting...")
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        assert proc.proc is not None
        injected = timezone.now()
        proc.proc.kill()  # SIGKILL: no clean-up of any kind
        proc.proc.wait(30)
        self.faults[name] += 1
        self.start(name)
        if name == "worker":
            wait_for_line(self.procs[name], " ready.")
        self.timeline.append((name, injected, timezone.now()))

    def restart_redis(self) -> None:
        injected = timezone.now()
        self.redis.kill()
        time.sleep(1.0)  # an outage, not a blip
        self.redis.start()
        self.faults["redis"] += 1
        self.timeline.append(("redis", injected, timezone.now()))

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    # --- load --------------------------------------------------------------------------------

    def add_guest(self, where: str) -> None:
        before = len(self.upstream.sessions)
        guest = start_guest(self.url(where), self.upstream)
        self.guests.append((guest, where, before))

    def live_sessions(self) -> list[int]:
        return [index for guest, _, index in self.guests if guest.is_alive() and not guest.stop_flag.is_set()]

    def load(self) -> None:
        n = 0
        while not self.stop.wait(0.4):
            live = self.live_sessions()
            if not live:
                continue
            index = random.choice(live)
            approval_id = f"mcpr_chaos_{n}"
            n += 1
            try:
                self.upstream.request_approval(index, approval_id)
            except Exception:
                continue  # that guest's relay just died: nothing was asked
            self.asked.append((approval_id, index))

    def staff(self, password: str) -> None:
        person: Staff | None = None
        while not self.stop.wait(0.5):
            close_old_connections()
            try:
                person = person or Staff(self.url("staff_web"), "alice", password)
                pending = list(ApprovalRequest.objects.filter(status="pending").values_list("pk", flat=True))
                for pk in pending[: max(1, len(pending) // 2)]:
                    response = person.decide(pk, random.choice(["approve", "deny"]), "chaos")
                    self.staff_posts[str(response.status_code)] += 1
            except (httpx.HTTPError, AssertionError):
                self.staff_posts["unreachable"] += 1
                person = None
        close_old_connections()


# Each restart waits for the process to be ready, which takes seconds on a loaded machine.
@pytest.mark.timeout(600 + 600 * ROUNDS)
def test_every_request_survives_killed_processes_and_a_redis_restart(
    stack: Stack, private_redis: RedisServer, threaded_upstream: ThreadedUpstream, alice: Any, password: str, tmp_path
) -> None:
    chaos = Chaos(stack, private_redis, threaded_upstream, tmp_path)
    for name in ("guest_web", "staff_web", "run_relay", "run_bridge", "worker", "beat"):
        chaos.start(name)
    wait_for_line(chaos.procs["worker"], " ready.")
    for where in ("guest_web", "guest_web", "run_relay", "run_relay"):
        chaos.add_guest(where)
    threads = [
        threading.Thread(target=chaos.load, daemon=True),
        threading.Thread(target=chaos.staff, args=(password,), daemon=True),
    ]
    for thread in threads:
        thread.start()

    killed_relay_sessions: list[int] = []
    for _ in range(ROUNDS):
        for fault in ("worker", "staff_web", "run_relay", "run_bridge", "redis"):
            time.sleep(3)  # load runs between faults
            if fault == "redis":
                chaos.restart_redis()
                continue
            if fault == "run_relay":
                for guest, where, index in chaos.guests:
                    if where == "run_relay" and guest.is_alive():
                        killed_relay_sessions.append(index)
                        guest.stop_flag.set()
            chaos.kill(fault)
            if fault == "run_relay":
                for _ in range(2):
                    chaos.add_guest("run_relay")
    time.sleep(3)
    chaos.stop.set()
    for thread in threads:
        thread.join(30)

    # Every request final by its deadline + 5 s (the latest deadline bounds the wait).
    asked = dict(chaos.asked)
    requests = wait_until(
        lambda: list(ApprovalRequest.objects.filter(upstream_id__in=asked)) or None, timeout=SLOW, message="requests"
    )
    latest = max(r.deadline for r in requests)
    wait_until(
        lambda: not ApprovalRequest.objects.filter(upstream_id__in=asked, status="pending").exists(),
        timeout=max(5.0, (latest - timezone.now()).total_seconds()) + SLOW,
        message="every request to be final",
    )
    time.sleep(2.5)  # a late redelivery or a second sweep must not answer anything again
    requests = list(ApprovalRequest.objects.filter(upstream_id__in=asked).select_related("session"))
    answers = Counter(a["approval_request_id"] for a in threaded_upstream.approval_responses())
    live = set(chaos.live_sessions())
    late = [r.upstream_id for r in requests if r.decided_at is None or r.decided_at > r.deadline + timedelta(seconds=5)]
    doubled = [r.upstream_id for r in requests if answers[r.upstream_id] > 1]
    decided_twice = [
        r.upstream_id for r in requests if AuditEvent.objects.filter(request=r, kind__in=FINAL_KINDS).count() != 1
    ]
    # Lost: asked on a session that stayed alive, and never recorded, or recorded and answered
    # by staff or deadline but never answered upstream.
    recorded = {r.upstream_id for r in requests}
    lost = [a for a, index in chaos.asked if index in live and a not in recorded]
    lost += [
        r.upstream_id
        for r in requests
        if asked[r.upstream_id] in live and r.status in ANSWERED and not answers[r.upstream_id]
    ]
    stale = list(
        RealtimeSession.objects.filter(
            status="open", upstream_session_id__in=[f"sess_{i}" for i in killed_relay_sessions]
        )
    )
    audit = io.StringIO()
    call_command("verify_audit", stdout=audit)

    for r in requests:
        if r.upstream_id in late:
            near = [
                f"{name} {(start - r.deadline).total_seconds():+.1f}s..{(end - r.deadline).total_seconds():+.1f}s"
                for name, start, end in chaos.timeline
                if start <= (r.decided_at or timezone.now()) and end >= r.deadline - timedelta(seconds=5)
            ]
            lateness = ((r.decided_at or timezone.now()) - r.deadline).total_seconds()
            print(f"late: {r.upstream_id} {r.status} {lateness:.1f}s after its deadline; faults around it: {near}")
    print(
        f"\nchaos: {ROUNDS} round(s); requests {len(chaos.asked)} (recorded {len(requests)}, "
        f"{Counter(r.status for r in requests)}); faults {dict(chaos.faults)}; staff POSTs {dict(chaos.staff_posts)}; "
        f"lost {len(lost)}; doubled {len(doubled)}; decided twice {len(decided_twice)}; late {len(late)}; "
        f"sessions of a killed relay still open {len(stale)}; {audit.getvalue().strip()}"
    )
    assert chaos.faults == Counter(
        {"worker": ROUNDS, "staff_web": ROUNDS, "run_relay": ROUNDS, "run_bridge": ROUNDS, "redis": ROUNDS}
    )
    assert not lost, lost
    assert not doubled, doubled
    assert not decided_twice, decided_twice
    assert not late, late
    assert "Intact" in audit.getvalue()
    # Sessions whose relay process died are closed by the lease sweep (helper "relay", issue 16
    # #6): asserted once RealtimeSession carries its lease fields; until then only counted above.
    if any(f.name.startswith("lease") for f in RealtimeSession._meta.get_fields()):
        wait_until(
            lambda: not RealtimeSession.objects.filter(pk__in=[s.pk for s in stale], status="open").exists(),
            timeout=SLOW,
            message="the lease sweep to close the sessions of the killed run_relay",
        )
    for guest, _, _ in chaos.guests:
        guest.close()
