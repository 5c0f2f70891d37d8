"""Stop (issue 14): a staff member with approvals.stop_session ends a live session from its card
(JSON) or its case page (a form). The session closes, its pending requests are cancelled through
the one transition, the audit names who and why, and the relay holding it is told over the
channel layer. Without the permission, without a reason, or on a session that has ended: a clear
error, and nothing changes."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from approvals import events, services
from approvals.models import ApprovalRequest, RealtimeSession
from audit.models import AuditEvent

JSON = {"HTTP_ACCEPT": "application/json"}


def may_stop(user):
    user.user_permissions.add(Permission.objects.get(content_type__app_label="approvals", codename="stop_session"))
    return type(user).objects.get(pk=user.pk)  # a fresh object: permissions are cached per object


@pytest.fixture
def bob(bob):
    """Bob, the duty manager, may stop sessions."""
    return may_stop(bob)


def nothing_changed(session: RealtimeSession, *requests: ApprovalRequest) -> None:
    session.refresh_from_db()
    assert session.status == "open" and session.close_code is None
    for req in requests:
        req.refresh_from_db()
        assert req.status == "pending"
    assert not AuditEvent.objects.filter(session_id=session.pk, kind="session_stopped").exists()


def test_it_stops_the_session_cancels_its_pending_requests_and_audits_who_and_why(session, make_request, bob, alice):
    pending, other = make_request(), make_request()
    decided = make_request()
    services.decide(decided, approve=True, by=alice)
    cancelled = services.stop_session(session, by=bob, reason="Guest is abusive to the assistant")
    assert sorted(r.pk for r in cancelled) == sorted([pending.pk, other.pk])
    session.refresh_from_db()
    assert (session.status, session.close_code) == ("closed", events.STOPPED_CLOSE_CODE)
    for req in (pending, other):
        req.refresh_from_db()
        assert req.status == "cancelled" and req.decided_by_label == "Bob"
        assert req.reason == "Stopped by Bob: Guest is abusive to the assistant"
        row = AuditEvent.objects.get(request=req, kind="cancelled")
        assert row.actor == bob and row.payload["stopped"] is True
    decided.refresh_from_db()
    assert decided.status == "approved"  # an answered request stays what it is
    stopped = AuditEvent.objects.get(session_id=session.pk, kind="session_stopped")
    assert stopped.actor == bob and stopped.actor_label == "Bob"
    assert stopped.payload == {"reason": "Guest is abusive to the assistant"}
    assert AuditEvent.objects.filter(session_id=session.pk, kind="session_closed", actor=bob).count() == 1


def test_the_relay_holding_the_session_is_told_over_the_channel_layer(
    session, make_request, bob, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.session_group(session.pk), channel)
    make_request()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.stop_session(session, by=bob, reason="Test call left running")
    assert callbacks, "nothing is sent before the commit"
    for callback in callbacks:
        callback()
    message = async_to_sync(asyncio.wait_for)(layer.receive(channel), 5)
    assert message == {
        "type": events.RELAY_STOP,
        "code": events.STOPPED_CLOSE_CODE,
        "reason": events.STOPPED_CLOSE_REASON,
    }
    assert "Test call left running" not in repr(message)  # why is for the audit, not the guest


def test_it_refuses_without_the_permission_a_reason_or_a_live_session(session, make_request, alice, bob):
    req = make_request()
    with pytest.raises(PermissionDenied):
        services.stop_session(session, by=alice, reason="I am not allowed")
    with pytest.raises(ValueError, match="Say why"):
        services.stop_session(session, by=bob, reason="   ")
    nothing_changed(session, req)
    services.close_session(session, code=1000, reason="the guest left")
    with pytest.raises(services.SessionNotStoppable, match="ended already"):
        services.stop_session(session, by=bob, reason="Too late")
    assert not AuditEvent.objects.filter(session_id=session.pk, kind="session_stopped").exists()


def test_a_call_is_hung_up_from_its_card_not_stopped(bob):
    call = services.open_session(kind="sideband", label="Front desk line", metadata={})
    with pytest.raises(services.SessionNotStoppable, match="hang up"):
        services.stop_session(call, by=bob, reason="Wrong place")
    call.refresh_from_db()
    assert call.status == "open"


# --- The endpoint ---------------------------------------------------------------------------------


def test_the_card_stops_a_session_with_json(client, session, make_request, bob):
    req = make_request()
    client.force_login(bob)
    response = client.post(reverse("stop_session", args=[session.pk]), {"reason": "Prank caller"}, **JSON)
    assert response.status_code == 200
    assert response.json() == {
        "session": {"id": session.pk, "status": "closed", "close_code": events.STOPPED_CLOSE_CODE},
        "cancelled": [req.pk],
    }


def test_it_is_403_without_the_permission_and_nothing_changes(client, session, make_request, alice, charlie):
    req = make_request()
    for person in (alice, charlie):  # staff without the permission; not staff at all
        client.force_login(person)
        response = client.post(reverse("stop_session", args=[session.pk]), {"reason": "x"}, **JSON)
        assert response.status_code == 403 and "permission" in response.json()["error"]
        response = client.post(reverse("stop_session", args=[session.pk]), {"reason": "x"})
        assert response.status_code == 403
    client.logout()
    response = client.post(reverse("stop_session", args=[session.pk]), {"reason": "x"}, **JSON)
    assert response.status_code == 403
    nothing_changed(session, req)


def test_it_is_400_without_a_reason_and_409_on_a_closed_session(client, session, make_request, bob):
    req = make_request()
    client.force_login(bob)
    response = client.post(reverse("stop_session", args=[session.pk]), {"reason": ""}, **JSON)
    assert response.status_code == 400 and "Say why" in response.json()["error"]
    response = client.post(reverse("stop_session", args=[session.pk]), {"reason": "x" * 501}, **JSON)
    assert response.status_code == 400
    nothing_changed(session, req)
    services.close_session(session, code=1000, reason="the guest left")
    response = client.post(reverse("stop_session", args=[session.pk]), {"reason": "Too late"}, **JSON)
    assert response.status_code == 409 and response.json()["error"] == "This session has ended already."
    response = client.post(reverse("stop_session", args=[9999]), {"reason": "x"}, **JSON)
    assert response.status_code == 404
    assert client.get(reverse("stop_session", args=[session.pk])).status_code == 405


def test_the_case_page_offers_stop_to_those_who_may_and_goes_back_to_the_page(
    client, session, make_request, bob, alice
):
    view_review = Permission.objects.get(content_type__app_label="compliance", codename="view_review")
    bob.user_permissions.add(view_review)
    alice.user_permissions.add(view_review)
    req = make_request()
    case = reverse("review_case", args=[req.pk])
    client.force_login(alice)
    assert "Stop session" not in client.get(case).content.decode()
    client.force_login(bob)
    page = client.get(case).content.decode()
    assert "Stop session" in page and reverse("stop_session", args=[session.pk]) in page
    response = client.post(reverse("stop_session", args=[session.pk]), {"reason": "Prank caller", "next": case})
    assert response.status_code == 302 and response["Location"] == case
    page = client.get(case).content.decode()
    assert "Session stopped; 1 pending request(s) cancelled." in page
    assert "This session was stopped by staff." in page and "Stop session" not in page
    # An outside `next` is not followed.
    response = client.post(reverse("stop_session", args=[session.pk]), {"reason": "x", "next": "https://evil.example"})
    assert response["Location"] == "/"


def test_the_dashboard_offers_stop_only_to_those_who_may(client, alice, bob):
    client.force_login(alice)
    assert 'data-can-stop="false"' in client.get(reverse("dashboard")).content.decode()
    client.force_login(bob)
    assert 'data-can-stop="true"' in client.get(reverse("dashboard")).content.decode()
