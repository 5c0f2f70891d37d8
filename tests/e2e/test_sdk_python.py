"""The official Python SDK (`openai`, AsyncOpenAI().realtime.connect) through Countersign, on the
real stack: the guest asks for unlock_door, a staff member decides on the dashboard, and the
guest hears exactly one reply after the tool call, whichever side asks for it: a client that
never sends `response.create` after a tool call gets the relay's, a client that sends its own
(as agents-js does) gets only its own (realtime_bridge/session.py, FollowUp)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from openai import AsyncOpenAI

from approvals.models import ApprovalRequest
from tests.e2e.sdk_flows import UNLOCK, assistant_replies, guest_token, hotel_stack, staff_decides  # noqa: F401
from tests.e2e.test_browser_approval import sim_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

# After the reply, how long the guest keeps listening for a second one (the relay decides within
# its grace window, session.FOLLOWUP_GRACE_SECONDS, well under this).
QUIET_SECONDS = 3.0


class PyGuest(threading.Thread):
    """The guest's device: connects, waits for the tools, asks, and records every event until
    the model has answered after the tool call and QUIET_SECONDS passed with nothing more."""

    def __init__(self, web_url: str, token: str, *, own_follow_up: bool) -> None:
        super().__init__(daemon=True)
        self.client = AsyncOpenAI(api_key=token, base_url=f"{web_url}/v1")
        self.own_follow_up = own_follow_up
        self.events: list[dict[str, Any]] = []
        self.tool_done_at: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(asyncio.wait_for(self._talk(), 150))
        except BaseException as exc:
            self.error = exc

    async def _talk(self) -> None:
        async with self.client.realtime.connect(model="gpt-realtime") as conn:
            asked = answered = False
            while True:
                try:
                    event = await asyncio.wait_for(conn.recv(), QUIET_SECONDS if answered else 120)
                except TimeoutError:
                    if answered:
                        return  # quiet after the reply: nothing more is coming
                    raise
                self.events.append(event.model_dump(mode="json"))
                if event.type == "mcp_list_tools.completed" and not asked:
                    asked = True
                    await conn.conversation.item.create(
                        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": UNLOCK}]}
                    )
                    await conn.response.create()
                if event.type == "conversation.item.done" and event.item.type == "mcp_call":
                    self.tool_done_at = len(self.events)
                    if self.own_follow_up:
                        await conn.response.create()  # what agents-js does by default
                if self.tool_done_at is not None and event.type == "response.done":
                    answered = True

    def after_tool_call(self) -> list[dict[str, Any]]:
        assert self.tool_done_at is not None, "the tool call never finished"
        return self.events[self.tool_done_at :]


def run_guest(web_url: str, password: str, decision: str, own_follow_up: bool) -> tuple[PyGuest, ApprovalRequest]:
    guest = PyGuest(web_url, guest_token(), own_follow_up=own_follow_up)
    guest.start()
    req = staff_decides(web_url, password, decision)
    guest.join(160)
    assert not guest.is_alive() and guest.error is None, guest.error
    return guest, req


@pytest.mark.parametrize("own_follow_up", [False, True], ids=["relay-follows-up", "client-follows-up"])
def test_it_approves_and_the_guest_hears_one_reply(hotel_stack, password, own_follow_up):  # noqa: F811
    web, hotel = hotel_stack
    guest, req = run_guest(web.url, password, "approve", own_follow_up)
    assert [e for e in guest.events if e["type"] == "error"] == []
    assert ApprovalRequest.objects.get(pk=req.pk).status == ApprovalRequest.Status.APPROVED
    assert [a["action"] for a in hotel.state()["activity"]] == ["unlock_door"]
    replies = assistant_replies(guest.events)
    # A voice session: the holding line during the wait, then one reply to the outcome.
    assert len(replies) == 2 and "checking your request" in replies[0] and replies[1].startswith("All done.")
    assert assistant_replies(guest.after_tool_call()) == replies[1:]


@pytest.mark.parametrize("own_follow_up", [False, True], ids=["relay-follows-up", "client-follows-up"])
def test_it_denies_and_the_guest_hears_one_reply(hotel_stack, password, own_follow_up):  # noqa: F811
    web, hotel = hotel_stack
    guest, req = run_guest(web.url, password, "deny", own_follow_up)
    assert [e for e in guest.events if e["type"] == "error"] == []
    assert ApprovalRequest.objects.get(pk=req.pk).status == ApprovalRequest.Status.DENIED
    assert hotel.state()["activity"] == []
    (call,) = [
        e["item"] for e in guest.events if e["type"] == "conversation.item.done" and e["item"]["type"] == "mcp_call"
    ]
    assert call["output"] is None and call["error"]["type"] == "tool_execution_error"
    replies = assistant_replies(guest.events)
    assert len(replies) == 2 and "checking your request" in replies[0]
    assert replies[1].startswith("Okay, I won't run unlock_door; it was not approved.")
    assert assistant_replies(guest.after_tool_call()) == replies[1:]
