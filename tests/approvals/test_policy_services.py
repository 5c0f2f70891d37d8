"""Policies through approvals/services.py: what open_request does with each outcome, who may
decide, quorum and separation of duties, deadline actions, versions, import and drift."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

from approvals import policy, services
from approvals.consumers import DashboardConsumer
from approvals.models import ApprovalRequest, AuditKind, McpTool, PolicyRule, PolicyVersion
from approvals.services import TransitionError
from audit.models import AuditEvent

Status = ApprovalRequest.Status
Kind = AuditKind

POLICY = """
rules:
  - label: small-refunds
    server: hotel
    tool: refund_*
    when: args.amount <= 50
    outcome: allow
    reason: Small refunds are fine.
  - label: large-refunds
    server: hotel
    tool: refund_*
    when: args.amount > 100.0 && session.room.startsWith("12")
    outcome: ask
    approvers: [managers]
    quorum: 2
    deadline_seconds: 120
    on_deadline: escalate
    escalations:
      - approvers: general-managers
        deadline_seconds: 60
        on_deadline: deny
  - label: no-doors
    tool: unlock_door
    outcome: deny
    reason: Doors are opened by the front desk in person.
  - label: late-checkout
    tool: extend_checkout
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 30
    on_deadline: approve
"""


@pytest.fixture
def people(db, django_user_model, password):
    groups = {name: Group.objects.create(name=name) for name in ("managers", "general-managers", "front-desk")}

    def staff(username: str, *group_names: str, **extra):
        user = django_user_model.objects.create_user(
            username, password=password, is_staff=True, first_name=username.title(), **extra
        )
        user.groups.set([groups[g] for g in group_names])
        return user

    return {
        "mia": staff("mia", "managers"),
        "max": staff("max", "managers"),
        "gus": staff("gus", "general-managers"),
        "fred": staff("fred", "front-desk"),
        "root": staff("root", is_superuser=True),
    }


@pytest.fixture
def policies(people):
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    return services.import_policies(POLICY, by=people["root"], source="test")


def refund(make_request, amount, **kw):
    return make_request(
        name="refund_minibar_charge", arguments=json.dumps({"booking_id": "B1", "amount": amount}), **kw
    )


def kinds(req: ApprovalRequest | None) -> list[str]:
    return list(AuditEvent.objects.filter(request=req).order_by("seq").values_list("kind", flat=True))


def test_allow_decides_at_once_and_sends_the_approval(
    policies, make_request, effects, scheduled, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        req = refund(make_request, 20)
    assert (req.status, req.decided_by_label, req.reason) == (
        Status.APPROVED,
        "policy (small-refunds)",
        "Small refunds are fine.",
    )
    assert (req.rule_label, req.policy_version, req.policy_outcome) == ("small-refunds", policies.number, "allow")
    assert kinds(req) == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.DECIDED]
    routed = AuditEvent.objects.get(request=req, kind=Kind.POLICY_ROUTED)
    assert routed.payload["rule"] == "small-refunds" and routed.payload["version"] == policies.number
    assert effects.relay == [(req.session_id, req.pk)]  # the relay sends it upstream at once
    assert scheduled.calls == []  # no deadline for a decided request
    assert req.approve is True


def test_deny_decides_at_once_with_the_rules_reason(
    policies, make_request, effects, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        req = make_request(name="unlock_door", arguments='{"room": "1204"}')
    assert (req.status, req.reason, req.rule_label) == (
        Status.DENIED,
        "Doors are opened by the front desk in person.",
        "no-doors",
    )
    assert req.approve is False and effects.relay == [(req.session_id, req.pk)]


def test_a_condition_routes_a_large_refund_to_managers_with_a_deadline(
    policies, make_request, scheduled, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        req = refund(make_request, 200)
    assert (req.status, req.rule_label, req.audience_groups, req.quorum) == (
        Status.PENDING,
        "large-refunds",
        ["managers"],
        2,
    )
    assert req.deadline - req.created_at == timedelta(seconds=120)
    assert scheduled.calls and scheduled.calls[0][0] == (req.pk,)
    assert req.to_dict()["policy"]["quorum_label"] == "0 of 2 managers"


def test_a_refund_between_the_rules_falls_to_the_default(policies, make_request, settings):
    req = refund(make_request, 75)
    assert (req.status, req.rule_label, req.audience, req.quorum) == (Status.PENDING, "", "", 1)
    assert req.deadline - req.created_at == timedelta(seconds=settings.APPROVAL_TIMEOUT_SECONDS)


def test_only_the_named_groups_and_superusers_may_decide(policies, make_request, people):
    req = refund(make_request, 200)
    for outsider in (people["fred"], people["gus"]):
        with pytest.raises(PermissionDenied, match=r"Only members of managers may decide this request\."):
            services.decide(req, approve=False, by=outsider)
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING
    assert services.decide(req, approve=False, by=people["root"], reason="No").status == Status.DENIED


def test_the_two_person_rule_needs_two_different_managers(
    policies, make_request, people, effects, django_capture_on_commit_callbacks
):
    req = refund(make_request, 200)
    with django_capture_on_commit_callbacks(execute=True):
        after_first = services.decide(req, approve=True, by=people["mia"])
    assert after_first.status == Status.PENDING
    assert after_first.to_dict()["policy"]["quorum_label"] == "1 of 2 managers"
    assert effects.relay == []  # nothing goes upstream yet
    with pytest.raises(TransitionError, match="the same person cannot count twice"):
        services.decide(after_first, approve=True, by=people["mia"])
    with django_capture_on_commit_callbacks(execute=True):
        done = services.decide(after_first, approve=True, by=people["max"], reason="Both checked")
    assert (done.status, done.decided_by, done.decided_by_label) == (Status.APPROVED, people["max"], "Mia and Max")
    assert kinds(done) == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.VOTED, Kind.DECIDED]
    assert AuditEvent.objects.get(request=done, kind=Kind.VOTED).actor == people["mia"]
    assert effects.relay == [(req.session_id, req.pk)]


def test_one_denial_decides_even_when_a_quorum_is_needed(policies, make_request, people):
    req = refund(make_request, 200)
    services.decide(req, approve=True, by=people["mia"])
    done = services.decide(ApprovalRequest.objects.get(pk=req.pk), approve=False, by=people["max"], reason="No")
    assert (done.status, done.decided_by_label) == (Status.DENIED, "Max")


def test_a_superuser_counts_once_toward_a_quorum(policies, make_request, people):
    req = refund(make_request, 200)
    services.decide(req, approve=True, by=people["root"])
    with pytest.raises(TransitionError):
        services.decide(ApprovalRequest.objects.get(pk=req.pk), approve=True, by=people["root"])
    assert (
        services.decide(ApprovalRequest.objects.get(pk=req.pk), approve=True, by=people["mia"]).status
        == Status.APPROVED
    )


def test_the_deadline_escalates_then_denies(
    policies, make_request, people, scheduled, django_capture_on_commit_callbacks
):
    req = refund(make_request, 200)
    services.decide(req, approve=True, by=people["mia"])  # one of two: not enough
    with django_capture_on_commit_callbacks(execute=True):
        escalated = services.expire_request(req.pk, now=req.deadline)
    assert escalated is not None
    assert (escalated.status, escalated.stage, escalated.audience_groups, escalated.quorum) == (
        Status.PENDING,
        1,
        ["general-managers"],
        1,
    )
    assert escalated.deadline == req.deadline + timedelta(seconds=60)
    assert scheduled.calls[-1][0] == (req.pk,)  # the next step's deadline task
    assert escalated.to_dict()["policy"]["votes"] == []  # the count starts again in the new step
    with pytest.raises(PermissionDenied):
        services.decide(escalated, approve=True, by=people["max"])
    final = services.expire_request(req.pk, now=escalated.deadline)
    assert (final.status, final.decided_by_label) == (Status.EXPIRED, "deadline")
    # The guest hears the whole wait over both steps (120 s + 60 s), never the rule's label.
    assert final.reason == "Nobody from the staff could confirm this in time (waited 3 min), so it was not done."
    # The rule and the step stay in the audit record.
    row = AuditEvent.objects.get(request=final, kind=Kind.EXPIRED)
    assert row.payload["record"] == "No decision within 60 s at step 2: denied by deadline (rule large-refunds)"
    assert (row.payload["rule"], row.payload["waited_seconds"]) == ("large-refunds", 180)
    assert kinds(final)[-3:] == [Kind.VOTED, Kind.ESCALATED, Kind.EXPIRED]


def test_the_deadline_can_approve(policies, make_request):
    req = make_request(name="extend_checkout", arguments='{"until": "14:00"}')
    done = services.expire_request(req.pk, now=req.deadline)
    assert (done.status, done.decided_by_label, done.approve) == (Status.APPROVED, "deadline", True)
    assert done.reason == (
        "Nobody from the staff answered in time (waited 30 s); the hotel's rules allow this without a "
        "confirmation, so it was done."
    )


def test_a_stale_page_cannot_decide_a_step_that_moved_on(policies, make_request, people):
    req = refund(make_request, 200)
    services.expire_request(req.pk, now=req.deadline)
    # `req` still says step 0 (managers); the database says general-managers now.
    with pytest.raises(PermissionDenied):
        services.decide(req, approve=False, by=people["mia"])
    assert services.decide(req, approve=True, by=people["gus"]).status == Status.APPROVED


def test_queues_show_each_person_what_their_groups_may_decide(policies, make_request, people):
    large = refund(make_request, 200)
    late = make_request(name="extend_checkout", arguments="{}")
    anyone = make_request(name="lookup_booking", arguments="{}")
    queue = ApprovalRequest.objects.queue()
    assert set(queue.visible_to(people["mia"])) == {large, anyone}
    assert set(queue.visible_to(people["fred"])) == {late, anyone}
    assert set(queue.visible_to(people["gus"])) == {anyone}
    assert set(queue.visible_to(people["root"])) == {large, late, anyone}


@pytest.mark.django_db(transaction=True)
async def test_dashboards_get_only_their_requests_and_see_escalated_ones_stamped(people_async):
    mia, gus, req = people_async
    from asgiref.sync import sync_to_async

    async def connect(user):
        communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
        communicator.scope["user"] = user  # type: ignore[typeddict-unknown-key]
        connected, _ = await communicator.connect()
        assert connected
        return communicator

    async def next_frame(communicator):
        while True:  # who is online is not what this test is about
            frame = await communicator.receive_json_from()
            if frame["type"] != "presence":
                return frame

    mia_ws, gus_ws = await connect(mia), await connect(gus)
    assert [r["id"] for r in (await next_frame(mia_ws))["requests"]] == [req.pk]
    assert (await next_frame(gus_ws))["requests"] == []

    await sync_to_async(services.expire_request)(req.pk, now=req.deadline)  # escalates to gus's group
    # Mia's group decided it before: her card is stamped "Escalated to general-managers" instead
    # of vanishing (the request, with the group it went to).
    frame = await next_frame(mia_ws)
    assert frame["type"] == "request_escalated" and frame["request"]["id"] == req.pk
    assert frame["request"]["policy"]["groups"] == ["general-managers"]
    frame = await next_frame(gus_ws)
    assert frame["type"] == "request_changed" and frame["request"]["policy"]["groups"] == ["general-managers"]
    await mia_ws.disconnect()
    await gus_ws.disconnect()


@pytest.fixture
def people_async(transactional_db, django_user_model, monkeypatch):
    monkeypatch.setattr("approvals.tasks.expire_request.apply_async", lambda *a, **k: None)
    managers, gms = Group.objects.create(name="managers"), Group.objects.create(name="general-managers")
    Group.objects.create(name="front-desk")
    mia = django_user_model.objects.create_user("mia", is_staff=True)
    mia.groups.add(managers)
    gus = django_user_model.objects.create_user("gus", is_staff=True)
    gus.groups.add(gms)
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=None, source="test")
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    req, _ = services.open_request(
        session=session,
        upstream_id="mcpr_esc",
        server_label="hotel",
        tool_name="refund_minibar_charge",
        arguments='{"amount": 500}',
        raw_item={},
    )
    return mia, gus, req


# Versions, import, export ------------------------------------------------------------------------


def test_every_change_is_a_version_with_who_when_and_what(policies, people):
    assert (policies.number, policies.created_by, policies.source) == (1, people["root"], "test")
    assert policies.changes[0].startswith("added rule small-refunds")
    again = services.import_policies(POLICY, by=people["root"], source="test")
    assert again is None  # nothing changed, no new version
    changed = services.import_policies(POLICY.replace("quorum: 2", "quorum: 3"), by=people["mia"], source="file")
    assert (changed.number, changed.created_by, changed.changes) == (
        2,
        people["mia"],
        ["rule large-refunds: quorum 2 → 3"],
    )
    audit = AuditEvent.objects.filter(kind=Kind.POLICY_CHANGED).order_by("seq").last()
    assert audit.payload == {"version": 2, "source": "file", "changes": ["rule large-refunds: quorum 2 → 3"]}
    assert audit.actor == people["mia"]
    assert PolicyRule.objects.get(label="large-refunds").quorum == 3


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rules:\n  - label: a\n    tool: [oops\n", "not valid YAML: line 4, column 1"),
        (
            "rules:\n  - {label: a, tool: x, outcome: allow, when: 'args.amount >'}\n",
            "rules[0] (a).when: Line 1, column 14",
        ),
        ("rules:\n  - {label: a, tool: x, outcome: ask, approvers: [nobody]}\n", "there is no group named 'nobody'"),
    ],
)
def test_a_bad_import_changes_nothing(policies, text, error):
    before = (list(PolicyRule.objects.values_list("label", flat=True)), PolicyVersion.objects.count())
    audit_rows = AuditEvent.objects.count()
    with pytest.raises(policy.PolicyError) as caught:
        services.import_policies(text, by=None, source="bad")
    assert any(error in e for e in caught.value.errors), caught.value.errors
    assert (list(PolicyRule.objects.values_list("label", flat=True)), PolicyVersion.objects.count()) == before
    assert AuditEvent.objects.count() == audit_rows


def test_export_then_import_is_no_change(policies):
    text = policy.dump_yaml(policy.current_document())
    assert services.import_policies(text, by=None, source="round trip") is None


def test_requests_keep_the_version_that_routed_them(policies, make_request):
    first = refund(make_request, 200)
    services.import_policies(POLICY.replace("quorum: 2", "quorum: 3"), by=None, source="file")
    second = refund(make_request, 200)
    assert (first.policy_version, first.quorum) == (1, 2)
    assert (second.policy_version, second.quorum) == (2, 3)


# Drift -------------------------------------------------------------------------------------------


def test_a_changed_tool_seen_in_a_listing_suspends_its_allow_rule(people, make_request):
    server, _ = services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    definition = {
        "name": "lookup_booking",
        "description": "Find a booking",
        "input_schema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
    }
    McpTool.objects.create(
        server=server,
        name="lookup_booking",
        definition=definition,
        definition_hash=services.tool_definition_hash(definition),
    )
    services.import_policies("rules:\n  - {label: lookups, tool: 'lookup_*', outcome: allow}\n", by=None, source="t")
    assert make_request(name="lookup_booking", arguments="{}").status == Status.APPROVED

    same = [
        {
            "name": "lookup_booking",
            "description": "Find a booking",
            "input_schema": {"type": "object"},
            "annotations": {"read_only": True},
        }
    ]
    assert services.observe_listed_tools(server_label="hotel", tools=same) == []
    changed = [{**same[0], "description": "Find a booking. Also cancels it if asked."}]
    assert services.observe_listed_tools(server_label="hotel", tools=changed) == ["lookup_booking"]
    tool = McpTool.objects.get(name="lookup_booking")
    assert tool.needs_review and tool.previous_definition == definition
    assert AuditEvent.objects.filter(kind=Kind.TOOL_DRIFTED).count() == 1

    req = make_request(name="lookup_booking", arguments="{}")
    assert (req.status, req.rule_label) == (Status.PENDING, "lookups")
    assert "definition changed" in AuditEvent.objects.get(request=req, kind=Kind.POLICY_ROUTED).payload["note"]
    assert policy.upstream_tools()[0]["require_approval"] == "always"

    services.mark_tool_reviewed(tool, by=people["root"])
    assert make_request(name="lookup_booking", arguments="{}").status == Status.APPROVED
    # A later probe that finds the same change sees nothing new to review.
    probed = {**definition, "description": "Find a booking. Also cancels it if asked."}
    from django.utils import timezone

    assert services.store_tools(server, [probed], now=timezone.now()) == []


@pytest.mark.django_db(transaction=True)
def test_three_managers_approving_at_once_make_one_decision_with_two_distinct_approvers(
    django_user_model, effects, monkeypatch
):
    import threading

    from django.db import connection

    monkeypatch.setattr("approvals.tasks.expire_request.apply_async", lambda *a, **k: None)
    managers = Group.objects.create(name="managers")
    trio = []
    for name in ("mia", "max", "moe"):
        user = django_user_model.objects.create_user(name, is_staff=True, first_name=name.title())
        user.groups.add(managers)
        trio.append(user)
    services.import_policies(
        "rules:\n  - {label: two, tool: '*', outcome: ask, approvers: managers, quorum: 2}\n", by=None, source="t"
    )
    session = services.open_session(kind="relay", label="Room 1204", metadata={})
    req, _ = services.open_request(
        session=session, upstream_id="mcpr_q", server_label="hotel", tool_name="t", arguments="{}", raw_item={}
    )
    barrier = threading.Barrier(3)
    outcomes: dict[str, str] = {}

    def click(user):
        try:
            barrier.wait()
            result = services.decide(ApprovalRequest.objects.get(pk=req.pk), approve=True, by=user)
            outcomes[user.username] = result.status
        except TransitionError:
            outcomes[user.username] = "told"
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(user,)) for user in trio]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    # The row lock counts them in turn: one vote, then the decision; the third is told.
    assert sorted(outcomes.values()) == ["approved", "pending", "told"]
    req.refresh_from_db()
    assert req.status == Status.APPROVED and len(req.votes) == 2
    assert len({v["user_id"] for v in req.votes}) == 2
    assert AuditEvent.objects.filter(request=req, kind=Kind.DECIDED).count() == 1
    assert AuditEvent.objects.filter(request=req, kind=Kind.VOTED).count() == 1
    assert len(effects.relay) == 1
