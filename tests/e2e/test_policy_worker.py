"""Policies with real time passing, on a real Celery worker: each outcome, a condition, quorum and
separation of duties, every deadline action, and an escalation chain of three steps. Requests go
through approvals.services exactly as the relay opens them; the deadlines (1-2 s) are fired by
the worker's countdown tasks, with no beat running, so nothing but the worker moves them."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import ApprovalRequest, AuditKind
from approvals.services import TransitionError
from audit.models import AuditEvent
from tests.e2e.test_relay_processes import wait_until

pytestmark = pytest.mark.e2e
Status = ApprovalRequest.Status
Kind = AuditKind

POLICY = """
rules:
  - {label: lookups, server: hotel, tool: 'lookup_*', outcome: allow}
  - {label: no-doors, tool: unlock_door, outcome: deny, reason: Doors are opened at the desk.}
  - label: small-refunds
    tool: refund_*
    when: args.amount <= 50
    outcome: allow
  - label: large-refunds
    tool: refund_*
    when: args.amount > 100.0 && session.room.startsWith("12")
    outcome: ask
    approvers: [managers]
    quorum: 2
    deadline_seconds: 2
    on_deadline: deny
  - {label: late-checkout, tool: extend_checkout, outcome: ask, approvers: front-desk, deadline_seconds: 1,
     on_deadline: approve}
  - {label: wake-up, tool: wake_up_call, outcome: ask, deadline_seconds: 1, on_deadline: deny}
  - label: chain
    tool: comp_room
    outcome: ask
    approvers: front-desk
    deadline_seconds: 1
    on_deadline: escalate
    escalations:
      - {approvers: managers, deadline_seconds: 1, on_deadline: escalate}
      - {approvers: general-managers, deadline_seconds: 1, on_deadline: deny}
