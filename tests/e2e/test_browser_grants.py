"""Decisions beyond yes and no on the real processes (issue 14): Daphne, a Celery worker and beat,
Redis, the simulator standing in for OpenAI, the hotel MCP server, the official openai SDK as
the guest's device, and Chromium as the staff member's browser.

- Approve with changes: the refund of 48 becomes 30; upstream the first call is denied with a
  reason that names the new arguments, the model's call with exactly those runs without a card.
- Grant for the session: the door is approved for the rest of the session; the next unlock in
  that session runs without a card, the dashboard lists the grant, and Revoke ends it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from django.db import connection
from openai import OpenAI

from approvals import services
from approvals.models import ApprovalRequest, Grant, McpServer
from audit.models import AuditEvent
from tests.e2e import test_browser_approval as approval_e2e
from tests.e2e.test_browser_approval import log_in, start, wait_card

# The fixtures of the approval loop's browser tests, shared (assigned, so that the test
# parameters of the same names do not shadow an import).
browser = approval_e2e.browser
sim_url = approval_e2e.sim_url
_orm_beside_playwright = approval_e2e._orm_beside_playwright

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


class Guest(threading.Thread):
    """A guest's device on the official SDK, through the relay, saying several things in turn:
    each command waits for the previous turn to end (its approval answered and the follow-up
    response done)."""

    def __init__(self, web_url: str, token: str, commands: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = OpenAI(api_key=token, base_url=f"{web_url}/v1")
        self.commands = list(commands)
        self.events: list[Any] = []
        self.turns_done = 0
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def _say(self, conn: Any, text: str) -> None:
        conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        )
        conn.response.create()

    def run(self) -> None:
        try:
            with self.client.realtime.connect(model="gpt-realtime") as conn:
                started = answered = False
                for event in conn:
                    self.events.append(event)
                    if event.type == "mcp_list_tools.completed" and not started:
                        started = True
                        self._say(conn, self.commands.pop(0))
                    if event.type == "conversation.item.done" and event.item.type == "mcp_approval_response":
                        answered = True
                    if answered and event.type == "response.done":
                        answered = False
                        self.turns_done += 1
                        if not self.commands:
                            break
                        self._say(conn, self.commands.pop(0))
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    def items(self, kind: str) -> list[Any]:
        return [e.item for e in self.events if e.type == "conversation.item.done" and e.item.type == kind]


@pytest.fixture
def hotel_probed(hotel_mcp, db):
    """The hotel registered and probed: the registry knows each tool's input schema."""
    server, _ = services.register_mcp_server(
        label="hotel", url=hotel_mcp.mcp_url, headers={"X-API-Key": hotel_mcp.api_key}, description="Front desk"
    )
    # The probe runs its own event loop; Playwright's sync API keeps one in this thread.
    found: dict[str, Any] = {}

    def probe() -> None:
        try:
            found["result"] = services.probe_mcp_server(McpServer.objects.get(pk=server.pk), by=None)
        finally:
            connection.close()

    worker = threading.Thread(target=probe)
    worker.start()
    worker.join(60)
    assert found["result"].ok, found["result"]
    return hotel_mcp


def open_guest(web_url: str, commands: list[str]) -> Guest:
    _, token = services.issue_token(label="Room 1204", metadata={"room": "1204", "guest": "Dana Whitfield"})
    guest = Guest(web_url, token, commands)
    guest.start()
    return guest


