"""Per-group queues in Chromium: each staff member sees the requests their groups may decide, with
the quorum's progress; when the deadline escalates, the card leaves the managers' screens and
appears on the general manager's, live. Real Daphne, Celery worker, Redis; the request is opened
through approvals.services exactly as the relay opens it."""

from __future__ import annotations

import json
import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from approvals import services
from approvals.models import ApprovalRequest
from tests.e2e.test_browser_approval import _orm_beside_playwright, browser, log_in, wait_card  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

POLICY = """
rules:
  - label: large-refunds
    tool: issue_refund
    when: args.amount > 100.0
    outcome: ask
    approvers: [managers]
    quorum: 2
    deadline_seconds: 6
    on_deadline: escalate
    escalations:
      - {approvers: general-managers, deadline_seconds: 60, on_deadline: deny}
"""


@pytest.fixture
def staff(stack, django_user_model, password):
    groups = {n: Group.objects.create(name=n) for n in ("managers", "general-managers", "front-desk")}
    for username, group in (
        ("mia", "managers"),
        ("max", "managers"),
        ("gus", "general-managers"),
        ("fred", "front-desk"),
    ):
        user = django_user_model.objects.create_user(
            username, password=password, is_staff=True, first_name=username.title()
        )
        user.groups.add(groups[group])
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=None, source="test")
    web = stack.web()
    stack.worker()
    return web


def open_refund() -> ApprovalRequest:
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    req, _ = services.open_request(
        session=session,
        upstream_id="mcpr_refund_200",
        server_label="hotel",
        tool_name="issue_refund",
        arguments=json.dumps({"room": "1204", "amount": 200, "currency": "EUR", "reason": "Broken TV"}),
        raw_item={"type": "mcp_approval_request"},
    )
    return req


def in_own_thread(func):
    """Run `func` where no event loop runs: Playwright keeps one in the test's thread, and the
    services send their dashboard events with async_to_sync after commit, as in a web request."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(func())
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert result, "the call in its own thread failed (see the log)"
    return result[0]


def test_queues_per_group_with_quorum_progress_and_live_escalation(staff, browser, password):  # noqa: F811
    pages = {name: log_in(browser, staff.url, name, password) for name in ("mia", "max", "gus", "fred")}
    for page in pages.values():
        page.locator("#conn.is-live, #conn.is-connected, #dashboard:not(.is-loading)").first.wait_for(timeout=10000)
    req = in_own_thread(open_refund)

    mia_card = wait_card(pages["mia"], req.pk)
    max_card = wait_card(pages["max"], req.pk)
    assert "0 of 2 managers" in mia_card.inner_text() and "Rule large-refunds" in mia_card.inner_text()
    # Not theirs: the front desk and the general manager see an empty queue.
    for name in ("gus", "fred"):
        assert pages[name].locator(f"article.card[data-id='{req.pk}']").count() == 0
        assert pages[name].locator("#queue-count").inner_text() == "0"

    mia_card.locator("button[data-decision=approve]").click()
    mia_card.get_by_text("Your approval is counted: 1 of 2 managers").wait_for(timeout=10000)
    assert mia_card.locator("button[data-decision=approve]").is_disabled()  # the same person cannot count twice
    max_card.get_by_text("1 of 2 managers approved (Mia)").wait_for(timeout=10000)

    # Nobody else approves: the worker escalates at the deadline and the card moves, live.
    # Mia's group had it: her card is stamped with where it went (issue 13), then leaves.
    mia_card.locator(".stamp-title", has_text="Escalated to general-managers").wait_for(timeout=15000)
    gus_card = wait_card(pages["gus"], req.pk)
    assert "for general-managers · escalated" in gus_card.inner_text()
    pages["mia"].locator(f"article.card[data-id='{req.pk}']").wait_for(state="detached", timeout=10000)
    assert pages["fred"].locator(f"article.card[data-id='{req.pk}']").count() == 0

    gus_card.locator("button[data-decision=approve]").click()
    gus_card.get_by_text("Approved by Gus").wait_for(timeout=10000)
    req.refresh_from_db()
    assert (req.status, req.stage, req.decided_by_label) == (ApprovalRequest.Status.APPROVED, 1, "Gus")
    for page in pages.values():
        page.close()
