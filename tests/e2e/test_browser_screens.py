"""The staff screens as a German-speaking duty manager sees them on a phone in dark mode: real
Daphne and Redis, Chromium at 390x844 with the system's dark scheme and German as its language.
The card speaks German, shows the refund's amount as German writes euros, leads with the call
and folds the conversation under it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from approvals import services
from approvals.models import ApprovalRequest
from tests.e2e.test_browser_approval import _orm_beside_playwright, browser, wait_card  # noqa: F401
from tests.e2e.test_browser_policy import in_own_thread

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def open_refund() -> ApprovalRequest:
    session = services.open_session(kind="relay", label="Zimmer 1204", metadata={"room": "1204"})
    services.add_conversation_line(session=session, role="user", text="Die Minibar war leer, ich möchte Geld zurück.")
    req, _ = services.open_request(
        session=session,
        upstream_id="mcpr_refund_20",
        server_label="hotel",
        tool_name="issue_refund",
        arguments=json.dumps({"room": "1204", "amount": 20, "currency": "EUR", "reason": "Minibar"}),
        raw_item={"type": "mcp_approval_request"},
    )
    return req


def test_a_german_phone_in_dark_mode_shows_the_call_first_with_its_amount(stack, browser, django_user_model, password):  # noqa: F811
    django_user_model.objects.create_user("mia", password=password, is_staff=True, first_name="Mia", last_name="Krause")
    web = stack.web()
    req = in_own_thread(open_refund)

    context = browser.new_context(
        viewport={"width": 390, "height": 844}, locale="de-DE", color_scheme="dark", is_mobile=True
    )
    page = context.new_page()
    page.goto(f"{web.url}/accounts/login/")
    assert page.locator("h1").inner_text() == "Anmelden"
    page.fill("input[name=username]", "mia")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{web.url}/")

    card = wait_card(page, req.pk)
    assert page.locator("h1").first.inner_text().startswith("Offene Freigaben")
    assert card.locator("button[data-decision=approve]").inner_text() == "Genehmigen"
    amount = card.locator("dd.amount")
    assert amount.inner_text() == "20,00\xa0€"
    assert "Mia Krause abmelden" in page.locator(".topbar").inner_text()
    # Asked at a time in the server's zone (UTC in tests), named.
    assert card.locator("time.asked").inner_text().endswith(" UTC")

    # The call is above the fold; the conversation is folded beneath it and opens on a tap.
    box = card.locator(".args").bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844
    convo = card.locator("details.convo-wrap")
    assert convo.get_attribute("open") is None
    assert not card.locator(".convo .said").first.is_visible()
    convo.locator("summary").click()
    assert card.locator(".convo .said").first.inner_text().startswith("Die Minibar")

    # The system's dark scheme: a dark page and card.
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    card_bg = card.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(15, 17, 21)" and card_bg == "rgb(24, 27, 33)"

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-de-dark-390x844.png"))
    context.close()
