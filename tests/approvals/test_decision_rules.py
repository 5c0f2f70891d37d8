"""What a rule asks of a decision (a confirmation, a note to the guest, a passkey step-up), the two
notes of a decision, and what the deadline tells the guest: in the policy document, in the
request's frozen plan, enforced by services.decide, and over HTTP. Step-ups are verified on real
WebAuthn signatures (tests/plugins/softauthn.py)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals import policy, services
from approvals.models import ApprovalRequest, AuditKind, PasskeyCredential, PolicyRule, WebAuthnChallenge
from approvals.services import RequirementMissing, StepUpRequired
from approvals.services.passkeys import verify_step_up
from audit.models import AuditEvent
from tests.plugins.softauthn import SoftAuthenticator

Status = ApprovalRequest.Status
Kind = AuditKind
ORIGIN = "http://testserver"
RP = services.RelyingParty(rp_id="testserver", origin=ORIGIN)

POLICY = """
rules:
  - label: doors
    server: hotel
    tool: unlock_door
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 45
    on_deadline: escalate
    escalations:
      - {approvers: [managers], deadline_seconds: 45, on_deadline: deny}
    requires: {confirm: true, reason_on_deny: true}
  - label: large-refunds
    server: hotel
    tool: issue_refund
    when: args.amount > 100.0
    outcome: ask
    approvers: [managers]
    requires: {step_up: true, reason_on_approve: true}
