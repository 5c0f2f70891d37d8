"""The official agents SDK for JavaScript, unchanged, through Countersign (issue 14): the app in
tests/js/guest.mjs (`RealtimeSession(agent, {transport: 'websocket'})`, a `hostedMcpTool` for
"hotel" with an address of its own) connects to the relay on real Daphne, asks for unlock_door,
a staff member decides on the dashboard, and the guest hears exactly one reply after the tool
call: the relay leaves the follow-up to agents-js, which asks for it itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from approvals.models import ApprovalRequest, RealtimeSession
from tests.e2e.sdk_flows import UNLOCK, assistant_replies, guest_token, hotel_stack, staff_decides  # noqa: F401
from tests.e2e.test_browser_approval import sim_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parents[1] / "js"


@pytest.fixture(scope="module")
def node() -> str:
    """Debian's Node with tests/js/node_modules installed (.ci/run installs both in CI)."""
    binary = shutil.which("node")
    installed = (JS_DIR / "node_modules" / "@openai" / "agents-realtime" / "package.json").exists()
    if binary is None or not installed:
        missing = "node" if binary is None else "tests/js/node_modules (npm ci --prefix tests/js)"
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is missing in CI: .ci/run installs it")
        pytest.skip(f"{missing} is not installed here (apt-get install nodejs npm; npm ci --prefix tests/js)")
    return binary


class JsGuest(threading.Thread):
    """tests/js/guest.mjs as a process; its JSON lines collected as they come."""

    def __init__(self, node: str, web_url: str, token: str, command: str) -> None:
        super().__init__(daemon=True)
        relay = web_url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
        self.proc = subprocess.Popen(
            [node, str(JS_DIR / "guest.mjs"), relay, token, command],
            cwd=JS_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.records: list[dict[str, Any]] = []

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.records.append(json.loads(line))

    def finish(self, timeout: float = 150) -> None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.join(10)
        assert self.proc.stderr is not None
        assert code == 0, f"guest.mjs exited {code}: {self.proc.stderr.read()}\n{self.kinds()}"

    def kinds(self) -> list[str]:
        return [r.get("type") or r["kind"] for r in self.records]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind]

    def events(self) -> list[dict[str, Any]]:
        return [r["event"] for r in self.records if r["kind"] == "event" and "event" in r]

    def history(self) -> list[dict[str, Any]]:
        (record,) = self.of_kind("history")
        return record["items"]


def run_guest(node: str, web_url: str, password: str, decision: str) -> tuple[JsGuest, ApprovalRequest]:
    guest = JsGuest(node, web_url, guest_token(), UNLOCK)
    guest.start()
    try:
        req = staff_decides(web_url, password, decision)
    except AssertionError:
        guest.proc.kill()
        guest.join(10)
        assert guest.proc.stderr is not None
        raise AssertionError(f"guest.mjs said {guest.kinds()}; stderr: {guest.proc.stderr.read()}") from None
    guest.finish()
    return guest, req


def after_tool_call(guest: JsGuest) -> list[dict[str, Any]]:
    """The events the guest received after agents-js saw the tool call complete."""
    at = next(n for n, r in enumerate(guest.records) if r["kind"] == "tool_call_completed")
    return [r["event"] for r in guest.records[at:] if r["kind"] == "event" and "event" in r]


def test_it_approves_through_the_registry_and_the_guest_hears_one_reply(hotel_stack, node, password):  # noqa: F811
    web, hotel = hotel_stack
    guest, req = run_guest(node, web.url, password, "approve")

    # The app's hostedMcpTool named a registered server: accepted without a word, served from the
    # registry (its call reached the registered hotel, not the app's address).
    assert guest.of_kind("error") == [] and [e for e in guest.events() if e["type"] == "error"] == []
    (asked,) = guest.of_kind("approval_requested")
    assert (asked["item"]["name"], req.server_label, req.status) == ("unlock_door", "hotel", "pending")
    assert [a["action"] for a in hotel.state()["activity"]] == ["unlock_door"]
    assert ApprovalRequest.objects.get(pk=req.pk).status == ApprovalRequest.Status.APPROVED

    (completed,) = guest.of_kind("tool_call_completed")
    assert json.loads(completed["call"]["output"])["door_locked"] is False
    # Exactly one reply, after the tool call, and the relay left asking for it to agents-js.
    replies = assistant_replies(guest.events())
    # The holding line during the wait (a voice session: issue 14), then one reply to the outcome.
    assert len(replies) == 2 and "checking your request" in replies[0] and replies[1].startswith("All done.")
    assert len(assistant_replies(after_tool_call(guest))) == 1

    call = next(i for i in guest.history() if i["type"] == "mcp_call")
    assert (call["name"], call["status"], call["output"]) == ("unlock_door", "completed", completed["call"]["output"])
    session = RealtimeSession.objects.get()
    assert session.kind == RealtimeSession.Kind.RELAY


def test_it_denies_and_the_history_shows_the_call_finished_with_one_reply(hotel_stack, node, password):  # noqa: F811
    web, hotel = hotel_stack
    guest, req = run_guest(node, web.url, password, "deny")

    assert ApprovalRequest.objects.get(pk=req.pk).status == ApprovalRequest.Status.DENIED
    assert hotel.state()["activity"] == []  # the door stayed shut
    # The call ends as the real API leaves a denied call: its item done, with its error.
    (done,) = [
        e["item"] for e in guest.events() if e["type"] == "conversation.item.done" and e["item"]["type"] == "mcp_call"
    ]
    assert done["output"] is None and done["error"]["type"] == "tool_execution_error"
    assert done["approval_request_id"] == req.upstream_id
    # agents-js's history: the call finished (completed, no output), then one reply.
    call = next(i for i in guest.history() if i["type"] == "mcp_call")
    assert (call["name"], call["status"], call["output"]) == ("unlock_door", "completed", None)
    replies = assistant_replies(guest.events())
    assert len(replies) == 2 and "checking your request" in replies[0]
    assert replies[1].startswith("Okay, I won't run unlock_door; it was not approved.")
    assert len(assistant_replies(after_tool_call(guest))) == 1
    said = [i for i in guest.history() if i["type"] == "message" and i["role"] == "assistant"]
    assert len(said) == 2  # the holding line, and the one reply after the denied call
