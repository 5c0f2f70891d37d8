from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from approvals import services
from approvals.models import ApprovalRequest, AuditKind
from audit.models import AuditEvent

Status = ApprovalRequest.Status


def decide_url(req: ApprovalRequest | int) -> str:
    return reverse("decide", args=[req if isinstance(req, int) else req.pk])


# dashboard ---------------------------------------------------------------------------------


def test_dashboard_shows_the_live_queue_page_to_staff(client, alice):
    client.force_login(alice)

    response = client.get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="dashboard"' in page
    assert 'data-ws-path="/ws/dashboard/"' in page
    assert f'data-decide-url="{decide_url(0)}"' in page
    assert "js/dashboard.js" in page
    assert 'href="/history/"' in page  # the nav link


def test_dashboard_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_dashboard_is_forbidden_to_non_staff(client, charlie):
    client.force_login(charlie)

    assert client.get("/").status_code == 403


# decide ------------------------------------------------------------------------------------


def test_approve_returns_the_decided_request(client, alice, make_request):
    req = make_request()
    client.force_login(alice)

    response = client.post(decide_url(req), {"decision": "approve"})

    assert response.status_code == 200
    data = response.json()["request"]
    assert (data["id"], data["status"], data["decided_by_label"]) == (req.pk, "approved", "Alice")
    req.refresh_from_db()
    assert (req.status, req.decided_by) == (Status.APPROVED, alice)


def test_deny_with_a_reason(client, bob, make_request):
    req = make_request()
    client.force_login(bob)

    response = client.post(decide_url(req), {"decision": "deny", "reason": "Guest must come to the desk"})

    assert response.status_code == 200
    assert response.json()["request"]["reason"] == "Guest must come to the desk"
    req.refresh_from_db()
    assert (req.status, req.reason) == (Status.DENIED, "Guest must come to the desk")


def test_a_second_click_on_a_decided_request_says_so_and_changes_nothing(client, alice, bob, make_request):
    req = make_request()
    services.decide(req, approve=True, by=alice)
    client.force_login(bob)

    response = client.post(decide_url(req), {"decision": "deny", "reason": "no"})

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "This request was already approved by Alice."
    assert body["request"]["status"] == "approved"
    req.refresh_from_db()
    assert (req.status, req.decided_by, req.reason) == (Status.APPROVED, alice, "")
    assert AuditEvent.objects.filter(request=req, kind=AuditKind.DECIDED).count() == 1


def test_deciding_after_the_deadline_is_a_conflict(client, alice, make_request, settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 0
    req = make_request()
    client.force_login(alice)

    response = client.post(decide_url(req), {"decision": "approve"})

    assert response.status_code == 409
    assert "expired" in response.json()["error"]
    req.refresh_from_db()
    assert req.status == Status.EXPIRED


def test_deciding_an_unknown_request_is_not_found(client, alice, db):
    client.force_login(alice)

    response = client.post(decide_url(424242), {"decision": "approve"})

    assert response.status_code == 404
    assert response.json() == {"error": "There is no such request."}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"decision": "maybe"}, "Select a valid choice. maybe is not one of the available choices."),
        ({}, "This field is required."),
        ({"decision": "deny", "reason": "x" * 501}, "Keep the reason under 500 characters."),
    ],
    ids=["bad-decision", "missing-decision", "reason-too-long"],
)
def test_bad_input_is_refused_and_changes_nothing(client, alice, make_request, data, message):
    req = make_request()
    client.force_login(alice)

    response = client.post(decide_url(req), data)

    assert response.status_code == 400
    assert response.json()["error"] == message
    req.refresh_from_db()
    assert req.status == Status.PENDING


def test_deciding_is_forbidden_to_non_staff(client, charlie, make_request):
    req = make_request()
    client.force_login(charlie)

    response = client.post(decide_url(req), {"decision": "approve"})

    assert response.status_code == 403
    assert response.json() == {"error": "Only staff can decide approval requests."}
    req.refresh_from_db()
    assert req.status == Status.PENDING