"""


@pytest.fixture
def people(db, django_user_model, password):
    groups = {name: Group.objects.create(name=name) for name in ("managers", "front-desk")}

    def staff(username, *names):
        user = django_user_model.objects.create_user(
            username, password=password, is_staff=True, first_name=username.title()
        )
        user.groups.set([groups[n] for n in names])
        return user

    return {"fred": staff("fred", "front-desk"), "mia": staff("mia", "managers"), "max": staff("max", "managers")}


@pytest.fixture
def rules(people):
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    return services.import_policies(POLICY, by=None, source="test")


def door(make_request):
    return make_request(name="unlock_door", arguments='{"room": "1204"}')


def refund(make_request, amount=250):
    return make_request(name="issue_refund", arguments=json.dumps({"booking_id": "B1", "amount": amount}))


def kinds(req):
    return list(AuditEvent.objects.filter(request=req).order_by("seq").values_list("kind", flat=True))


def passkey_for(user) -> SoftAuthenticator:
    """A passkey registered through the service, as the profile page does."""
    authenticator = SoftAuthenticator()
    options = services.registration_options(user, rp=RP)
    services.register_passkey(user, credential=authenticator.register(options, origin=ORIGIN), name="phone", rp=RP)
    return authenticator


def step_up(req, user, authenticator, **kw) -> services.StepUp:
    options = services.step_up_options(req, user=user, rp=RP)
    return services.StepUp(authenticator.assertion(options, origin=ORIGIN, **kw), RP)


# The document -----------------------------------------------------------------------------------


def test_requires_round_trips_through_the_document_and_the_rows(rules):
    parsed = policy.parse_document(policy.load_yaml(POLICY))
    assert parsed[0].requires == policy.Requires(confirm=True, reason_on_deny=True)
    assert parsed[1].requires == policy.Requires(reason_on_approve=True, step_up=True)
    doc = policy.document(parsed)
    assert doc["rules"][0]["requires"] == {"confirm": True, "reason_on_deny": True}
    assert policy.parse_document(policy.load_yaml(policy.dump_yaml(doc))) == parsed
    row = PolicyRule.objects.get(label="large-refunds")
    assert (row.require_step_up, row.require_reason_on_approve, row.require_confirm) == (True, True, False)
    assert policy.rules_from_rows() == parsed
    assert "requires a reason to approve, a passkey step-up" in parsed[1].describe()


def test_requires_is_checked_like_every_other_key(rules):
    with pytest.raises(policy.PolicyError) as caught:
        policy.parse_document(
            {
                "rules": [
                    {"label": "a", "outcome": "allow", "requires": {"confirm": True}},
                    {"label": "b", "outcome": "ask", "requires": {"confirm": "yes", "sign_twice": True}},
                    {"label": "c", "outcome": "ask", "requires": ["confirm"]},
                ]
            },
            check_names=False,
        )
    errors = caught.value.errors
    assert "rules[0] (a): approvers, quorum, deadline, escalations and requires apply to outcome ask only" in errors
    assert "rules[1] (b).requires: unknown key(s) sign_twice" in errors
    help_text = "a mapping of confirm, reason_on_approve, reason_on_deny, step_up to true or false"
    assert f"rules[1] (b).requires: {help_text}" in errors
    assert f"rules[2] (c).requires: {help_text}" in errors


def test_the_request_keeps_what_its_rule_required_when_it_opened(rules, make_request, people):
    req = door(make_request)
    expected = {"confirm": True, "reason_on_approve": False, "reason_on_deny": True, "step_up": False}
    assert req.plan["requires"] == expected
    assert req.to_dict()["requires"] == expected
    # A later policy without requirements does not change a request already open.
    services.import_policies(POLICY.replace("requires: {confirm: true, reason_on_deny: true}", ""), by=None, source="t")
    assert ApprovalRequest.objects.get(pk=req.pk).to_dict()["requires"] == expected
    assert door(make_request).to_dict()["requires"] == dict.fromkeys(expected, False)


def test_a_request_from_before_requirements_requires_nothing(make_request, people):
    req = make_request()  # no policy: the default
    ApprovalRequest.objects.filter(pk=req.pk).update(plan={"stages": req.plan["stages"]})
    req.refresh_from_db()
    assert req.to_dict()["requires"] == {
        "confirm": False,
        "reason_on_approve": False,
        "reason_on_deny": False,
        "step_up": False,
    }
    assert services.decide(req, approve=True, by=people["fred"]).status == Status.APPROVED


# Reasons and confirmation -------------------------------------------------------------------------


def test_a_required_reason_and_confirmation_are_enforced_and_nothing_changes(rules, make_request, people):
    req = door(make_request)
    before = kinds(req)
    with pytest.raises(RequirementMissing) as missing:
        services.decide(req, approve=False, by=people["fred"], confirmed=True)
    assert (missing.value.code, missing.value.field) == ("reason_required", "reason")
    assert "note to the guest to deny" in str(missing.value)
    with pytest.raises(RequirementMissing) as unconfirmed:
        services.decide(req, approve=False, by=people["fred"], guest_note="Please come to the desk with ID")
    assert (unconfirmed.value.code, unconfirmed.value.field) == ("confirm_required", "confirmed")
    with pytest.raises(RequirementMissing):
        services.decide(req, approve=True, by=people["fred"])  # approving needs no note, but a confirmation
    req.refresh_from_db()
    assert req.status == Status.PENDING and kinds(req) == before

    done = services.decide(req, approve=True, by=people["fred"], confirmed=True)
    assert (done.status, done.reason) == (Status.APPROVED, "")
    decided = AuditEvent.objects.get(request=req, kind=Kind.DECIDED)
    assert decided.payload["confirmed"] is True


def test_the_two_notes_go_where_they_belong(rules, make_request, people, effects, django_capture_on_commit_callbacks):
    req = door(make_request)
    with django_capture_on_commit_callbacks(execute=True):
        done = services.decide(
            req,
            approve=False,
            by=people["fred"],
            confirmed=True,
            guest_note="Please come to the front desk with your ID.",
            internal_note="Caller could not name the booking; possible tailgater.",
        )
    assert done.reason == "Please come to the front desk with your ID."
    row = AuditEvent.objects.get(request=req, kind=Kind.DECIDED)
    assert row.payload["reason"] == "Please come to the front desk with your ID."
    assert row.payload["internal_note"] == "Caller could not name the booking; possible tailgater."
    # Upstream gets the guest's note only (the relay's nudge carries what it sends).
    (decision,) = effects.decisions
    assert decision == {"upstream_id": req.upstream_id, "approve": False, "reason": done.reason}
    assert "tailgater" not in json.dumps(done.to_dict())


def test_reason_is_still_the_note_to_the_guest(make_request, people):
    done = services.decide(make_request(), approve=False, by=people["fred"], reason="Not tonight")
    assert done.reason == "Not tonight"
    assert "internal_note" not in AuditEvent.objects.get(request=done, kind=Kind.DECIDED).payload


def test_notes_that_are_too_long_are_refused(make_request, people):
    req = make_request()
    with pytest.raises(ValueError, match="internal note"):
        services.decide(req, approve=True, by=people["fred"], internal_note="x" * 2001)
    with pytest.raises(ValueError, match="reason"):
        services.decide(req, approve=True, by=people["fred"], guest_note="x" * 501)
    req.refresh_from_db()
    assert req.status == Status.PENDING


# Step-up ----------------------------------------------------------------------------------------


def test_a_step_up_decision_verifies_a_real_assertion_and_audits_the_credential(rules, make_request, people):
    mia = people["mia"]
    key = passkey_for(mia)
    assert AuditEvent.objects.filter(kind=Kind.PASSKEY_ADDED, actor=mia).exists()
    req = refund(make_request)
    done = services.decide(req, approve=True, by=mia, guest_note="Refund approved.", step_up=step_up(req, mia, key))
    assert done.status == Status.APPROVED
    passkey = PasskeyCredential.objects.get(user=mia)
    assert passkey.sign_count == 1 and passkey.last_used is not None
    row = AuditEvent.objects.get(request=req, kind=Kind.DECIDED)
    assert row.payload["step_up"]["passkey_id"] == passkey.pk
    assert row.payload["step_up"]["credential_id"]
    assert not WebAuthnChallenge.objects.exists()  # used up


def test_a_step_up_rule_refuses_a_decision_without_an_assertion(rules, make_request, people):
    mia = people["mia"]
    passkey_for(mia)
    req = refund(make_request)
    before = kinds(req)
    # As push or Slack would decide: no assertion.
    for approve in (True, False):
        with pytest.raises(StepUpRequired, match="passkey"):
            services.decide(req, approve=approve, by=mia, guest_note="ok")
    req.refresh_from_db()
    assert req.status == Status.PENDING and kinds(req) == before


def test_a_step_up_needs_a_registered_passkey(rules, make_request, people):
    req = refund(make_request)
    with pytest.raises(StepUpRequired, match="register one"):
        services.step_up_options(req, user=people["mia"], rp=RP)


@pytest.mark.parametrize("problem", ["wrong challenge", "other user's credential", "other request", "wrong origin"])
def test_a_step_up_that_does_not_belong_is_refused(rules, make_request, people, problem):
    mia, max_ = people["mia"], people["max"]
    mine, theirs = passkey_for(mia), passkey_for(max_)
    req, other = refund(make_request), refund(make_request, 300)
    if problem == "wrong challenge":
        services.step_up_options(req, user=mia, rp=RP)
        proof = services.StepUp(
            mine.assertion({"rpId": RP.rp_id, "challenge": "AAAAAAAAAAAAAAAAAAAAAA"}, origin=ORIGIN), RP
        )
    elif problem == "other user's credential":
        proof = step_up(req, mia, theirs)  # Max's passkey answers Mia's challenge
    elif problem == "other request":
        proof = step_up(other, mia, mine)
    else:
        options = services.step_up_options(req, user=mia, rp=RP)
        proof = services.StepUp(mine.assertion(options, origin="https://evil.example"), RP)
    with pytest.raises(StepUpRequired):
        services.decide(req, approve=True, by=mia, guest_note="ok", step_up=proof)
    req.refresh_from_db()
    assert req.status == Status.PENDING
    assert not AuditEvent.objects.filter(request=req, kind=Kind.DECIDED).exists()


def test_a_step_up_challenge_verifies_once_and_expires(rules, make_request, people):
    mia = people["mia"]
    key = passkey_for(mia)
    req = refund(make_request)
    proof = step_up(req, mia, key)
    assert verify_step_up(req, user=mia, step_up=proof).sign_count == 1
    with pytest.raises(StepUpRequired, match="already used"):
        verify_step_up(req, user=mia, step_up=proof)  # replayed
    late = step_up(req, mia, key)
    WebAuthnChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(StepUpRequired, match="expired"):
        verify_step_up(req, user=mia, step_up=late)


def test_a_passkey_can_be_removed_only_by_its_owner(rules, people):
    passkey_for(people["mia"])
    passkey = PasskeyCredential.objects.get(user=people["mia"])
    assert services.delete_passkey(people["max"], pk=passkey.pk) is False
    assert services.delete_passkey(people["mia"], pk=passkey.pk) is True
    assert not PasskeyCredential.objects.exists()
    assert AuditEvent.objects.filter(kind=Kind.PASSKEY_REMOVED, actor=people["mia"]).exists()


# What the deadline tells the guest -------------------------------------------------------------


def test_the_deadline_tells_the_guest_the_real_wait_over_two_steps(rules, make_request, scheduled):
    req = door(make_request)
    escalated = services.expire_request(req.pk, now=req.deadline)
    assert (escalated.status, escalated.stage) == (Status.PENDING, 1)
    final = services.expire_request(req.pk, now=escalated.deadline)
    assert final.status == Status.EXPIRED
    assert final.reason == "Nobody from the staff could confirm this in time (waited 1 min 30 s), so it was not done."
    assert "doors" not in final.reason
    row = AuditEvent.objects.get(request=req, kind=Kind.EXPIRED)
    assert row.payload["record"] == "No decision within 45 s at step 2: denied by deadline (rule doors)"
    assert (row.payload["rule"], row.payload["waited_seconds"]) == ("doors", 90)


@pytest.mark.parametrize(
    ("seconds", "words"), [(0, "0 s"), (45, "45 s"), (60, "1 min"), (90.4, "1 min 30 s"), (3600, "60 min")]
)
def test_a_wait_in_words(seconds, words):
    assert services.wait_in_words(seconds) == words


# Over HTTP ---------------------------------------------------------------------------------------


def post_decision(client, req, **data):
    return client.post(f"/requests/{req.pk}/decide/", data)


def test_http_says_what_is_missing_and_changes_nothing(client, rules, make_request, people):
    client.force_login(people["fred"])
    req = door(make_request)
    response = post_decision(client, req, decision="deny", confirmed="1")
    assert response.status_code == 400
    assert response.json()["field"] == "reason" and "note to the guest" in response.json()["error"]
    response = post_decision(client, req, decision="deny", guest_note="Please come to the desk")
    assert (response.status_code, response.json()["code"]) == (400, "confirm_required")
    req.refresh_from_db()
    assert req.status == Status.PENDING
    response = post_decision(
        client, req, decision="deny", reason="Please come to the desk", internal_note="ID missing", confirmed="1"
    )
    assert response.status_code == 200
    body = response.json()["request"]
    assert (body["status"], body["reason"]) == ("denied", "Please come to the desk")
    assert AuditEvent.objects.get(request=req, kind=Kind.DECIDED).payload["internal_note"] == "ID missing"


def test_http_step_up_end_to_end(client, rules, make_request, people):
    mia = people["mia"]
    client.force_login(mia)
    key = SoftAuthenticator()
    options = client.post("/profile/passkeys/options/").json()["options"]
    assert options["rp"]["id"] == "testserver"
    response = client.post(
        "/profile/passkeys/register/",
        json.dumps({"credential": key.register(options, origin=ORIGIN), "name": "Front desk tablet"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    page = client.get("/profile/passkeys/")
    assert b"Front desk tablet" in page.content

    req = refund(make_request)
    response = post_decision(client, req, decision="approve", guest_note="Approved")
    assert response.status_code == 403 and response.json()["step_up"] is True
    options = client.post(f"/requests/{req.pk}/step-up/options/").json()["options"]
    bad = key.assertion(options, origin=ORIGIN, rp_id="evil.example")
    response = post_decision(client, req, decision="approve", guest_note="Approved", step_up=json.dumps(bad))
    assert response.status_code == 403 and "did not verify" in response.json()["error"]
    req.refresh_from_db()
    assert req.status == Status.PENDING
    options = client.post(f"/requests/{req.pk}/step-up/options/").json()["options"]
    good = key.assertion(options, origin=ORIGIN)
    response = post_decision(client, req, decision="approve", guest_note="Approved", step_up=json.dumps(good))
    assert response.status_code == 200 and response.json()["request"]["status"] == "approved"

    passkey = PasskeyCredential.objects.get(user=mia)
    response = client.post(f"/profile/passkeys/{passkey.pk}/delete/")
    assert response.status_code == 302 and not PasskeyCredential.objects.exists()


def test_http_step_up_options_are_refused_to_who_may_not_decide(client, rules, make_request, people):
    req = refund(make_request)
    client.force_login(people["fred"])  # front desk: not a manager
    assert client.post(f"/requests/{req.pk}/step-up/options/").status_code == 403
    client.force_login(people["mia"])  # a manager without a passkey
    response = client.post(f"/requests/{req.pk}/step-up/options/")
    assert response.status_code == 403 and response.json()["passkeys_url"] == "/profile/passkeys/"
    client.logout()
    assert client.post(f"/requests/{req.pk}/step-up/options/").status_code == 403
    assert client.post("/profile/passkeys/options/").status_code == 403
