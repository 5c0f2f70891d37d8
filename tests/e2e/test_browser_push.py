"""The installable app's push notifications in Chromium (issue 13), on the real Daphne: the
dashboard registers its service worker (/sw.js); a push delivered through DevTools
(`ServiceWorker.deliverPushMessage`, with the payload notify.push builds for the request) shows a
notification, and its Approve action decides as the logged-in staff member. After logout the
same action decides nothing (the worker opens the card instead). A rule that asks for a
confirmation gets a notification without buttons.

No browser vendor's push service can be reached here, so DevTools stands in for the delivery;
the encryption and the RFC 8030 side are tested in tests/notify/test_push.py. Chromium cannot
click a notification from DevTools either, so the click is dispatched in the worker itself, on
the notification it shows, through the worker's own notificationclick listener."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from approvals import services
from approvals.models import ApprovalRequest, AuditKind
from audit.models import AuditEvent
from notify import push
from tests.e2e.test_browser_approval import _orm_beside_playwright, browser  # noqa: F401 - fixtures
from tests.e2e.test_browser_coordination import opener
from tests.e2e.test_browser_policy import in_own_thread

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

Status = ApprovalRequest.Status

# Any staff member decides; the door needs a confirmation a notification's button cannot give.
POLICY = """
rules:
  - label: late-checkout
    tool: extend_checkout
    outcome: ask
    deadline_seconds: 600
    on_deadline: deny
  - label: doors
    tool: unlock_door
    outcome: ask
    deadline_seconds: 600
    on_deadline: deny
    requires: {confirm: true}
"""

# What the page sees of its registration's notifications with a tag.
SHOWN = """async (tag) => {
  const registration = await navigator.serviceWorker.ready;
  const shown = await registration.getNotifications({tag});
  return shown.map((n) => ({title: n.title, body: n.body, tag: n.tag, data: n.data,
                            actions: n.actions.map((a) => a.action)}));
}"""

# A click on an action of the notification with `tag`, dispatched in the worker to its own
# notificationclick listener. A script-made event is untrusted and its waitUntil would throw,
# so the promise the listener hands to waitUntil is kept and awaited here instead. Where the
# worker would open the card, the window it asks for is recorded: a script-made click carries
# no user gesture, so Chromium would refuse to focus or open one.
CLICK = """async ({tag, action}) => {
  const [notification] = await self.registration.getNotifications({tag});
  if (!notification) return {found: false, handled: false, opened: []};
  const opened = [];
  self.clients.matchAll = async () => [];
  self.clients.openWindow = async (url) => { opened.push(url); return null; };
  let work = null;
  const event = new NotificationEvent("notificationclick", {notification, action});
  Object.defineProperty(event, "waitUntil", {value: (promise) => { work = promise; }});
  try {
    self.dispatchEvent(event);
    await work;
  } finally {
    delete self.clients.matchAll;
    delete self.clients.openWindow;
  }
  return {found: true, handled: work !== null, opened};
}"""


def poll(check, *, page, timeout: float = 30, what: str) -> Any:
    """`check()` until it gives something truthy, letting Playwright's loop run in between (the
    DevTools events arrive then)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(200)


@pytest.fixture
def web(stack, alice, password):
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=None, source="test")
    return stack.web()