def wait_for(what: str, check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def refund(amount: int) -> str:
    args = {"room": "1204", "amount": amount, "currency": "EUR", "reason": "Minibar charged twice"}
    return f"call hotel issue_refund {json.dumps(args)}"


def test_a_refund_approved_with_changes_runs_as_edited(
    stack, sim_url, hotel_probed, browser, alice, password, tmp_path
):
    """The model calls again with exactly the edited arguments, and that call runs without a card."""
    web = start(stack, sim_url, tmp_path, timeout=60)
    page = log_in(browser, web.url, "alice", password)
    guest = open_guest(web.url, [refund(48), refund(30)])
    first = wait_for("the refund's request", lambda: ApprovalRequest.objects.order_by("pk").first())
    card = wait_card(page, first.pk)
    card.get_by_text("Approve with changes…").click()
    edit = card.locator("textarea.edit-args")
    # The wrong kind of value is refused by the tool's schema, on the card, and nothing changes.
    edit.fill(json.dumps({"room": "1204", "amount": "thirty", "currency": "EUR", "reason": "Minibar charged twice"}))
    card.locator("button[data-decision=approve]").click()
    card.get_by_text("do not fit the tool").wait_for(timeout=10000)
    edit.fill(json.dumps({"room": "1204", "amount": 30, "currency": "EUR", "reason": "Minibar charged twice"}))
    card.locator("button.approve-changes").click()
    card.get_by_text("Approved with changes by Alice").wait_for(timeout=10000)

    assert guest.finished.wait(60), "the guest never finished both turns"
    assert guest.error is None, guest.error
    answers = guest.items("mcp_approval_response")
    assert [a.approve for a in answers] == [False, True]
    assert '"amount":30' in (answers[0].reason or "") and "exactly these arguments" in (answers[0].reason or "")
    # Only the edited call ran: one refund of 30 on the folio. The asked call (48) ends with the
    # denial's error, as the real API leaves a denied call (REALTIME_PROTOCOL.md 5.4).
    calls = guest.items("mcp_call")
    ran = [c for c in calls if not c.error]
    assert len(ran) == 1 and json.loads(ran[0].arguments)["amount"] == 30
    assert all(json.loads(c.arguments)["amount"] == 48 and c.output is None for c in calls if c.error)
    assert [r["amount"] for r in hotel_probed.state()["rooms"]["1204"]["folio"]["refunds"]] == [30]
    second = ApprovalRequest.objects.exclude(pk=first.pk).get()
    assert second.status == "approved" and second.grant is not None and second.grant.source_request_id == first.pk
    # Never a card: it was approved before anyone was asked.
    assert not AuditEvent.objects.filter(request_id=second.pk, kind="notified").exists()
    assert page.locator(f"article.card[data-id='{second.pk}']").count() == 0
    first.refresh_from_db()
    assert first.status == "denied" and first.edited_arguments and first.decided_by == alice
    # The history shows both sides.
    page.goto(f"{web.url}/history/")
    row = page.locator(f"#request-{first.pk}")
    assert "approved with changes" in row.inner_text().lower()
    assert '"amount": 30' in row.locator(".args-edited").inner_text()
    page.close()


def test_the_door_granted_for_the_session_then_revoked(
    stack, sim_url, hotel_probed, browser, alice, password, tmp_path
):
    web = start(stack, sim_url, tmp_path, timeout=60)
    page = log_in(browser, web.url, "alice", password)
    unlock = 'call hotel unlock_door {"room": "1204", "reason": "Guest locked out"}'
    again = 'call hotel unlock_door {"room": "1204", "reason": "Locked out again"}'
    guest = open_guest(web.url, [unlock, again])
    first = wait_for("the door's request", lambda: ApprovalRequest.objects.order_by("pk").first())
    card = wait_card(page, first.pk)
    card.locator("select.scope").select_option("session")
    card.locator("button[data-decision=approve]").click()
    card.get_by_text("Approved by Alice").wait_for(timeout=10000)

    assert guest.finished.wait(60), "the guest never finished both turns"
    assert guest.error is None, guest.error
    assert [a.approve for a in guest.items("mcp_approval_response")] == [True, True]
    assert len(guest.items("mcp_call")) == 2
    grant = Grant.objects.get()
    assert grant.scope == "session" and grant.source_request_id == first.pk
    second = ApprovalRequest.objects.exclude(pk=first.pk).get()
    assert second.status == "approved" and second.grant_id == grant.pk
    assert page.locator(f"article.card[data-id='{second.pk}']").count() == 0
    # The dashboard lists the live grant, used once; Revoke ends it (audited).
    item = page.locator(f"#grants-list li[data-id='{grant.pk}']")
    item.get_by_text("used 1×").wait_for(timeout=10000)
    assert "unlock_door for this session" in item.inner_text()
    item.locator("button.revoke").click()
    page.locator(f"#grants-list li[data-id='{grant.pk}']").wait_for(state="detached", timeout=10000)
    grant.refresh_from_db()
    assert grant.state() == "revoked" and grant.revoked_by_label == "Alice"
    assert AuditEvent.objects.filter(kind="grant_revoked", actor=alice, payload__grant=grant.pk).exists()
    page.close()


def test_approve_all_of_one_turn_confirms_then_says_which_could_not_be(stack, browser, alice, password):
    """Two requests from one turn of the model, one under a rule that needs a passkey: Approve
    all asks to confirm, approves the door, and says why the refund must be decided on its own."""
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(
        "rules:\n  - {label: refunds, server: hotel, tool: issue_refund, outcome: ask, requires: {step_up: true}}\n",
        by=None,
        source="test",
    )
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    services.add_conversation_line(session=session, role="user", text="Open my door and refund the minibar")
    door, _ = services.open_request(
        session=session,
        upstream_id="mcpr_door",
        server_label="hotel",
        tool_name="unlock_door",
        arguments='{"room": "1204"}',
        raw_item={},
    )
    money, _ = services.open_request(
        session=session,
        upstream_id="mcpr_refund",
        server_label="hotel",
        tool_name="issue_refund",
        arguments='{"room": "1204", "amount": 14.5, "currency": "EUR", "reason": "Minibar"}',
        raw_item={},
    )
    assert door.turn == money.turn
    web = stack.web()
    page = log_in(browser, web.url, "alice", password)
    turn = page.locator("#turns .turn")
    turn.get_by_text("2 requests from one turn of Room 1204").wait_for(timeout=15000)
    turn.locator("button.approve-all").click()
    turn.locator("button.confirm-all").click()  # "Yes, approve all 2"
    # Two decisions through the service, on a machine that may be running a second suite.
    turn.get_by_text("Unlock door: approved").wait_for(timeout=60000)
    assert "Issue refund: not approved: This rule needs your passkey" in turn.inner_text()
    door.refresh_from_db()
    money.refresh_from_db()
    assert door.status == "approved" and door.decided_by == alice
    assert money.status == "pending"
    page.close()
