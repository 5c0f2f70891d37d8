"""Irreversible calls in Chromium: a manager registers a passkey on /profile/passkeys with
Chromium's virtual authenticator (DevTools WebAuthn domain), then approves a step-up rule's
request on the dashboard: the card asks the browser for an assertion, the server verifies it.
A key press (D) asks to confirm inline first, and a rule's required note is asked for. Real
Daphne, Celery worker, Redis; the request is opened through approvals.services as the relay
opens it. The pages are opened on localhost: a WebAuthn RP ID must be a host name, not an IP."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import ApprovalRequest, PasskeyCredential
from audit.models import AuditEvent
from tests.e2e.test_browser_approval import _orm_beside_playwright, browser, wait_card  # noqa: F401
from tests.e2e.test_browser_policy import in_own_thread

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

POLICY = """
rules:
  - label: large-refunds
    tool: issue_refund
    when: args.amount > 100.0
    outcome: ask
    approvers: [managers]
    deadline_seconds: 120
    requires: {step_up: true, reason_on_deny: true}
"""


@pytest.fixture
def web(stack, django_user_model, password):
    managers = Group.objects.create(name="managers")
    mia = django_user_model.objects.create_user("mia", password=password, is_staff=True, first_name="Mia")
    mia.groups.add(managers)
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=None, source="test")
    server = stack.web()
    stack.worker()
    server.local_url = server.url.replace("127.0.0.1", "localhost")
    return server


def open_refund(upstream_id: str) -> ApprovalRequest:
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    req, _ = services.open_request(
        session=session,
        upstream_id=upstream_id,
        server_label="hotel",
        tool_name="issue_refund",
        arguments=json.dumps({"room": "1204", "amount": 250, "currency": "EUR", "reason": "Broken TV"}),
        raw_item={"type": "mcp_approval_request"},
    )
    return req


def test_a_step_up_rule_is_decided_with_a_passkey(web, browser, password):  # noqa: F811
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    authenticator = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )["authenticatorId"]

    page.goto(f"{web.local_url}/accounts/login/")
    page.fill("input[name=username]", "mia")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{web.local_url}/")

    # Register a passkey from the profile page.
    page.goto(f"{web.local_url}/profile/passkeys/")
    page.fill("#passkey-add input[name=name]", "Office PC")
    page.click("#passkey-add button[type=submit]")
    page.locator(".passkey-list td", has_text="Office PC").wait_for(timeout=15000)
    passkey = PasskeyCredential.objects.get(user__username="mia")
    (stored,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert stored["signCount"] == passkey.sign_count

    page.goto(f"{web.local_url}/")
    page.locator("#dashboard:not(.is-loading)").wait_for(timeout=15000)
    req = in_own_thread(lambda: open_refund("mcpr_refund_stepup"))
    card = wait_card(page, req.pk)
    assert "your passkey" in card.inner_text()

    # D on the card: this rule needs a note to the guest to deny, so the card asks for it first.
    card.focus()
    page.keyboard.press("d")
    card.locator(".msg.error", has_text="needs a note to the guest to deny").wait_for(timeout=5000)
    page.keyboard.type("Please call the duty manager")  # the focus went to the note
    page.keyboard.press("Escape")  # back to the card
    # Now D asks to confirm, inline; Esc cancels and nothing is decided.
    page.keyboard.press("d")
    bar = card.locator(".confirm-bar")
    bar.wait_for(timeout=5000)
    assert "Deny" in bar.inner_text()
    page.keyboard.press("Escape")
    bar.wait_for(state="detached", timeout=5000)
    req.refresh_from_db()
    assert req.status == ApprovalRequest.Status.PENDING

    # Approve: the card asks the virtual authenticator for an assertion; the server verifies it.
    card.locator(".internal-note").fill("Manager checked the TV report")
    card.locator("button[data-decision=approve]").click()
    card.get_by_text("Approved by Mia").wait_for(timeout=15000)
    req.refresh_from_db()
    assert (req.status, req.decided_by_label) == (ApprovalRequest.Status.APPROVED, "Mia")
    row = AuditEvent.objects.get(request=req, kind="decided")
    assert row.payload["step_up"]["passkey_id"] == passkey.pk
    assert row.payload["internal_note"] == "Manager checked the TV report"
    passkey.refresh_from_db()
    assert passkey.sign_count >= 1 and passkey.last_used is not None
    context.close()