@pytest.fixture
def app(browser, web, password):  # noqa: F811 - the fixture imported above
    """Alice's browser with notifications allowed for the app, logged in on the dashboard, its
    service worker active, and a DevTools session that knows the worker's registration."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.grant_permissions(["notifications"], origin=web.url)
    page = context.new_page()
    page.goto(f"{web.url}/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{web.url}/")
    # app.js registers the worker for staff; ready resolves once it is active.
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => r.active.scriptURL)") == f"{web.url}/sw.js"
    assert page.evaluate("Notification.permission") == "granted"

    cdp = context.new_cdp_session(page)
    registrations: dict[str, dict[str, Any]] = {}
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.update({r["registrationId"]: r for r in event["registrations"]}),
    )
    cdp.send("ServiceWorker.enable")
    registration_id = poll(
        lambda: next(
            (rid for rid, r in registrations.items() if r["scopeURL"] == f"{web.url}/" and not r["isDeleted"]), None
        ),
        page=page,
        what="the service worker's registration in DevTools",
    )
    yield App(web.url, context, page, cdp, registration_id)
    context.close()


class App:
    def __init__(self, url: str, context: Any, page: Any, cdp: Any, registration_id: str) -> None:
        self.url, self.context, self.page, self.cdp = url, context, page, cdp
        self.registration_id = registration_id

    def deliver(self, data: dict[str, Any]) -> None:
        self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": self.url, "registrationId": self.registration_id, "data": json.dumps(data)},
        )

    def shown(self, tag: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.page.evaluate(SHOWN, tag)
        return result

    def wait_shown(self, tag: str) -> dict[str, Any]:
        [notification] = poll(lambda: self.shown(tag), page=self.page, what=f"notification {tag}")
        return notification

    def worker(self) -> Any:
        # The newest: Chromium may stop an idle worker and start it again for the next event.
        return poll(
            lambda: next((w for w in reversed(self.context.service_workers) if w.url == f"{self.url}/sw.js"), None),
            page=self.page,
            what="the service worker in Playwright",
        )

    def click(self, tag: str, action: str) -> dict[str, Any]:
        result: dict[str, Any] = self.worker().evaluate(CLICK, {"tag": tag, "action": action})
        assert result["found"] and result["handled"], result
        return result


def open_checkout(upstream_id: str) -> ApprovalRequest:
    req = in_own_thread(opener("extend_checkout", upstream_id, {"room": "1204", "until": "14:00"}))
    assert isinstance(req, ApprovalRequest)
    return ApprovalRequest.objects.for_one().get(pk=req.pk)


def decided_rows(req: ApprovalRequest) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(request_id=req.pk, kind=AuditKind.DECIDED))


def test_a_pushed_notification_shows_and_its_approve_action_decides_as_the_logged_in_person(app, alice):
    req = open_checkout("mcpr_push_approve")
    data = push.payload(req, kind=push.NEW)
    assert [a["action"] for a in data["actions"]] == ["approve", "deny"]

    app.deliver(data)
    shown = app.wait_shown(f"request-{req.pk}")
    assert shown["title"] == data["title"] and shown["body"] == data["body"]
    assert "Rule late-checkout" in shown["body"] and "Room 1204" in shown["body"]
    assert shown["actions"] == ["approve", "deny"]
    assert shown["data"] == {"url": f"/?request={req.pk}", "decideUrl": data["decide_url"], "requestId": req.pk}

    result = app.click(f"request-{req.pk}", "approve")

    assert result["opened"] == []  # decided in place, no window needed
    fresh = poll(
        lambda: ApprovalRequest.objects.filter(pk=req.pk, status=Status.APPROVED).first(),
        page=app.page,
        what="the approval in the database",
    )
    assert (fresh.decided_by, fresh.decided_by_label) == (alice, "Alice")
    [row] = decided_rows(req)
    assert row.actor == alice
    # The worker closed the request's notification and says what happened in its place.
    assert app.shown(f"request-{req.pk}") == []
    assert app.wait_shown(f"result-{req.pk}")["title"] == "Approved"


def test_a_rule_that_asks_for_a_confirmation_gets_a_notification_without_buttons(app):
    door = in_own_thread(opener("unlock_door", "mcpr_push_door", {"room": "1204", "reason": "Locked out"}))
    assert isinstance(door, ApprovalRequest)
    door = ApprovalRequest.objects.for_one().get(pk=door.pk)
    data = push.payload(door, kind=push.NEW)
    assert data["actions"] == [] and "Rule doors" in data["body"]

    app.deliver(data)
    shown = app.wait_shown(f"request-{door.pk}")
    assert shown["actions"] == []
    assert ApprovalRequest.objects.get(pk=door.pk).status == Status.PENDING


def test_after_logout_the_approve_action_decides_nothing_and_opens_the_card(app):
    req = open_checkout("mcpr_push_logout")
    app.deliver(push.payload(req, kind=push.NEW))
    app.wait_shown(f"request-{req.pk}")

    # Logged out in this browser (the worker shares its cookies), as from another tab.
    app.page.evaluate(
        """() => fetch("/accounts/logout/", {method: "POST", credentials: "same-origin",
                 headers: {"X-CSRFToken": document.getElementById("dashboard").dataset.csrfToken}})"""
    )
    app.page.get_by_text("Your session has ended: log in again.").wait_for(timeout=15000)

    result = app.click(f"request-{req.pk}", "approve")

    # The worker awaited its whole answer to the click: the card, and no decision sent.
    assert result["opened"] == [f"{app.url}/?request={req.pk}"]
    fresh = ApprovalRequest.objects.get(pk=req.pk)
    assert (fresh.status, fresh.decided_by_id) == (Status.PENDING, None)
    assert decided_rows(req) == []
    assert app.shown(f"result-{req.pk}") == []
