"""A phone call's card, as a staff member uses it: the call's state, and Transfer from the card."""

from __future__ import annotations

import pytest

from approvals.models import ApprovalRequest
from realtime_bridge.models import Call
from tests.e2e.test_browser_approval import _orm_beside_playwright, browser, log_in  # noqa: F401 - fixtures
from tests.e2e.test_sip_calls import UNLOCK, answered_call, hotel_route, sip, wait_until  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_staff_see_the_call_on_its_card_and_transfer_it_from_there(sip, browser, alice, password):  # noqa: F811
    call_id, call = answered_call(sip)
    page = log_in(browser, sip.web.url, "alice", password)
    sip.sim.say(call_id, UNLOCK)
    req = wait_until(lambda: ApprovalRequest.objects.filter(session_id=call.session_id).first(), message="request")
    card = page.locator(f"article.card[data-id='{req.pk}']")
    card.wait_for(timeout=15000)
    line = card.locator(".call-line").inner_text()
    assert "Phone call from +14155550111" in line and "In progress" in line

    card.locator(".transfer").click()  # no target yet: says so, changes nothing
    card.get_by_text("Say where to transfer the call").wait_for(timeout=5000)
    assert sip.sim.call(call_id)["status"] == "accepted"

    card.locator(".transfer-to").fill("tel:+14155550123")
    card.locator(".transfer").click()
    card.get_by_text("Transfer requested.").wait_for(timeout=10000)
    assert wait_until(lambda: sip.sim.call(call_id)["status"] == "referred", message="the simulator to refer")
    call = wait_until(lambda: Call.objects.filter(pk=call.pk, status="referred").first(), message="referred")
    assert call.refer_target == "tel:+14155550123" and "Alice" in call.outcome
    # The guest left the AI line: the request that was waiting on it is cancelled.
    wait_until(lambda: ApprovalRequest.objects.filter(pk=req.pk, status="cancelled").exists(), message="cancel")
    page.close()
