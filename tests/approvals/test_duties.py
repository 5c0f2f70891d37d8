"""Duties that do not mix (issue 13): a member of `compliance` never decides, under any rule,
the default included, superuser or not; whoever started a session never decides its requests.
At the service layer (the one check every channel goes through), over HTTP, and on the
dashboard's page and socket."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.test import Client
from django.urls import reverse

from approvals import services
from approvals.models import REVIEW_ONLY_GROUP, ApprovalRequest, AuditKind
from approvals.services import decisions
from audit.models import AuditEvent
from config.asgi import application
from tests.approvals.conftest import approval_item

Status = ApprovalRequest.Status
REVIEWER_REFUSAL = "Members of compliance review decisions and never make them."
STARTER_REFUSAL = "You started this session: someone else must decide."


def join(user, *names: str):
    for name in names:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def reviewer(django_user_model, password):
    """Rita: staff (she reads the queue) and in compliance: she never decides."""
    rita = django_user_model.objects.create_user("rita", "rita@example.org", password, is_staff=True, first_name="Rita")
    return join(rita, REVIEW_ONLY_GROUP)


def decision_rows(req: ApprovalRequest) -> int:
    return AuditEvent.objects.filter(request_id=req.pk, kind__in=[AuditKind.DECIDED, AuditKind.VOTED]).count()


def assert_unchanged(req: ApprovalRequest) -> None:
    fresh = ApprovalRequest.objects.get(pk=req.pk)
    assert (fresh.status, fresh.decided_by_id, fresh.votes) == (Status.PENDING, None, [])
    assert decision_rows(req) == 0


def started_session(user):
    return services.open_session(kind="responses", label="Refund chat", metadata={}, started_by=user)


def open_in(session, upstream_id: str = "mcpr_s1") -> ApprovalRequest:
    item = approval_item(upstream_id)
    req, _ = services.open_request(
        session=session,
        upstream_id=upstream_id,
        server_label="hotel",
        tool_name=item["name"],
        arguments=item["arguments"],
        raw_item=item,
    )
    return req


def route_to(req: ApprovalRequest, *groups: str, quorum: int = 1) -> ApprovalRequest:
    """As a policy stage would: this request's current stage names these groups and quorum."""
    audience = f",{','.join(groups)}," if groups else ""
    ApprovalRequest.objects.filter(pk=req.pk).update(audience=audience, quorum=quorum)
    return ApprovalRequest.objects.get(pk=req.pk)


# The service layer -------------------------------------------------------------------------------


@pytest.mark.parametrize("approve", [True, False])
def test_a_compliance_member_never_decides_under_the_default(reviewer, make_request, approve):
    req = make_request()
    assert req.audience == ""  # the default: any staff member

    with pytest.raises(PermissionDenied, match=REVIEWER_REFUSAL):
        services.decide(req, approve=approve, by=reviewer)

    assert_unchanged(req)


def test_a_compliance_member_never_decides_even_in_the_routed_group(reviewer, make_request):
    join(reviewer, "managers")
    req = route_to(make_request(), "managers")

    with pytest.raises(PermissionDenied, match=REVIEWER_REFUSAL):
        services.decide(req, approve=True, by=reviewer)

    assert_unchanged(req)


def test_a_compliance_member_never_votes_toward_a_quorum(reviewer, make_request):
    req = route_to(make_request(), quorum=2)

    with pytest.raises(PermissionDenied, match=REVIEWER_REFUSAL):
        services.decide(req, approve=True, by=reviewer)

    assert_unchanged(req)


def test_a_superuser_in_compliance_never_decides(admin_user, make_request):
    join(admin_user, REVIEW_ONLY_GROUP)
    req = make_request()

    with pytest.raises(PermissionDenied, match=REVIEWER_REFUSAL):
        services.decide(req, approve=True, by=admin_user)

    assert_unchanged(req)


def test_whoever_started_the_session_never_decides_its_requests_and_someone_else_does(alice, bob, db):
    req = open_in(started_session(alice))

    with pytest.raises(PermissionDenied, match=STARTER_REFUSAL):
        services.decide(req, approve=True, by=alice)
    assert_unchanged(req)

    decided = services.decide(req, approve=True, by=bob)
    assert (decided.status, decided.decided_by_label) == (Status.APPROVED, "Bob")


def test_whoever_started_the_session_does_not_count_toward_a_quorum(alice, db):
    req = route_to(open_in(started_session(alice)), quorum=2)

    with pytest.raises(PermissionDenied, match=STARTER_REFUSAL):
        services.decide(req, approve=True, by=alice)

    assert_unchanged(req)


def test_a_superuser_who_started_the_session_does_not_decide_it(admin_user, db):
    req = open_in(started_session(admin_user))

    with pytest.raises(PermissionDenied, match=STARTER_REFUSAL):
        services.decide(req, approve=False, by=admin_user)

    assert_unchanged(req)