"""


@pytest.fixture
def hotel_policy(stack, django_user_model):
    groups = {n: Group.objects.create(name=n) for n in ("front-desk", "managers", "general-managers")}
    users = {}
    for username, group in (
        ("fred", "front-desk"),
        ("mia", "managers"),
        ("max", "managers"),
        ("gus", "general-managers"),
    ):
        users[username] = django_user_model.objects.create_user(username, is_staff=True, first_name=username.title())
        users[username].groups.add(groups[group])
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=None, source="test")
    stack.worker()
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    return session, users


def ask(session, tool: str, arguments: dict | None = None, upstream_id: str | None = None) -> ApprovalRequest:
    req, _ = services.open_request(
        session=session,
        upstream_id=upstream_id or f"mcpr_{tool}_{time.monotonic_ns()}",
        server_label="hotel",
        tool_name=tool,
        arguments=json.dumps(arguments or {}),
        raw_item={"type": "mcp_approval_request"},
    )
    return req


def current(req: ApprovalRequest) -> ApprovalRequest:
    return ApprovalRequest.objects.get(pk=req.pk)


def settled(req: ApprovalRequest, timeout: float = 10) -> ApprovalRequest:
    return wait_until(lambda: (r := current(req)).status != Status.PENDING and r, timeout, "the worker's deadline")


def test_allow_and_deny_decide_at_once_and_the_worker_leaves_them_alone(hotel_policy):
    session, _ = hotel_policy
    allowed, denied = ask(session, "lookup_booking"), ask(session, "unlock_door")
    assert (allowed.status, allowed.rule_label) == (Status.APPROVED, "lookups")
    assert (denied.status, denied.reason) == (Status.DENIED, "Doors are opened at the desk.")
    time.sleep(1.5)  # no deadline task was scheduled for them; nothing changes
    assert (current(allowed).status, current(denied).status) == (Status.APPROVED, Status.DENIED)


def test_a_condition_auto_approves_20_and_asks_managers_for_200(hotel_policy):
    session, _ = hotel_policy
    small = ask(session, "refund_minibar_charge", {"amount": 20})
    large = ask(session, "refund_minibar_charge", {"amount": 200})
    assert (small.status, small.rule_label) == (Status.APPROVED, "small-refunds")
    assert (large.status, large.rule_label, large.audience_groups) == (Status.PENDING, "large-refunds", ["managers"])
    # Nobody decides: two seconds later the worker denies it.
    done = settled(large)
    assert (done.status, done.decided_by_label) == (Status.EXPIRED, "deadline")


def test_quorum_and_separation_of_duties_before_the_deadline(hotel_policy):
    session, users = hotel_policy
    req = ask(session, "refund_minibar_charge", {"amount": 200})
    with pytest.raises(services.PermissionDenied):
        services.decide(req, approve=True, by=users["fred"])  # not a manager
    services.decide(req, approve=True, by=users["mia"])
    with pytest.raises(TransitionError, match="cannot count twice"):
        services.decide(current(req), approve=True, by=users["mia"])
    done = services.decide(current(req), approve=True, by=users["max"])
    assert (done.status, done.decided_by_label) == (Status.APPROVED, "Mia and Max")
    time.sleep(2.5)  # the deadline task fires, finds it decided, and does nothing
    assert current(req).status == Status.APPROVED
    assert AuditEvent.objects.filter(request=req, kind__in=[Kind.EXPIRED, Kind.ESCALATED]).count() == 0


def test_one_approval_of_two_is_not_enough_when_the_deadline_passes(hotel_policy):
    session, users = hotel_policy
    req = ask(session, "refund_minibar_charge", {"amount": 300})
    services.decide(req, approve=True, by=users["mia"])
    done = settled(req)
    assert done.status == Status.EXPIRED and [v["label"] for v in done.votes] == ["Mia"]


def test_each_deadline_action_deny_and_approve(hotel_policy):
    session, _ = hotel_policy
    wake, late = ask(session, "wake_up_call"), ask(session, "extend_checkout")
    wake, late = settled(wake), settled(late)
    # The worker applies the deadline a moment after it passes: the wait the guest hears is real.
    assert (wake.status, wake.approve) == (Status.EXPIRED, False)
    assert re.fullmatch(
        r"Nobody from the staff could confirm this in time \(waited \d s\), so it was not done\.", wake.reason
    )
    assert (late.status, late.approve) == (Status.APPROVED, True)
    assert re.fullmatch(
        r"Nobody from the staff answered in time \(waited \d s\); the hotel's rules allow this without a "
        r"confirmation, so it was done\.",
        late.reason,
    )
    # Both answers are in the outbox for the relay.
    assert set(ApprovalRequest.objects.unsent_decisions().values_list("pk", flat=True)) >= {wake.pk, late.pk}


def test_an_escalation_chain_of_three_runs_out_step_by_step(hotel_policy):
    session, _ = hotel_policy
    req = ask(session, "comp_room", {"room": "1204"})
    seen = [(req.stage, tuple(req.audience_groups))]
    give_up = time.monotonic() + 15
    while True:
        r = current(req)
        if (r.stage, tuple(r.audience_groups)) != seen[-1] and r.status == Status.PENDING:
            seen.append((r.stage, tuple(r.audience_groups)))
        if r.status != Status.PENDING:
            break
        assert time.monotonic() < give_up, f"the chain did not end; steps seen: {seen}"
        time.sleep(0.05)
    assert seen == [(0, ("front-desk",)), (1, ("managers",)), (2, ("general-managers",))]
    assert r.status == Status.EXPIRED and r.reason.startswith(
        "Nobody from the staff could confirm this in time (waited "
    )
    assert "chain" not in r.reason  # the rule's label stays in the audit record
    kinds = list(AuditEvent.objects.filter(request=req).order_by("seq").values_list("kind", flat=True))
    assert kinds == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.NOTIFIED, Kind.ESCALATED, Kind.ESCALATED, Kind.EXPIRED]
    # Each step lasted its own second, measured by the worker, not by us.
    escalations = AuditEvent.objects.filter(request=req, kind=Kind.ESCALATED).order_by("seq")
    assert [e.payload["to_groups"] for e in escalations] == [["managers"], ["general-managers"]]
    assert r.decided_at is not None
    span = (r.decided_at - r.created_at).total_seconds()
    assert 3.0 <= span < 10


def test_the_last_group_of_the_chain_can_still_decide(hotel_policy):
    session, users = hotel_policy
    req = ask(session, "comp_room")
    third = wait_until(lambda: (r := current(req)).stage == 2 and r, 10, "the third step")
    with pytest.raises(services.PermissionDenied):
        services.decide(third, approve=True, by=users["mia"])  # managers had their turn
    done = services.decide(third, approve=True, by=users["gus"], reason="Comped by the GM")
    assert (done.status, done.decided_by_label, done.stage) == (Status.APPROVED, "Gus", 2)