def test_deciding_anonymously_is_forbidden_with_a_json_answer(client, make_request):
    req = make_request()

    response = client.post(decide_url(req), {"decision": "approve"})

    assert response.status_code == 403
    assert "log in" in response.json()["error"].lower()
    req.refresh_from_db()
    assert req.status == Status.PENDING


def test_decide_only_accepts_post(client, alice, make_request):
    client.force_login(alice)

    assert client.get(decide_url(make_request())).status_code == 405


def test_decide_enforces_csrf(alice, make_request):
    req = make_request()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    refused = browser.post(decide_url(req), {"decision": "approve"})
    assert refused.status_code == 403
    req.refresh_from_db()
    assert req.status == Status.PENDING

    # The page hands out the token; with it in the header, as dashboard.js sends it, it works.
    page = browser.get("/")
    token = page.context["csrf_token"]
    accepted = browser.post(decide_url(req), {"decision": "approve"}, headers={"X-CSRFToken": str(token)})
    assert accepted.status_code == 200
    req.refresh_from_db()
    assert req.status == Status.APPROVED


# history -----------------------------------------------------------------------------------


def test_history_lists_decided_requests_with_outcome_decider_reason_and_result(client, alice, session, make_request):
    approved = services.decide(make_request(upstream_id="mcpr_a", name="unlock_door"), approve=True, by=alice)
    services.record_mcp_call(
        session=session,
        item={"id": "c1", "approval_request_id": "mcpr_a", "arguments": "{}", "output": "Door 1204 unlocked"},
    )
    services.decide(
        make_request(upstream_id="mcpr_d", name="refund_minibar"), approve=False, by=alice, reason="<b>No</b>"
    )
    failing = make_request(upstream_id="mcpr_f", name="dim_lights")
    services.decide(failing, approve=True, by=alice)
    services.record_mcp_call(
        session=session,
        item={
            "id": "c2",
            "approval_request_id": "mcpr_f",
            "error": {"type": "http_error", "code": 502, "message": "Bad gateway"},
        },
    )
    pending = make_request(upstream_id="mcpr_p", name="order_taxi")
    client.force_login(alice)

    response = client.get("/history/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f'id="request-{approved.pk}"' in page
    assert "Unlock door" in page and "Door 1204 unlocked" in page
    assert "Refund minibar" in page and "&lt;b&gt;No&lt;/b&gt;" in page  # escaped
    assert "http error 502: Bad gateway" in page
    assert "Alice" in page and "Room 1204" in page
    assert f'id="request-{pending.pk}"' not in page


def test_history_filters_by_outcome(client, alice, make_request):
    approved = services.decide(make_request(), approve=True, by=alice)
    denied = services.decide(make_request(), approve=False, by=alice)
    client.force_login(alice)

    page = client.get("/history/?status=denied").content.decode()
    assert f'id="request-{denied.pk}"' in page
    assert f'id="request-{approved.pk}"' not in page

    # An unknown filter shows everything rather than nothing.
    page = client.get("/history/?status=bogus").content.decode()
    assert f'id="request-{denied.pk}"' in page and f'id="request-{approved.pk}"' in page


def test_history_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get("/history/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_history_is_forbidden_to_non_staff(client, charlie):
    client.force_login(charlie)

    assert client.get("/history/").status_code == 403


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data", b"decision=approve"),  # no boundary
        ("multipart/form-data; boundary=x", b"--x\r\n"),
    ],
)
def test_a_body_that_is_no_form_gets_json_400_and_changes_nothing(client, alice, content_type, body):
    session = services.open_session(kind="relay", label="Room 7", metadata={})
    req, _ = services.open_request(
        session=session,
        upstream_id="mcpr_body",
        server_label="hotel",
        tool_name="unlock_door",
        arguments="{}",
        raw_item={},
    )
    client.force_login(alice)
    response = client.generic("POST", f"/requests/{req.pk}/decide/", body, content_type=content_type)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    req.refresh_from_db()
    assert req.status == "pending"
