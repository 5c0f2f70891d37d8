"""Demo guests end to end: their own words through the relay on Daphne, the simulator's intent rules,
the demo policy (demo/policy.yaml), the real hotel MCP server, a Celery worker, and staff deciding over
HTTP. What each guest hears matches what the policy does with their visit."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import ApprovalRequest
from demo import guests
from demo.seed import POLICY_FILE
from tests.e2e.test_browser_approval import SIM_KEY, sim_url  # noqa: F401 (a fixture)
from tests.e2e.test_relay_processes import Staff, wait_until

pytestmark = pytest.mark.e2e
Status = ApprovalRequest.Status


def _visit(request: str) -> guests.Visit:
    return next(v for v in guests.VISITS if v.request.startswith(request))


class GuestCall(threading.Thread):
    """One demo guest's call (demo.guests.visit), in a thread of its own while the test plays staff."""

    def __init__(self, web_url: str, visit: guests.Visit) -> None:
        super().__init__(daemon=True)
        _, self.token = services.issue_token(label=visit.label, metadata={"room": visit.room})
        self.web_url, self.visit = web_url, visit
        self.outcome: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.outcome = asyncio.run(guests.visit(self.web_url, self.token, self.visit))
        except BaseException as exc:
            self.error = exc

    def heard(self, timeout: float = 60) -> str | None:
        self.join(timeout)
        assert not self.is_alive(), "the guest's call did not end"
        assert self.error is None, self.error
        return self.outcome


@pytest.fixture
def demo_stack(stack, sim_url, hotel_mcp, django_user_model, password, tmp_path) -> tuple[Any, Any]:  # noqa: F811
    for username, group in (("alice", "front-desk"), ("bob", "managers")):
        user = django_user_model.objects.create_user(username, password=password, is_staff=True)
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    server, _ = services.register_mcp_server(label="hotel", url=hotel_mcp.mcp_url, headers=hotel_mcp.headers)
    assert services.probe_mcp_server(server, by=None).ok
    services.import_policies(POLICY_FILE.read_text(), by=None, source="test")
    env = {"OPENAI_BASE_URL": sim_url, "OPENAI_API_KEY": SIM_KEY}
    web = stack.web(**env)
    stack.worker(**env)
    stack.beat(tmp_path / "beat-schedule", **env)
    return web, hotel_mcp


def test_allowed_and_denied_visits_are_decided_at_once(demo_stack):
    web, hotel = demo_stack
    towels = GuestCall(web.url, _visit("Could you bring two more towels"))
    towels.start()
    assert towels.heard() == "tool ran"
    assert hotel.state()["rooms"]["0812"]["requests"][0] | {"id": ""} == {
        "id": "",
        "kind": "housekeeping",
        "item": "towels",
        "quantity": 2,
    }

    other_room = GuestCall(web.url, _visit("Could you open room 1206"))
    other_room.start()
    assert other_room.heard() == "denied"
    assert hotel.state()["rooms"]["1206"]["door_locked"] is True
    req = ApprovalRequest.objects.get(tool_name="unlock_door")
    assert (req.status, req.rule_label, req.session.label) == (Status.DENIED, "other-rooms-doors", "Room 1205")


def test_a_visit_that_asks_waits_for_staff_and_a_guest_who_forgot_the_room_is_asked(demo_stack, password):
    web, hotel = demo_stack
    champagne = GuestCall(web.url, _visit("Room 1205 here. There's a charge of 48 euros"))
    champagne.start()
    req = wait_until(lambda: ApprovalRequest.objects.filter(tool_name="issue_refund").first(), 30, "the refund")
    assert (req.status, req.rule_label, req.audience_groups) == (Status.PENDING, "refunds", ["managers"])
    assert Staff(web.url, "bob", password).decide(req.pk, "approve", "Champagne unopened").status_code == 200
    assert champagne.heard() == "tool ran"  # approved, then the refund ran
    assert hotel.state()["rooms"]["1205"]["folio"]["refunds"][0]["amount"] == 48.0

    key_card = GuestCall(web.url, _visit("My key card stopped working"))
    key_card.start()
    door = wait_until(lambda: ApprovalRequest.objects.filter(tool_name="unlock_door").first(), 30, "the door")
    assert (door.status, door.rule_label, door.session.label) == (Status.PENDING, "doors", "Room 1410")
    assert '"room":"1410"' in door.arguments.replace(" ", "")
