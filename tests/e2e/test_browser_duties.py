"""Duties in Chromium on the real Daphne: a compliance reviewer's card and the starter's card show
why instead of Approve/Deny, someone else decides; logging out closes the dashboard's socket and
the page asks to log in again instead of reconnecting."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import REVIEW_ONLY_GROUP, ApprovalRequest
from tests.e2e.test_browser_approval import _orm_beside_playwright, browser, log_in, wait_card  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def reviewer(django_user_model, password):
    rita = django_user_model.objects.create_user("rita", "rita@example.org", password, is_staff=True, first_name="Rita")
    rita.groups.add(Group.objects.get_or_create(name=REVIEW_ONLY_GROUP)[0])
    return rita


def request_started_by(user) -> ApprovalRequest:
    session = services.open_session(kind="responses", label="Refund chat", metadata={}, started_by=user)
    req, _ = services.open_request(
        session=session,
        upstream_id="mcpr_duties",
        server_label="hotel",
        tool_name="refund_minibar_charge",
        arguments='{"booking_id": "B42", "amount": 120}',
        raw_item={"type": "mcp_approval_request", "id": "mcpr_duties"},
    )
    return req


def test_reviewer_and_starter_see_why_not_buttons_and_logout_closes_the_socket(
    stack,
    browser,  # noqa: F811 - the fixture imported above
    alice,
    bob,
    reviewer,
    password,
):
    web = stack.web(APPROVAL_TIMEOUT_SECONDS="120")
    # Opened before the pages load, so that each page's snapshot holds it (this test process
    # cannot send live events from beside Playwright's event loop).
    req = request_started_by(alice)
    rita_page = log_in(browser, web.url, "rita", password)
    alice_page = log_in(browser, web.url, "alice", password)
    bob_page = log_in(browser, web.url, "bob", password)

    rita_card = wait_card(rita_page, req.pk)
    rita_card.get_by_text("Members of compliance review decisions and never make them.").wait_for(timeout=10000)
    assert not rita_card.locator("button[data-decision=approve]").is_visible()
    assert not rita_card.locator("button[data-decision=deny]").is_visible()

    alice_card = wait_card(alice_page, req.pk)
    alice_card.get_by_text("You started this session; another staff member decides.").wait_for(timeout=10000)
    assert not alice_card.locator("button[data-decision=approve]").is_visible()
    alice_card.press("a")  # the key does nothing either
    time.sleep(0.5)  # nothing to poll for: asserting that no request was sent
    assert ApprovalRequest.objects.get(pk=req.pk).status == "pending"

    bob_card = wait_card(bob_page, req.pk)
    bob_card.locator("button[data-decision=approve]").click()
    bob_card.get_by_text("Approved by Bob").wait_for(timeout=10000)

    # Alice logs out from elsewhere in the same browser (her cookie, as another tab would).
    alice_page.evaluate(
        """() => fetch("/accounts/logout/", {method: "POST", credentials: "same-origin",
                 headers: {"X-CSRFToken": document.getElementById("dashboard").dataset.csrfToken}})"""
    )
    alice_page.get_by_text("Your session has ended: log in again.").wait_for(timeout=10000)
    assert alice_page.locator("#conn").inner_text() == "Session ended"
    assert alice_page.get_by_role("link", name="Log in").get_attribute("href") == "/accounts/login/?next=/"
    # Rita's and Bob's dashboards stay live.
    assert rita_page.locator("#conn").inner_text() == "Live" and bob_page.locator("#conn").inner_text() == "Live"
    for page in (rita_page, alice_page, bob_page):
        page.close()
