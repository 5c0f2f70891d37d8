"""The approval loop as people use it: real Daphne, Celery worker and beat, Redis, the simulator
standing in for OpenAI, the hotel MCP server, the official openai SDK as the guest's device,
and Chromium as the staff member's browser."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from approvals import services
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from tests.plugins.processes import PYTHON, ServerProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
SIM_KEY = "sk-sim-e2e"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI (.ci/run installs Debian's chromium)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    # Playwright's sync API keeps an event loop in this thread, so Django would refuse the
    # test's own (synchronous, single-threaded) ORM calls; Django documents this switch for it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def sim_url() -> Iterator[str]:
    port = free_port()
    with ServerProcess(
        [PYTHON, "-m", "simulator", "--port", str(port), "--api-key", SIM_KEY, "--validate-events"],
        port=port,
        name="simulator",
        fail_on="INVALID SERVER EVENT",
    ):
        yield f"http://127.0.0.1:{port}/v1"


class Guest(threading.Thread):
    """A guest's device on the official SDK, through the relay: waits for the tools, asks for
    one, and records every event until the model has answered after the decision."""

    def __init__(self, web_url: str, token: str, command: str) -> None:
        super().__init__(daemon=True)
        self.client = OpenAI(api_key=token, base_url=f"{web_url}/v1")
        self.command = command
        self.events: list[tuple[float, Any]] = []
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.client.realtime.connect(model="gpt-realtime") as conn:
                asked = answered = ran = False
                for event in conn:
                    self.events.append((time.time(), event))
                    if event.type == "mcp_list_tools.completed" and not asked:
                        asked = True
                        conn.conversation.item.create(
                            item={
                                "type": "message",
                                "role": "user",
                                "content": [{"type": "input_text", "text": self.command}],
                            }
                        )
                        conn.response.create()
                    if event.type == "conversation.item.done" and event.item.type == "mcp_approval_response":
                        answered = True
                    if answered and event.type == "response.done":
                        break  # the follow-up the relay asked for: the model told the guest
                    if event.type == "conversation.item.done" and event.item.type == "mcp_call":
                        ran = True
                    if ran and event.type == "conversation.item.done" and event.item.type == "message":
                        break  # a tool that ran without asking (require_approval.never), then the model spoke
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    def items(self, kind: str) -> list[tuple[float, Any]]:
        return [(t, e.item) for t, e in self.events if e.type == "conversation.item.done" and e.item.type == kind]


@pytest.fixture
def hotel_registered(hotel_mcp, db):
    services.register_mcp_server(
        label="hotel", url=hotel_mcp.mcp_url, headers={"X-API-Key": hotel_mcp.api_key}, description="Front desk"
    )
    return hotel_mcp


def start(stack, simulator: str, tmp_path: Path, timeout: int):
    env = {"OPENAI_BASE_URL": simulator, "OPENAI_API_KEY": SIM_KEY, "APPROVAL_TIMEOUT_SECONDS": str(timeout)}
    web = stack.web(**env)
    stack.worker(**env)
    stack.beat(tmp_path / "beat-schedule", **env)
    return web


def log_in(browser, web_url: str, username: str, password: str):
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(f"{web_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{web_url}/")
    return page


def open_guest(web_url: str, command: str) -> Guest:
    _, token = services.issue_token(label="Room 1204", metadata={"room": "1204", "guest": "Dana Whitfield"})
    guest = Guest(web_url, token, command)
    guest.start()
    return guest


UNLOCK = 'call hotel unlock_door {"room": "1204", "reason": "Guest locked out"}'


def wait_card(page, pk: int):
    card = page.locator(f"article.card[data-id='{pk}']")
    card.wait_for(timeout=15000)
    return card


def wait_request(timeout: float = 20) -> ApprovalRequest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        req = ApprovalRequest.objects.select_related("session").first()
        if req:
            return req
        time.sleep(0.1)
    raise AssertionError("no approval request reached the console")


def test_staff_approve_unlock_door_from_the_dashboard_and_the_door_opens(
    stack, sim_url, hotel_registered, browser, alice, password, tmp_path
):
    web = start(stack, sim_url, tmp_path, timeout=60)
    page = log_in(browser, web.url, "alice", password)
    assert hotel_registered.state()["rooms"]["1204"]["door_locked"] is True
    guest = open_guest(web.url, UNLOCK)
    req = wait_request()
    card = wait_card(page, req.pk)
    text = card.inner_text()
    assert "Room 1204" in text and "1204" in text and "Guest locked out" in text
    # The audit trail records that the request was on Alice's screen, and on the dashboards.
    deadline = time.monotonic() + 10
    while not AuditEvent.objects.filter(request_id=req.pk, kind="opened", actor=alice).exists():
        assert time.monotonic() < deadline, "no 'opened' audit row for Alice"
        time.sleep(0.1)
    assert AuditEvent.objects.filter(request_id=req.pk, kind="notified").exists()
    card.locator("button[data-decision=approve]").click()
    card.get_by_text("Approved by Alice").wait_for(timeout=10000)

    assert guest.finished.wait(90), "the guest never heard back"
    assert guest.error is None, guest.error
    assert hotel_registered.state()["rooms"]["1204"]["door_locked"] is False
    ((_, call),) = guest.items("mcp_call")
    assert call.approval_request_id == req.upstream_id and call.output and not call.error
    # The relay forwards the mcp_call to the guest before its database worker records it, and
    # marks the answer sent after sending it: the guest can finish a moment before either commits.
    deadline = time.monotonic() + 10
    req.refresh_from_db()
    while (req.call_recorded_at is None or req.decision_sent_at is None) and time.monotonic() < deadline:
        time.sleep(0.1)
        req.refresh_from_db()
    assert req.status == "approved" and req.decided_by == alice
    assert req.call_output == call.output and req.decision_sent_at is not None
    page.close()


def test_staff_deny_unlock_door_and_the_door_stays_locked(
    stack, sim_url, hotel_registered, browser, bob, password, tmp_path
):
    web = start(stack, sim_url, tmp_path, timeout=60)
    page = log_in(browser, web.url, "bob", password)
    guest = open_guest(web.url, UNLOCK)
    req = wait_request()
    card = wait_card(page, req.pk)
    card.locator("input[name=reason]").fill("Please come to the front desk with ID")
    card.locator("button[data-decision=deny]").click()
    card.get_by_text("Denied by Bob").wait_for(timeout=10000)

    assert guest.finished.wait(90), "the guest never heard back"
    ((_, answer),) = guest.items("mcp_approval_response")
    assert answer.approve is False and answer.reason == "Please come to the front desk with ID"
    assert guest.items("mcp_call") == [] or all(c.error for _, c in guest.items("mcp_call"))
    assert hotel_registered.state()["rooms"]["1204"]["door_locked"] is True
    req.refresh_from_db()
    assert req.status == "denied" and req.decided_by == bob
    page.close()


def test_with_no_click_the_deadline_denies_upstream_within_two_seconds(
    stack, sim_url, hotel_registered, browser, alice, password, tmp_path
):
    web = start(stack, sim_url, tmp_path, timeout=5)
    page = log_in(browser, web.url, "alice", password)
    guest = open_guest(web.url, UNLOCK)
    req = wait_request()
    card = wait_card(page, req.pk)
    card.get_by_text("deadline").first.wait_for(timeout=20000)

    assert guest.finished.wait(90), "the guest never heard back"
    ((received_at, answer),) = guest.items("mcp_approval_response")
    # The guest hears the real wait, in words for a guest (no rule label, no "deadline").
    assert answer.approve is False and "could confirm this in time (waited " in (answer.reason or "")
    late = datetime.fromtimestamp(received_at, tz=UTC) - req.deadline
    assert late <= timedelta(seconds=2), f"denial reached upstream {late} after the deadline"
    assert hotel_registered.state()["rooms"]["1204"]["door_locked"] is True
    req.refresh_from_db()
    assert req.status == "expired" and req.decided_by_label == "deadline"
    page.close()
