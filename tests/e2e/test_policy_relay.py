"""Policies end to end: the official SDK as the guest's device, through the relay on Daphne, the
simulator standing in for OpenAI, the hotel MCP server, a Celery worker, staff deciding over
HTTP. The rules are compiled into the session OpenAI receives (an allowed tool never asks),
a CEL condition decides refunds by amount, and a two-person rule needs two managers."""

from __future__ import annotations

import time

import httpx
import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import ApprovalRequest, McpServer
from audit.models import AuditEvent
from tests.e2e.test_browser_approval import SIM_KEY, Guest, sim_url  # noqa: F401 (a fixture)
from tests.e2e.test_relay_processes import Staff, wait_until

pytestmark = pytest.mark.e2e
Status = ApprovalRequest.Status

POLICY = """
rules:
  - {label: status-lookups, server: hotel, tool: get_room_status, outcome: allow}
  - label: small-refunds
    server: hotel
    tool: issue_refund
    when: args.amount <= 50.0
    outcome: allow
    reason: Small goodwill refunds need no sign-off.
  - label: large-refunds
    server: hotel
    tool: issue_refund
    when: args.amount > 100.0 && session.room.startsWith("12")
    outcome: ask
    approvers: [managers]
    quorum: 2
    deadline_seconds: 60
    on_deadline: deny
"""


@pytest.fixture
def hotel_stack(stack, sim_url, hotel_mcp, django_user_model, password, tmp_path):  # noqa: F811
    hotel_mcp.reset()
    managers = Group.objects.create(name="managers")
    for username in ("mia", "max"):
        user = django_user_model.objects.create_user(username, password=password, is_staff=True)
        user.first_name = username.title()
        user.save()
        user.groups.add(managers)
    django_user_model.objects.create_user("fred", password=password, is_staff=True)
    server, _ = services.register_mcp_server(label="hotel", url=hotel_mcp.mcp_url, headers=hotel_mcp.headers)
    assert services.probe_mcp_server(server, by=None).ok  # the registry learns the tools
    services.import_policies(POLICY, by=None, source="test")
    env = {"OPENAI_BASE_URL": sim_url, "OPENAI_API_KEY": SIM_KEY}
    web = stack.web(**env)
    stack.worker(**env)
    stack.beat(tmp_path / "beat-schedule", **env)
    return web, hotel_mcp


def guest_says(web_url: str, command: str) -> Guest:
    _, token = services.issue_token(label="Room 1204", metadata={"room": "1204"})
    guest = Guest(web_url, token, command)
    guest.start()
    return guest


def done(guest: Guest, timeout: float = 30) -> None:
    assert guest.finished.wait(timeout), "the guest's conversation did not finish"
    assert guest.error is None, guest.error


def items(guest: Guest, kind: str) -> list:
    return [item for _, item in guest.items(kind)]


def sim_approvals(sim: str) -> list[dict]:
    return httpx.get(f"{sim.removesuffix('/v1')}/sim/approvals", headers={"Authorization": f"Bearer {SIM_KEY}"}).json()[
        "data"
    ]


def test_an_allowed_tool_runs_with_no_approval_round_trip_and_is_still_recorded(hotel_stack, sim_url):  # noqa: F811
    web, _hotel = hotel_stack
    guest = guest_says(web.url, 'call hotel get_room_status {"room": "1204"}')
    done(guest)
    # OpenAI received the compiled entry: get_room_status in require_approval.never.
    assert items(guest, "mcp_approval_request") == []
    (call,) = items(guest, "mcp_call")
    assert call.name == "get_room_status" and call.approval_request_id is None and call.output
    assert sim_approvals(sim_url) == []
    # Recorded anyway, for the reviewers: approved by the rule, with what ran.
    req = wait_until(lambda: ApprovalRequest.objects.filter(tool_name="get_room_status").first())
    assert (req.status, req.rule_label, req.policy_outcome, req.decision_sent_at is not None) == (
        Status.APPROVED,
        "status-lookups",
        "allow",
        True,
    )
    assert req.call_output == call.output
    assert ApprovalRequest.objects.unsent_decisions().count() == 0


def test_a_condition_approves_a_refund_of_20_at_once(hotel_stack, sim_url):  # noqa: F811
    web, hotel = hotel_stack
    guest = guest_says(
        web.url, 'call hotel issue_refund {"room": "1204", "amount": 20, "currency": "EUR", "reason": "Noisy AC"}'
    )
    done(guest)
    (asked,) = items(guest, "mcp_approval_request")
    req = ApprovalRequest.objects.get(upstream_id=asked.id)
    assert (req.status, req.rule_label, req.decided_by_label) == (
        Status.APPROVED,
        "small-refunds",
        "policy (small-refunds)",
    )
    (answer,) = sim_approvals(sim_url)
    assert (answer["approval_request_id"], answer["approve"]) == (asked.id, True)
    refunds = [a for a in hotel.state()["activity"] if a["action"] == "issue_refund"]
    assert [r["amount"] for r in refunds] == [20.0]
    assert wait_until(lambda: ApprovalRequest.objects.get(pk=req.pk).call_recorded_at)


def test_a_refund_of_200_goes_to_managers_and_needs_two_different_ones(hotel_stack, sim_url, password):  # noqa: F811
    web, hotel = hotel_stack
    guest = guest_says(
        web.url, 'call hotel issue_refund {"room": "1204", "amount": 200, "currency": "EUR", "reason": "Broken TV"}'
    )
    req = wait_until(lambda: ApprovalRequest.objects.filter(tool_name="issue_refund").first(), 20, "the request")
    assert (req.status, req.rule_label, req.audience_groups, req.quorum) == (
        Status.PENDING,
        "large-refunds",
        ["managers"],
        2,
    )

    # Someone outside the group may not; one manager is not enough, nor twice the same one.
    assert Staff(web.url, "fred", password).decide(req.pk, "approve").status_code == 403
    mia = Staff(web.url, "mia", password)
    first = mia.decide(req.pk, "approve", "Checked the TV")
    assert first.status_code == 200 and first.json()["request"]["policy"]["quorum_label"] == "1 of 2 managers"
    again = mia.decide(req.pk, "approve")
    assert again.status_code == 409 and "cannot count twice" in again.json()["error"]
    time.sleep(0.5)
    assert sim_approvals(sim_url) == []  # nothing went upstream on one approval
    assert not [a for a in hotel.state()["activity"] if a["action"] == "issue_refund"]

    second = Staff(web.url, "max", password).decide(req.pk, "approve", "Agreed")
    assert second.status_code == 200 and second.json()["request"]["status"] == "approved"
    done(guest)
    (answer,) = sim_approvals(sim_url)
    assert (answer["approval_request_id"], answer["approve"]) == (req.upstream_id, True)
    refunds = [a for a in hotel.state()["activity"] if a["action"] == "issue_refund"]
    assert [r["amount"] for r in refunds] == [200.0]
    req = ApprovalRequest.objects.get(pk=req.pk)
    assert req.decided_by_label == "Mia and Max"
    kinds = list(AuditEvent.objects.filter(request=req).order_by("seq").values_list("kind", flat=True))
    assert kinds[:2] == ["requested", "policy_routed"] and "voted" in kinds and "decided" in kinds


def test_the_session_receives_the_compiled_tool_entry(hotel_stack):
    from approvals import policy

    (entry,) = policy.upstream_tools([McpServer.objects.get(label="hotel")])
    assert entry["require_approval"] == {"never": {"tool_names": ["get_room_status"]}}
    assert "allowed_tools" not in entry  # no tool is always denied
