"""The approval API end to end on the real processes (Daphne, a Celery worker and beat, Redis):
a program asks over REST, the request appears on a staff member's dashboard in Chromium named as
the API's, Alice approves it there, and both the program's long poll and its signed webhook
(delivered by the worker) report the answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from approvals import services
from approvals.models import ApprovalRequest
from tests.approval_api.conftest import Receiver
from tests.e2e.test_browser_approval import _orm_beside_playwright, browser, log_in, wait_card  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_an_api_request_is_decided_on_the_dashboard_and_the_long_poll_and_webhook_report_it(
    stack,
    browser,  # noqa: F811
    alice,
    password,
    receiver,
    tmp_path,
):
    web = stack.web()
    stack.worker()
    stack.beat(tmp_path / "beat-schedule")
    _, plaintext = services.issue_token(
        label="Envoy gateway", metadata={}, scopes=["requests:write", "requests:read", "webhooks"]
    )
    api = httpx.Client(base_url=f"{web.url}/api/v1", headers={"Authorization": f"Bearer {plaintext}"}, timeout=90)
    hook = api.post("/webhooks", json={"url": receiver.url, "description": "gateway callbacks"})
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]

    page = log_in(browser, web.url, "alice", password)
    created = api.post(
        "/requests",
        json={
            "server": "pms",
            "tool": "issue_refund",
            "arguments": {"room": "1204", "amount": 48, "currency": "EUR"},
            "session": {"id": "chat-1204", "label": "Web chat, room 1204"},
            "requester": {"name": "Dana Whitfield"},
        },
    )
    assert created.status_code == 201, created.text
    pk = created.json()["id"]

    answer: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: answer.update(r=api.get(f"/requests/{pk}/wait", params={"timeout": 60})))
    waiter.start()

    card = wait_card(page, pk)
    text = card.inner_text()
    assert "Web chat, room 1204" in text and "via the approval API" in text
    # Who asked is among the session's details (folded away on a phone's card head).
    assert "Dana Whitfield" in (card.locator(".session-meta").text_content() or "")
    card.locator("button[data-decision=approve]").click()
    card.get_by_text("Approved by Alice").wait_for(timeout=15000)

    waiter.join(60)
    assert answer["r"].status_code == 200
    got = answer["r"].json()
    assert (got["status"], got["approved"], got["decided_by"], got["final"]) == ("approved", True, "Alice", True)

    ((headers, body),) = receiver.wait_for(1, timeout=60)
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "approval.decided"
    assert (event["data"]["id"], event["data"]["approved"], event["data"]["decided_by"]) == (pk, True, "Alice")
    assert ApprovalRequest.objects.get(pk=pk).decision_sent_at is not None
