"""Coordination (issue 13): claims, presence, the next step, escalation the old group sees, and
escalate_when_nobody_online. Services, HTTP and the dashboard socket."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals import events, services
from approvals.models import ApprovalRequest, AuditKind, DashboardPresence
from audit.models import AuditEvent

DOORS = """
rules:
  - label: doors
    tool: unlock_door
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 45
    on_deadline: escalate
    escalations:
      - approvers: managers
        deadline_seconds: 45
        on_deadline: deny
"""


@pytest.fixture
def shift(db, alice, bob, django_user_model, password):
    """Alice and Max at the front desk, Bob the manager; the doors rule escalates to managers."""
    desk, managers = Group.objects.create(name="front-desk"), Group.objects.create(name="managers")
    max_ = django_user_model.objects.create_user("max", "max@example.org", password, is_staff=True, first_name="Max")
    alice.groups.add(desk)
    max_.groups.add(desk)
    bob.groups.add(managers)
    services.import_policies(DOORS, by=None, source="test")
    return {"alice": alice, "max": max_, "bob": bob}


@pytest.fixture
def door(shift, make_request) -> ApprovalRequest:
    return make_request(name="unlock_door", arguments='{"room": "1204"}')


def kinds(req: ApprovalRequest) -> list[str]:
    return list(AuditEvent.objects.filter(request_id=req.pk).order_by("seq").values_list("kind", flat=True))


def card(req: ApprovalRequest) -> dict[str, Any]:
    return ApprovalRequest.objects.for_one().get(pk=req.pk).to_dict()


# Services: claims ---------------------------------------------------------------------------------


def test_a_claim_shows_on_the_card_and_is_audited(door, shift, effects, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert services.claim(door, by=shift["alice"]) is True

    claim = card(door)["claim"]
    assert (claim["user_id"], claim["label"]) == (shift["alice"].pk, "Alice")
    assert 0 <= claim["seconds"] < 5
    assert kinds(door)[-1] == AuditKind.CLAIMED
    assert effects.dashboard[-1] == door.pk


def test_claiming_twice_keeps_the_first_claim(door, shift):
    services.claim(door, by=shift["alice"])
    first = card(door)["claim"]["at"]

    assert services.claim(door, by=shift["alice"]) is False
    assert card(door)["claim"]["at"] == first
    assert kinds(door).count(AuditKind.CLAIMED) == 1


def test_a_colleague_cannot_take_a_live_claim(door, shift):
    services.claim(door, by=shift["alice"])

    with pytest.raises(services.TransitionError, match="Alice is on it already"):
        services.claim(door, by=shift["max"])
    assert card(door)["claim"]["label"] == "Alice"


def test_only_people_who_may_decide_may_claim(door, shift, charlie):
    with pytest.raises(services.PermissionDenied):
        services.claim(door, by=shift["bob"])  # a manager: not the front desk's step
    with pytest.raises(services.PermissionDenied):
        services.claim(door, by=charlie)  # not staff
    assert card(door)["claim"] is None
    assert AuditKind.CLAIMED not in kinds(door)


def test_a_decided_request_cannot_be_claimed(door, shift):
    services.decide(door, approve=True, by=shift["max"])

    with pytest.raises(services.TransitionError, match="already approved by Max"):
        services.claim(door, by=shift["alice"])


def test_release_gives_it_up_with_an_audit_row(door, shift):
    services.claim(door, by=shift["alice"])

    assert services.release_claim(door, by=shift["max"]) is False  # not his
    assert services.release_claim(door, by=shift["alice"]) is True
    assert card(door)["claim"] is None
    row = AuditEvent.objects.filter(request_id=door.pk, kind=AuditKind.CLAIM_RELEASED).get()
    assert (row.actor_label, row.payload) == ("Alice", {"why": "given up"})


def test_anyone_allowed_may_still_decide_and_the_decision_ends_the_claim(door, shift):
    services.claim(door, by=shift["alice"])

    decided = services.decide(door, approve=False, by=shift["max"], reason="Not without ID")

    assert decided.decided_by_label == "Max"
    assert decided.claimed_by_id is None and decided.claimed_at is None
    assert card(door)["claim"] is None


def test_an_old_claim_lapses_at_once_on_the_card_and_in_the_sweep(door, shift, settings):
    settings.CLAIM_SECONDS = 120
    services.claim(door, by=shift["alice"])
    ApprovalRequest.objects.filter(pk=door.pk).update(claimed_at=timezone.now() - timedelta(seconds=121))

    assert card(door)["claim"] is None  # lazily: the row still holds it
    assert services.claim(door, by=shift["max"]) is True  # and a colleague may take it
    ApprovalRequest.objects.filter(pk=door.pk).update(claimed_at=timezone.now() - timedelta(seconds=121))

    assert services.release_expired_claims() == 1
    assert ApprovalRequest.objects.get(pk=door.pk).claimed_by_id is None
    row = AuditEvent.objects.filter(request_id=door.pk, kind=AuditKind.CLAIM_RELEASED).get()
    assert (row.actor_id, row.payload) == (shift["max"].pk, {"why": "expired"})
    assert services.release_expired_claims() == 0


# Services: presence -----------------------------------------------------------------------------


def test_presence_counts_fresh_dashboards_per_group(shift, settings):
    services.dashboard_connected(shift["alice"], channel_name="chan.a")
    services.dashboard_connected(shift["bob"], channel_name="chan.b")

    assert [u.username for u in services.online_members(["front-desk"])] == ["alice"]
    assert [u.username for u in services.online_members([])] == ["alice", "bob"]
    assert services.is_anyone_online(["managers"]) is True
    assert events.online_by_group() == {"": ["Alice", "Bob"], "front-desk": ["Alice"], "managers": ["Bob"]}

    DashboardPresence.objects.filter(channel_name="chan.b").update(
        seen_at=timezone.now() - timedelta(seconds=settings.PRESENCE_STALE_SECONDS + 1)
    )
    assert services.is_anyone_online(["managers"]) is False  # its process died: stale
    assert services.forget_stale_dashboards() == 1


def test_the_last_dashboard_closing_releases_the_claims(door, shift):
    services.dashboard_connected(shift["alice"], channel_name="chan.1")
    services.dashboard_connected(shift["alice"], channel_name="chan.2")
    services.claim(door, by=shift["alice"])

    assert services.dashboard_disconnected(shift["alice"], channel_name="chan.1") == 0
    assert card(door)["claim"] is not None  # another tab is still open
    assert services.dashboard_disconnected(shift["alice"], channel_name="chan.2") == 1
    assert card(door)["claim"] is None
    row = AuditEvent.objects.filter(request_id=door.pk, kind=AuditKind.CLAIM_RELEASED).get()
    assert row.payload == {"why": "dashboard closed"}


def test_reachability_providers_can_be_added_by_the_apps_above(shift, monkeypatch):
    monkeypatch.setattr(events, "reachability_providers", [*events.reachability_providers])
    assert events.is_anyone_online(["managers"]) is False

    events.reachability_providers.append(lambda groups: "managers" in groups)  # e.g. a push subscription

    assert events.is_anyone_online(["managers"]) is True
    assert events.is_anyone_online(["front-desk"]) is False


# The next step and the escalation ---------------------------------------------------------------


def test_the_card_names_its_next_step(door):
    data = card(door)
    assert data["next_step"] == {"groups": ["managers"], "at": data["deadline"]}

    services.expire_request(door.pk, now=door.deadline)

    assert card(door)["next_step"] is None  # the last step denies


def test_an_escalation_ends_the_claim_and_stays_in_the_old_groups_history(door, shift):
    services.claim(door, by=shift["alice"])
    services.expire_request(door.pk, now=door.deadline)
    door.refresh_from_db()
    assert (door.stage, door.claimed_by_id, door.reached_audience) == (1, None, ",front-desk,managers,")
    services.decide(door, approve=True, by=shift["bob"])

    client = Client()
    client.force_login(shift["alice"])
    page = client.get(reverse("history")).content.decode()

    assert f'id="request-{door.pk}"' in page
    assert "escalated to managers" in page


def test_escalated_frames_go_to_the_old_group_only(door, shift):
    door.refresh_from_db()
    assert door.earlier_audience() is None
    services.expire_request(door.pk, now=door.deadline)
    door.refresh_from_db()

    message = events.request_changed_message(
        card(door), audience=door.audience, earlier_audience=door.earlier_audience()
    )

    assert message["earlier_audience"] == ",front-desk,"
    frame = json.loads(events.request_escalated_frame(message["frame"]))
    assert frame["type"] == "request_escalated" and frame["request"]["policy"]["groups"] == ["managers"]


# escalate_when_nobody_online --------------------------------------------------------------------

NOBODY = DOORS.replace(
    "    on_deadline: escalate\n", "    on_deadline: escalate\n    escalate_when_nobody_online: true\n", 1
)


def test_a_step_nobody_is_online_for_is_skipped_at_once(
    shift, make_request, effects, django_capture_on_commit_callbacks
):
    services.import_policies(NOBODY, by=None, source="test")

    with django_capture_on_commit_callbacks(execute=True):
        req = make_request(name="unlock_door", arguments='{"room": "1204"}')

    req.refresh_from_db()
    assert (req.stage, req.audience_groups) == (1, ["managers"])
    row = AuditEvent.objects.filter(request_id=req.pk, kind=AuditKind.ESCALATED).get()
    assert row.payload["reason"].startswith("Nobody of front-desk was online: escalated")


def test_a_step_with_someone_online_waits_out_its_deadline(
    shift, make_request, effects, django_capture_on_commit_callbacks
):
    services.import_policies(NOBODY, by=None, source="test")
    services.dashboard_connected(shift["max"], channel_name="chan.max")

    with django_capture_on_commit_callbacks(execute=True):
        req = make_request(name="unlock_door", arguments='{"room": "1204"}')

    req.refresh_from_db()
    assert req.stage == 0


def test_the_option_round_trips_through_the_document_and_needs_a_next_step(shift):
    services.import_policies(NOBODY, by=None, source="test")
    from approvals.policy import rows
    from approvals.policy.document import PolicyError, document, parse_document

    (rule,) = rows.rules_from_rows()
    assert rule.steps[0].escalate_when_nobody_online is True
    assert document([rule])["rules"][0]["escalate_when_nobody_online"] is True
    assert "escalate_when_nobody_online" not in document([rule])["rules"][0]["escalations"][0]

    bad = {"rules": [{"label": "x", "outcome": "ask", "on_deadline": "deny", "escalate_when_nobody_online": True}]}
    with pytest.raises(PolicyError, match="escalate_when_nobody_online: needs on_deadline escalate"):
        parse_document(bad, check_names=False)


# HTTP -------------------------------------------------------------------------------------------


def post(user, name: str, pk: int, **data: str):
    client = Client(enforce_csrf_checks=False)
    if user is not None:
        client.force_login(user)
    return client.post(reverse(name, args=[pk]), data)


def test_claim_and_release_over_http(door, shift):
    response = post(shift["alice"], "claim", door.pk)
    assert response.status_code == 200
    assert response.json()["claimed"] is True
    assert response.json()["request"]["claim"]["label"] == "Alice"

    taken = post(shift["max"], "claim", door.pk)
    assert taken.status_code == 409
    assert taken.json()["error"] == "Alice is on it already."
    # Opening the details while a colleague is on it is no claim, and no error either.
    implicit = post(shift["max"], "claim", door.pk, implicit="1")
    assert (implicit.status_code, implicit.json()["claimed"]) == (200, False)

    released = post(shift["alice"], "release", door.pk)
    assert (released.status_code, released.json()["released"]) == (200, True)
    assert released.json()["request"]["claim"] is None


def test_claim_over_http_refuses_who_may_not(door, shift, charlie):
    assert post(None, "claim", door.pk).status_code == 403
    assert post(charlie, "claim", door.pk).status_code == 403
    assert post(shift["bob"], "claim", door.pk).status_code == 403
    assert post(shift["alice"], "claim", 999999).status_code == 404
    services.decide(door, approve=True, by=shift["max"])
    closed = post(shift["alice"], "claim", door.pk)
    assert closed.status_code == 409 and closed.json()["request"]["status"] == "approved"


def test_claim_needs_the_csrf_token(door, shift):
    client = Client(enforce_csrf_checks=True)
    client.force_login(shift["alice"])
    assert client.post(reverse("claim", args=[door.pk])).status_code == 403
    assert client.get(reverse("claim", args=[door.pk])).status_code == 405
