"""Decisions beyond yes and no (issue 14): approve with changes, grants for a session or a guest
(used, expired, revoked, voided by drift), approve all of one turn. Through the real services,
with the personas; what leaves the process is recorded (effects)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, AuditKind, Grant, RealtimeSession
from audit.models import AuditEvent

Status = ApprovalRequest.Status
REFUND = "issue_refund"
REFUND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"room": {"type": "string"}, "amount": {"type": "number", "maximum": 500}},
    "required": ["room", "amount"],
    "additionalProperties": False,
}
POLICY = """
rules:
  - label: refunds
    server: hotel
    tool: issue_refund
    outcome: ask
    grants: [session, guest]
    grant_max_minutes: 30
  - label: doors
    server: hotel
    tool: unlock_door
    outcome: ask
    grants: []
  - label: two-person
    server: hotel
    tool: wire_money
    outcome: ask
    quorum: 2
"""


@pytest.fixture
def hotel(db):
    server, _ = services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    definitions = [{"name": REFUND, "description": "Refund a charge", "input_schema": REFUND_SCHEMA}]
    services.store_tools(server, definitions, now=timezone.now())
    services.import_policies(POLICY, by=None, source="test")
    return server


def refund(make_request, amount=48, room="1204", **kw):
    return make_request(name=REFUND, arguments=json.dumps({"room": room, "amount": amount}), **kw)


def kinds(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("seq").values_list("kind", flat=True))


# Approve with changes --------------------------------------------------------------------------


def test_it_approves_with_changes_as_a_denial_that_asks_for_exactly_the_new_arguments(
    hotel, make_request, alice, effects, django_capture_on_commit_callbacks
):
    req = refund(make_request, 48)
    with django_capture_on_commit_callbacks(execute=True):
        done = services.decide(req, approve=True, by=alice, arguments='{"amount": 30, "room": "1204"}')
    assert done.status == Status.DENIED and done.approve is False
    assert done.edited_arguments == '{"amount":30,"room":"1204"}'
    assert done.outcome_label == "Approved with changes"
    assert done.changes == {"old": {"room": "1204", "amount": 48}, "new": {"amount": 30, "room": "1204"}}
    # Upstream: a denial whose reason names the exact arguments to call again with.
    assert effects.decisions[-1]["approve"] is False
    assert '{"amount":30,"room":"1204"}' in effects.decisions[-1]["reason"]
    decided = AuditEvent.objects.get(request_id=req.pk, kind=AuditKind.DECIDED).payload
    assert decided["approved_with_changes"] is True and decided["asked_arguments"] == req.arguments
    grant = Grant.objects.get(source_request=req)
    assert grant.scope == Grant.Scope.CALL and grant.uses_left == 1
    assert AuditKind.GRANT_CREATED in kinds(request_id=req.pk)


def test_the_matching_follow_up_runs_without_a_card_and_only_once(hotel, make_request, alice, effects):
    req = refund(make_request, 48)
    services.decide(req, approve=True, by=alice, arguments='{"room": "1204", "amount": 30}')
    # Same arguments, other key order and spacing: the canonical digest matches.
    follow = refund(make_request, 30)
    assert follow.status == Status.APPROVED and follow.grant is not None
    assert follow.decided_by_label.startswith(f"grant #{follow.grant.pk} (Alice")
    assert kinds(request_id=follow.pk) == ["requested", "policy_routed", "decided", "grant_used"]
    used = AuditEvent.objects.get(request_id=follow.pk, kind=AuditKind.GRANT_USED).payload
    assert used["grant"] == follow.grant.pk and used["source_request"] == req.pk
    # Used up: the same call again asks a person.
    again = refund(make_request, 30)
    assert again.status == Status.PENDING and again.grant is None
    assert Grant.objects.get().state() == "used"


def test_a_different_follow_up_asks(hotel, make_request, alice):
    services.decide(refund(make_request, 48), approve=True, by=alice, arguments='{"room": "1204", "amount": 30}')
    assert refund(make_request, 31).status == Status.PENDING
    assert refund(make_request, 30, room="1205").status == Status.PENDING


def test_the_follow_up_must_come_in_the_same_session(hotel, make_request, alice):
    services.decide(refund(make_request, 48), approve=True, by=alice, arguments='{"room": "1204", "amount": 30}')
    other = services.open_session(kind="relay", label="Room 1204 again", metadata={"room": "1204"})
    assert refund(make_request, 30, session=other).status == Status.PENDING


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"room": "1204", "amount": 900}', "amount: 900 is greater than the maximum of 500"),
        ('{"room": "1204"}', "'amount' is a required property"),
        ('{"room": "1204", "amount": 30, "tip": 5}', "Additional properties are not allowed"),
        ('{"amount": 48, "room": "1204"}', "unchanged"),
    ],
)
def test_edits_that_do_not_fit_the_tool_are_refused_and_change_nothing(hotel, make_request, alice, arguments, message):
    req = refund(make_request, 48)
    with pytest.raises(ValueError, match=message):
        services.decide(req, approve=True, by=alice, arguments=arguments)
    req.refresh_from_db()
    assert req.status == Status.PENDING and not Grant.objects.exists()
    assert AuditKind.DECIDED not in kinds(request_id=req.pk)


def test_only_who_may_decide_may_edit_and_never_under_a_quorum(hotel, make_request, alice, charlie):
    req = refund(make_request, 48)
    with pytest.raises(PermissionDenied):
        services.decide(req, approve=True, by=charlie, arguments='{"room": "1204", "amount": 30}')
    with pytest.raises(ValueError, match="Only an approval"):
        services.decide(req, approve=False, by=alice, arguments='{"room": "1204", "amount": 30}')
    wire = make_request(name="wire_money", arguments='{"amount": 5}')
    with pytest.raises(ValueError, match="more than one approver"):
        services.decide(wire, approve=True, by=alice, arguments='{"amount": 4}')
    assert not Grant.objects.exists()


# Scopes ----------------------------------------------------------------------------------------


def test_a_session_grant_approves_the_tool_for_the_rest_of_the_session(hotel, make_request, alice, session):
    req = refund(make_request, 48)
    done = services.decide(req, approve=True, by=alice, scope="session")
    assert done.status == Status.APPROVED
    grant = Grant.objects.get(source_request=req)
    assert grant.scope == "session" and grant.uses_left is None and grant.expires_at is None
    first, second = refund(make_request, 10), refund(make_request, 99, room="1205")
    assert first.status == second.status == Status.APPROVED
    grant.refresh_from_db()
    assert grant.used_count == 2
    # Another tool, another session: asked.
    assert make_request(name="unlock_door", arguments='{"room": "1204"}').status == Status.PENDING
    other = services.open_session(kind="relay", label="Room 1300", metadata={"room": "1300"})
    assert refund(make_request, 10, session=other).status == Status.PENDING


def test_a_grant_bound_to_arguments_approves_only_calls_with_them(hotel, make_request, alice):
    services.decide(refund(make_request, 48), approve=True, by=alice, scope="session", constraints={"room": "1204"})
    assert refund(make_request, 10).status == Status.APPROVED
    assert refund(make_request, 10, room="1205").status == Status.PENDING


def test_a_guest_grant_follows_the_room_into_another_session_until_it_expires(hotel, make_request, alice):
    req = refund(make_request, 48)
    services.decide(req, approve=True, by=alice, scope="guest", minutes=10)
    grant = Grant.objects.get()
    assert (grant.subject_key, grant.subject_value) == ("room", "1204")
    later = services.open_session(kind="relay", label="Room 1204 later", metadata={"room": "1204"})
    assert refund(make_request, 10, session=later).status == Status.APPROVED
    elsewhere = services.open_session(kind="relay", label="Room 1300", metadata={"room": "1300"})
    assert refund(make_request, 10, session=elsewhere).status == Status.PENDING
    # Expired: asked again.
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert refund(make_request, 10, session=later).status == Status.PENDING
    assert Grant.objects.get().state() == "expired"


def test_grants_stay_within_what_the_rule_allows(hotel, make_request, alice):
    req = refund(make_request, 48)
    with pytest.raises(ValueError, match="from 1 to 30 minutes"):
        services.decide(req, approve=True, by=alice, scope="guest", minutes=31)
    with pytest.raises(ValueError, match="no argument 'floor'"):
        services.decide(req, approve=True, by=alice, scope="session", constraints={"floor": "12"})
    door = make_request(name="unlock_door", arguments='{"room": "1204"}')
    with pytest.raises(ValueError, match="does not allow that grant"):
        services.decide(door, approve=True, by=alice, scope="session")
    assert not Grant.objects.exists()
    assert ApprovalRequest.objects.filter(status=Status.PENDING).count() == 2


def test_a_revoked_grant_approves_nothing_more_and_the_audit_says_who(hotel, make_request, alice, bob, charlie):
    req = refund(make_request, 48)
    services.decide(req, approve=True, by=alice, scope="session")
    grant = Grant.objects.get()
    with pytest.raises(PermissionDenied):
        services.revoke_grant(grant, by=charlie)
    assert services.revoke_grant(grant, by=bob) is True
    assert services.revoke_grant(grant, by=bob) is False  # once
    assert refund(make_request, 10).status == Status.PENDING
    row = AuditEvent.objects.get(kind=AuditKind.GRANT_REVOKED)
    assert row.actor == bob and row.request_id == req.pk and row.payload["grant"] == grant.pk


def test_a_drifted_tool_voids_its_grants(hotel, make_request, alice):
    services.decide(refund(make_request, 48), approve=True, by=alice, scope="session")
    changed = {**REFUND_SCHEMA, "properties": {**REFUND_SCHEMA["properties"], "note": {"type": "string"}}}
    flagged = services.observe_listed_tools(
        server_label="hotel", tools=[{"name": REFUND, "description": "Refund a charge", "input_schema": changed}]
    )
    assert flagged == [REFUND]
    grant = Grant.objects.get()
    assert grant.state() == "voided" and "definition changed" in grant.void_reason
    assert AuditEvent.objects.filter(kind=AuditKind.GRANT_VOIDED, payload__grant=grant.pk).exists()
    assert refund(make_request, 10).status == Status.PENDING


def test_a_grant_never_overrides_a_rule_that_denies(hotel, make_request, alice):
    services.decide(refund(make_request, 48), approve=True, by=alice, scope="session")
    deny_first = POLICY.replace(
        "rules:\n", "rules:\n  - {label: no-refunds, server: hotel, tool: issue_refund, outcome: deny}\n"
    )
    services.import_policies(deny_first, by=None, source="test")
    assert refund(make_request, 10).status == Status.DENIED
    assert Grant.objects.get().used_count == 0


# One turn, approve all -------------------------------------------------------------------------


def test_requests_of_one_turn_share_it_and_a_guest_line_starts_another(hotel, make_request, session):
    services.add_conversation_line(session=session, role="user", text="refund both please", item_id="u1")
    a, b = refund(make_request, 10), refund(make_request, 20)
    services.add_conversation_line(session=session, role="user", text="and the door", item_id="u2")
    c = make_request(name="unlock_door", arguments='{"room": "1204"}')
    assert a.turn == b.turn != c.turn
    assert a.to_dict()["turn"] == a.turn


def test_approve_all_decides_each_through_the_service_and_says_why_not(hotel, make_request, alice, people_session):
    a = refund(make_request, 10)
    wire = make_request(name="wire_money", arguments='{"amount": 5}')
    started = people_session(alice)
    mine = refund(make_request, 11, session=started)
    results = services.decide_all([a, wire, mine], by=alice, confirmed=True)
    (ra, wa), (rw, ww), (rm, wm) = results
    assert ra.status == Status.APPROVED and wa is None
    # The quorum: counted, still pending (not an error, not decided).
    assert rw.status == Status.PENDING and ww is None and len(rw.votes) == 1
    assert rm.status == Status.PENDING and "You started this session" in (wm or "")
    assert AuditEvent.objects.filter(request_id=a.pk, kind=AuditKind.DECIDED, actor=alice).count() == 1
    assert AuditEvent.objects.filter(request_id=wire.pk, kind=AuditKind.VOTED).count() == 1


@pytest.fixture
def people_session(db):
    def start(user) -> RealtimeSession:
        session = services.open_session(kind="relay", label="Desk test", metadata={"room": "1204"})
        RealtimeSession.objects.filter(pk=session.pk).update(started_by=user, started_by_label=user.first_name)
        session.refresh_from_db()
        return session

    return start


# Over HTTP (the dashboard's fetch calls) -------------------------------------------------------


def test_http_approve_with_changes_and_a_refused_edit(client, hotel, make_request, alice):
    client.force_login(alice)
    req = refund(make_request, 48)
    url = f"/requests/{req.pk}/decide/"
    bad = client.post(url, {"decision": "approve", "arguments": '{"room": "1204", "amount": "thirty"}'})
    assert bad.status_code == 400 and "do not fit the tool" in bad.json()["error"]
    ok = client.post(url, {"decision": "approve", "arguments": '{"room": "1204", "amount": 30}'})
    assert ok.status_code == 200
    body = ok.json()["request"]
    assert body["status"] == "denied" and body["changes"]["new"] == {"amount": 30, "room": "1204"}


def test_http_grants_list_and_revoke(client, hotel, make_request, alice, charlie):
    req = refund(make_request, 48)
    client.force_login(alice)
    assert client.post(f"/requests/{req.pk}/decide/", {"decision": "approve", "scope": "session"}).status_code == 200
    listed = client.get("/grants/").json()["grants"]
    assert [g["scope"] for g in listed] == ["session"] and listed[0]["session_label"] == "Room 1204"
    grant_id = listed[0]["id"]
    client.force_login(charlie)
    assert client.post(f"/grants/{grant_id}/revoke/").status_code == 403
    client.force_login(alice)
    answer = client.post(f"/grants/{grant_id}/revoke/").json()
    assert answer["revoked"] is True and answer["grant"]["state"] == "revoked"
    assert client.get("/grants/").json()["grants"] == []


def test_http_approve_all_needs_a_confirmation_and_one_turn(client, hotel, make_request, alice, session):
    client.force_login(alice)
    a, b = refund(make_request, 10), refund(make_request, 20)
    services.add_conversation_line(session=session, role="user", text="and another", item_id="u9")
    c = refund(make_request, 30)
    ids = f"{a.pk},{b.pk}"
    assert client.post("/requests/approve-all/", {"ids": ids}).status_code == 400
    mixed = client.post("/requests/approve-all/", {"ids": f"{a.pk},{c.pk}", "confirmed": "1"})
    assert mixed.status_code == 400 and "one turn" in mixed.json()["error"]
    assert ApprovalRequest.objects.filter(status=Status.PENDING).count() == 3
    done = client.post("/requests/approve-all/", {"ids": ids, "confirmed": "1"}).json()["results"]
    assert [(r["id"], r["ok"], r["request"]["status"]) for r in done] == [
        (a.pk, True, "approved"),
        (b.pk, True, "approved"),
    ]


def test_history_and_case_show_approved_with_changes_side_by_side_and_the_grant(
    client, hotel, make_request, alice, admin_user
):
    req = refund(make_request, 48)
    services.decide(req, approve=True, by=alice, arguments='{"room": "1204", "amount": 30}')
    follow = refund(make_request, 30)
    client.force_login(alice)
    page = client.get("/history/").content.decode()
    assert "Approved with changes" in page
    assert "&quot;amount&quot;: 48" in page and "&quot;amount&quot;: 30" in page
    assert f"Approved by grant #{follow.grant_id}, made by Alice when deciding request #{req.pk}." in page
    client.force_login(admin_user)
    case = client.get(f"/review/requests/{req.pk}/").content.decode()
    assert "Approved with changes" in case and 'class="args-edited"' in case
    assert f"Grant #{follow.grant_id}: issue_refund once, with the edited arguments (used, used 1×)" in case


def test_the_admin_lists_grants_and_revokes_them_through_the_service(client, hotel, make_request, alice, admin_user):
    services.decide(refund(make_request, 48), approve=True, by=alice, scope="session")
    grant = Grant.objects.get()
    client.force_login(admin_user)
    listing = client.get("/admin/approvals/grant/").content.decode()
    assert "issue_refund" in listing and "live" in listing
    answer = client.post("/admin/approvals/grant/", {"action": "revoke", "_selected_action": [grant.pk]}, follow=True)
    assert "Revoked 1 grant(s)." in answer.content.decode()
    grant.refresh_from_db()
    assert grant.state() == "revoked"
    assert AuditEvent.objects.filter(kind=AuditKind.GRANT_REVOKED, actor=admin_user).exists()


def test_approve_all_says_why_a_rule_needing_a_passkey_or_a_note_is_left(hotel, make_request, alice):
    services.import_policies(
        POLICY.replace(
            "rules:\n",
            "rules:\n  - {label: keys, server: hotel, tool: unlock_door, outcome: ask, requires: {step_up: true}}\n"
            "  - {label: notes, server: hotel, tool: late_checkout, outcome: ask,"
            " requires: {reason_on_approve: true}}\n",
        ),
        by=None,
        source="test",
    )
    door = make_request(name="unlock_door", arguments='{"room": "1204"}')
    late = make_request(name="late_checkout", arguments='{"room": "1204"}')
    (d, why_door), (lt, why_late) = services.decide_all([door, late], by=alice, confirmed=True)
    assert d.status == lt.status == Status.PENDING
    assert why_door == "This rule needs your passkey: approve this request on its own."
    assert why_late == "This rule needs a note to the guest to approve: say why."
    # With the note, the same batch decides the one that needed it.
    (_, again), (done, none) = services.decide_all([door, late], by=alice, confirmed=True, guest_note="Enjoy")
    assert done.status == Status.APPROVED and none is None and again is not None


def test_grant_limits_round_trip_through_the_document_and_the_rows(hotel):
    from approvals import policy

    rules = {rule.label: rule for rule in policy.rules_from_rows()}
    assert rules["refunds"].grants == policy.GrantLimits(("session", "guest"), 30)
    assert rules["doors"].grants == policy.GrantLimits((), 60)
    assert rules["two-person"].grants == policy.DEFAULT_GRANTS
    exported = policy.document(policy.rules_from_rows())["rules"]
    assert exported[0]["grants"] == ["session", "guest"] and exported[0]["grant_max_minutes"] == 30
    assert "grants" not in exported[2]  # the default: documents from before read back unchanged


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("grants: [forever]", "grants: a list of session, guest"),
        ("grant_max_minutes: 0", "grant_max_minutes: a whole number of minutes from 1 to 1440"),
    ],
)
def test_bad_grant_limits_are_refused(hotel, entry, message):
    from approvals import policy

    doc = f"rules:\n  - label: r\n    server: hotel\n    tool: issue_refund\n    outcome: ask\n    {entry}\n"
    with pytest.raises(policy.PolicyError) as refused:
        services.import_policies(doc, by=None, source="test")
    assert any(message in error for error in refused.value.errors), refused.value.errors


def test_a_grant_for_a_tool_whose_hash_changed_since_is_voided_when_consulted(hotel, make_request, alice):
    from approvals.models import McpTool

    services.decide(refund(make_request, 48), approve=True, by=alice, scope="session")
    # A change the drift detection did not see (written around it): the grant's hash no longer matches.
    McpTool.objects.filter(name=REFUND).update(definition_hash="0" * 64)
    assert refund(make_request, 10).status == Status.PENDING
    assert Grant.objects.get().state() == "voided"
    # A grant made for the tool as it is now holds.
    services.decide(refund(make_request, 48), approve=True, by=alice, scope="session")
    assert refund(make_request, 10).status == Status.APPROVED


def test_a_compliance_reviewer_never_revokes(hotel, make_request, alice, admin_user):
    from django.contrib.auth.models import Group

    services.decide(refund(make_request, 48), approve=True, by=alice, scope="session")
    admin_user.groups.add(Group.objects.get_or_create(name="compliance")[0])
    with pytest.raises(PermissionDenied, match="review decisions"):
        services.revoke_grant(Grant.objects.get(), by=admin_user)
    assert Grant.objects.get().state() == "live"
