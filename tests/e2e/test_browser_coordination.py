"""Coordination on a real shift, in Chromium (issue 13): two front-desk staff and a manager.
Presence lists show who is online; "I'm on it" shows on the colleague's screen with a live
counter; a decision while the other types keeps their text; an escalation stamps the front
desk's card and the card appears for the manager. Real Daphne, Celery worker, Redis; the
requests are opened through approvals.services exactly as the relay opens them."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import ApprovalRequest
from tests.e2e.test_browser_approval import _orm_beside_playwright, browser, log_in, wait_card  # noqa: F401
from tests.e2e.test_browser_policy import in_own_thread

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

POLICY = """
rules:
  - label: doors
    tool: unlock_door
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 120
    on_deadline: escalate
    escalations:
      - {approvers: managers, deadline_seconds: 120, on_deadline: deny}
  - label: late-checkout
    tool: extend_checkout
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 8
    on_deadline: escalate
    escalations:
      - {approvers: managers, deadline_seconds: 120, on_deadline: deny}
"""


@pytest.fixture
def shift(stack, django_user_model, password):
    groups = {n: Group.objects.create(name=n) for n in ("front-desk", "managers")}
    for username, group in (("alice", "front-desk"), ("max", "front-desk"), ("bob", "managers")):
        user = django_user_model.objects.create_user(
            username, password=password, is_staff=True, first_name=username.title()
        )
        user.groups.add(groups[group])
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=None, source="test")
    web = stack.web()
    stack.worker()
    return web


def opener(tool: str, upstream_id: str, arguments: dict):
    def open_it() -> ApprovalRequest:
        session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
        req, _ = services.open_request(
            session=session,
            upstream_id=upstream_id,
            server_label="hotel",
            tool_name=tool,
            arguments=json.dumps(arguments),
            raw_item={"type": "mcp_approval_request"},
        )
        return req

    return open_it


def test_claims_presence_kept_text_and_a_visible_escalation(shift, browser, password):  # noqa: F811
    pages = {name: log_in(browser, shift.url, name, password) for name in ("alice", "max", "bob")}
    for page in pages.values():
        page.locator("#conn.is-live").wait_for(timeout=15000)

    # Presence: each screen lists who of its person's groups has a dashboard open.
    pages["alice"].locator("#presence", has_text="Alice, Max").wait_for(timeout=15000)
    pages["bob"].locator("#presence", has_text="Online in managers: Bob").wait_for(timeout=15000)

    door = in_own_thread(opener("unlock_door", "mcpr_door", {"room": "1204", "reason": "Locked out"}))
    alice_card, max_card = wait_card(pages["alice"], door.pk), wait_card(pages["max"], door.pk)
    max_card.locator(".next-step", has_text="to managers in").wait_for(timeout=10000)
    assert pages["bob"].locator(f"article.card[data-id='{door.pk}']").count() == 0

    # A claim shows on the other front-desk screen, with a counter that runs.
    alice_card.get_by_role("button", name="I'm on it").click()
    alice_card.locator(".claim-text", has_text="You are on it").wait_for(timeout=10000)
    claim = max_card.locator(".claim-text", has_text="Alice is on it, 0:0")
    claim.wait_for(timeout=10000)
    first = claim.inner_text()
    counter = f"document.querySelector(\"article.card[data-id='{door.pk}'] .claim-text\").textContent"
    pages["max"].wait_for_function(f"{counter} !== {json.dumps(first)}", timeout=10000)

    # Max decides anyway while Alice types: her text stays on the stamped card.
    alice_card.locator(".reason").fill("Guest showed ID at the desk")
    max_card.locator("button[data-decision=approve]").click()
    max_card.locator(".stamp-title", has_text="Approved by Max").wait_for(timeout=10000)
    alice_card.locator(".kept-title", has_text="Decided by Max while you were typing").wait_for(timeout=10000)
    assert alice_card.locator(".kept-text").inner_text() == "Guest showed ID at the desk"
    assert alice_card.locator(".copy-kept").is_enabled()
    assert max_card.locator(".kept").is_hidden()  # his own decision: nothing to keep

    # Nobody of the front desk decides the late checkout: at its deadline it escalates; the
    # front desk's cards are stamped and the card appears for the manager, live.
    checkout = in_own_thread(opener("extend_checkout", "mcpr_checkout", {"room": "1204", "until": "14:00"}))
    alice_checkout = wait_card(pages["alice"], checkout.pk)
    alice_checkout.locator(".stamp-title", has_text="Escalated to managers").wait_for(timeout=20000)
    pages["max"].locator("#recent li", has_text="Escalated to managers").wait_for(timeout=10000)
    bob_card = wait_card(pages["bob"], checkout.pk)
    assert "for managers · escalated" in bob_card.inner_text()

    # The front desk's history shows the request and its outcome once the manager decides.
    bob_card.locator("button[data-decision=deny]").click()
    bob_card.locator(".stamp-title", has_text="Denied by Bob").wait_for(timeout=10000)
    history = pages["alice"]
    history.goto(f"{shift.url}/history/")
    row = history.locator(f"#request-{checkout.pk}")
    row.wait_for(timeout=10000)
    assert "escalated to managers" in row.inner_text() and "Bob" in row.inner_text()

    # Alice left the dashboard: the manager's and Max's presence lists drop her.
    pages["max"].locator("#presence", has_text="Online in front-desk: Max").wait_for(timeout=15000)
    for page in pages.values():
        page.close()