def test_services_decide_refuses_through_check_may_decide(reviewer, make_request, monkeypatch):
    # The Slack and Web Push channels decide through services.decide: proving that it calls the
    # one check proves that they are refused the same way.
    seen = []
    real = decisions.check_may_decide

    def spy(req, user):
        seen.append((req.pk, user.pk))
        real(req, user)

    monkeypatch.setattr(decisions, "check_may_decide", spy)
    req = make_request()

    with pytest.raises(PermissionDenied, match=REVIEWER_REFUSAL):
        services.decide(req, approve=True, by=reviewer)

    assert seen == [(req.pk, reviewer.pk)]
    assert_unchanged(req)


def test_check_may_decide_says_why_and_lets_the_allowed_through(alice, bob, reviewer, charlie, db):
    req = open_in(started_session(alice))

    services.check_may_decide(req, bob)  # no exception: bob may
    for user, message in [
        (reviewer, REVIEWER_REFUSAL),
        (alice, STARTER_REFUSAL),
        (charlie, "Only staff can decide approval requests."),
    ]:
        with pytest.raises(PermissionDenied, match=message):
            services.check_may_decide(req, user)
    routed = route_to(req, "managers")
    with pytest.raises(PermissionDenied, match=r"Only members of managers may decide this request\."):
        services.check_may_decide(routed, bob)


def test_the_card_names_who_started_the_session(alice, make_request, db):
    req = open_in(started_session(alice))

    assert ApprovalRequest.objects.for_one().get(pk=req.pk).to_dict()["started_by"] == {
        "id": alice.pk,
        "label": "Alice",
    }
    assert make_request().to_dict()["started_by"] is None


def test_the_session_opening_is_audited_with_who_started_it(alice, db):
    session = started_session(alice)

    row = AuditEvent.objects.get(session=session, kind=AuditKind.SESSION_OPENED)
    assert row.payload["started_by"] == alice.pk
    assert (session.started_by, session.started_by_label) == (alice, "Alice")


# Over HTTP ---------------------------------------------------------------------------------------


def decide_url(req: ApprovalRequest) -> str:
    return reverse("decide", args=[req.pk])


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_the_decide_view_refuses_a_compliance_member_with_the_reason(client, reviewer, make_request, decision):
    req = make_request()
    client.force_login(reviewer)

    response = client.post(decide_url(req), {"decision": decision})

    assert response.status_code == 403
    assert response.json() == {"error": REVIEWER_REFUSAL}
    assert_unchanged(req)


def test_the_decide_view_refuses_whoever_started_the_session(client, alice, db):
    req = open_in(started_session(alice))
    client.force_login(alice)

    response = client.post(decide_url(req), {"decision": "approve"})

    assert response.status_code == 403
    assert response.json() == {"error": STARTER_REFUSAL}
    assert_unchanged(req)


def test_the_dashboard_page_shows_a_compliance_member_no_buttons(client, reviewer):
    client.force_login(reviewer)

    page = client.get("/").content.decode()

    assert 'data-review-only="true"' in page
    assert '<form class="decide" autocomplete="off" hidden>' in page
    assert REVIEWER_REFUSAL in page


def test_the_dashboard_page_shows_other_staff_the_buttons(client, alice):
    client.force_login(alice)

    page = client.get("/").content.decode()

    assert 'data-review-only="false"' in page
    assert '<form class="decide" autocomplete="off">' in page
    assert "You started this session; another member of {groups} decides." in page


# Over the dashboard socket -----------------------------------------------------------------------


async def socket_of(user) -> WebsocketCommunicator:
    def cookie() -> str:
        client = Client()
        client.force_login(user)
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    value = await database_sync_to_async(cookie)()
    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={value}".encode()),
    ]
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


@pytest.mark.django_db(transaction=True)
async def test_a_compliance_members_snapshot_says_they_may_not_decide(reviewer, alice):
    req = await database_sync_to_async(open_in)(await database_sync_to_async(started_session)(alice))
    comm = await socket_of(reviewer)
    connected, _ = await comm.connect()
    assert connected

    frame = await comm.receive_json_from()

    assert frame["type"] == "snapshot"
    assert (frame["may_decide"], frame["why"]) == (False, REVIEWER_REFUSAL)
    assert [r["id"] for r in frame["requests"]] == [req.pk]  # they still see the queue
    await comm.disconnect()
    await database_sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_the_starters_card_on_the_socket_names_them(alice):
    req = await database_sync_to_async(open_in)(await database_sync_to_async(started_session)(alice))
    comm = await socket_of(alice)
    await comm.connect()

    frame = await comm.receive_json_from()

    assert "may_decide" not in frame  # may decide in general...
    (card,) = frame["requests"]
    assert card["id"] == req.pk and card["started_by"] == {"id": alice.pk, "label": "Alice"}  # ...not this one
    await comm.disconnect()
    await database_sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_a_compliance_member_who_is_not_staff_is_refused_the_socket(django_user_model, password):
    def make():
        user = django_user_model.objects.create_user("rev", "rev@example.org", password)
        return join(user, REVIEW_ONLY_GROUP)

    comm = await socket_of(await database_sync_to_async(make)())

    connected, _ = await comm.connect()

    assert not connected
    await database_sync_to_async(connections.close_all)()
